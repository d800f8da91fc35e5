"""GRPO stage runner: config mapping (paper values), a CPU run killed after a checkpoint and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, write_choice_mixture
from loongrl.train.grpo import (
    grpo_config,
    grpo_kwargs,
    last_checkpoint,
    prompts_per_step_to_accumulation,
    truncate_metrics,
)


@pytest.fixture(scope="module")
def train_cfg():
    return yaml.safe_load((ROOT / "config.yaml").read_text())["train"]


def gpu_kwargs(monkeypatch, train, *args, **kwargs) -> dict:
    """grpo_kwargs(gpu=True) as on a GPU node, where flash-attn is importable (pretended only for this call: this
    machine has no CUDA, and transformers' own availability checks must not see the pretence)."""
    import importlib.util

    real = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name))
        return grpo_kwargs(train, *args, gpu=True, **kwargs)


def test_paper_values_reach_grpoconfig(train_cfg, tmp_path, monkeypatch):
    gpu = SimpleNamespace(**gpu_kwargs(monkeypatch, train_cfg, 168, tmp_path, world_size=16))
    cpu = grpo_config(train_cfg, 168, tmp_path, world_size=16, gpu=False)  # TRL accepts it on this machine
    assert cpu.use_cpu and not cpu.use_vllm and cpu.num_generations == 8 and cpu.beta == 0.001
    cfg = gpu
    assert cfg.num_generations == 8 and cfg.beta == 0.001 and cfg.learning_rate == 1e-6
    assert cfg.lr_scheduler_type == "cosine" and cfg.max_grad_norm == 1.0
    assert cfg.temperature == 0.6 and cfg.top_p == 0.95 and cfg.max_completion_length == 4096
    assert cfg.loss_type == "dapo"  # token-level normalisation, as verl's token-mean in the paper's runs
    assert cfg.gradient_checkpointing and cfg.bf16 and cfg.use_vllm and cfg.vllm_mode == "colocate"
    # 512 prompts x 8 generations per optimizer step on 16 GPUs
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 16 == 512 * 8
    assert cfg.max_steps == 168
    # GRPO as in Eq. 1 / verl, not TRL 1.16's defaults: no IS correction of vLLM's samples, no ratio on the KL
    assert cfg.vllm_importance_sampling_correction is False and cfg.use_bias_correction_kl is False
    assert cpu.vllm_importance_sampling_correction is False and cpu.use_bias_correction_kl is False
    assert cfg.ddp_timeout == 2 * 3600 and cpu.ddp_timeout == 2 * 3600
    flipped = {**train_cfg, "vllm_importance_sampling_correction": True, "kl_bias_correction": True}
    on = gpu_kwargs(monkeypatch, flipped, 168, tmp_path, world_size=16)
    assert on["vllm_importance_sampling_correction"] and on["use_bias_correction_kl"]  # the config decides


def test_model_init_kwargs_bf16_and_attention(train_cfg, monkeypatch):
    """bf16 weights under DeepSpeed (fp32 masters in its optimizer), fp32 for one process (a 1e-6 step is below
    bf16's resolution); sdpa by default (nothing to build), flash attention as the opt-in, with a clear error
    naming the key where flash-attn is missing."""
    import importlib.util

    from loongrl.train.grpo import model_init_kwargs

    assert model_init_kwargs(train_cfg, gpu=True, deepspeed=True) == {
        "dtype": "bfloat16",
        "attn_implementation": "sdpa",
    }
    assert model_init_kwargs(train_cfg, gpu=True, deepspeed=False)["dtype"] == "float32"
    assert model_init_kwargs(train_cfg, gpu=False, deepspeed=True) == {"dtype": "float32"}  # CPU: sdpa by default
    flash = {**train_cfg, "attn_implementation": "flash_attention_2"}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name))
    assert model_init_kwargs(flash, gpu=True, deepspeed=True)["attn_implementation"] == "flash_attention_2"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name))
    with pytest.raises(RuntimeError, match=r"train\.attn_implementation.*flash-attn.*sdpa"):
        model_init_kwargs(flash, gpu=True, deepspeed=True)


def test_time_bounded_checkpoints():
    """A checkpoint is also due once train.save_minutes have passed since the last save (step-based saves stay)."""
    from types import SimpleNamespace as NS

    from loongrl.train.grpo import time_save_callback

    cb = time_save_callback(90)
    control = NS(should_save=False)
    cb.on_step_end(None, None, control)
    assert control.should_save is False  # just started
    cb.last -= 91 * 60
    cb.on_step_end(None, None, control)
    assert control.should_save is True
    cb.on_save(None, None, control)
    control.should_save = False
    cb.on_step_end(None, None, control)
    assert control.should_save is False  # the clock restarts at every save
    off = time_save_callback(None)
    off.last -= 10**6
    off.on_step_end(None, None, control)
    assert control.should_save is False


def test_world_must_match_gpus_times_nodes():
    from loongrl.train.grpo import check_world

    assert check_world(1) == 1
    with pytest.raises(RuntimeError, match=r"world of 1 rank\(s\).*'train\.gpus' x 'train\.nodes' ask for 16"):
        check_world(16)


def test_best_checkpoint_selection_maps_to_trainer_args(train_cfg, tmp_path):
    cfg = grpo_config(train_cfg, 168, tmp_path, world_size=1, gpu=False, select_best=True)  # TRL checks this process
    assert cfg.per_device_eval_batch_size == 8  # one whole group of G=8 per evaluation batch
    # 16 ranks: 4 completions each (train.per_device_eval_batch), 64 per generation call; on 2 ranks a batch of 3
    # is rounded up to 4 so the 8 completions of a call hold whole groups of G=8
    assert grpo_kwargs(train_cfg, 168, tmp_path, world_size=16, select_best=True)["per_device_eval_batch_size"] == 4
    odd = {**train_cfg, "per_device_eval_batch": 3}
    assert grpo_kwargs(odd, 168, tmp_path, world_size=2, select_best=True)["per_device_eval_batch_size"] == 4
    assert cfg.eval_strategy == "steps" and cfg.eval_steps == train_cfg["save_steps"] == cfg.save_steps
    assert cfg.metric_for_best_model == "eval_reward" and cfg.greater_is_better and cfg.load_best_model_at_end
    assert not grpo_kwargs(train_cfg, 168, tmp_path).get("load_best_model_at_end")


def test_stale_checkpoints_are_not_resumed(tmp_path):
    from loongrl.train.grpo import prepare_work_dir, run_fingerprint

    def fingerprint(model, data, train):
        return run_fingerprint(model_path=model, data_path=data, train=train, steps=2, seed=42, extra=None)

    model, data = tmp_path / "model", tmp_path / "data.parquet"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data.write_bytes(b"rows v1")
    work = tmp_path / "work"
    fp = fingerprint(model, data, {"lr": 1})
    assert prepare_work_dir(work, fp) is None
    (work / "checkpoint-1").mkdir()
    assert prepare_work_dir(work, fingerprint(model, data, {"lr": 1})) is None
    assert (work / "checkpoint-1").exists()  # same run: resume
    data.write_bytes(b"rows v2")  # Snakemake reran the stage because its data changed
    aside = prepare_work_dir(work, fingerprint(model, data, {"lr": 1}))
    assert not (work / "checkpoint-1").exists() and (work / "FINGERPRINT").read_text().strip() != fp
    assert aside == tmp_path / f"work.stale-{fp}" and (aside / "checkpoint-1").is_dir()  # moved aside, not deleted
    assert fingerprint(model, data, {"lr": 2}) != fingerprint(model, data, {"lr": 1})


def test_scheduling_keys_keep_checkpoints_weight_keys_move_them_aside(tmp_path, train_cfg):
    """A job that hit its time limit is resubmitted with more time or retries: it must resume, not restart. A new
    learning rate starts afresh, and the old checkpoints are still there."""
    from loongrl.train.grpo import prepare_work_dir, run_fingerprint

    model, data = tmp_path / "model", tmp_path / "data.parquet"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data.write_bytes(b"rows")

    def prepare(**changes):
        train = {**train_cfg, **changes}
        fp = run_fingerprint(model_path=model, data_path=data, train=train, steps=168, seed=42, extra=["v", 16])
        return prepare_work_dir(tmp_path / "work", fp)

    prepare()
    (tmp_path / "work/checkpoint-40").mkdir()
    stages = {**train_cfg["stages"], "stage2": {**train_cfg["stages"]["stage2"], "steps": 99}}
    for change in (
        {"job_runtime": "96h"},
        {"job_retries": 9},
        {"save_steps": 5, "save_minutes": 30},
        {"stage2_rollouts": 16, "stage2_shards": 8},
        {"stages": stages},
    ):
        assert prepare(**change) is None, change
        assert (tmp_path / "work/checkpoint-40").is_dir(), change
    aside = prepare(learning_rate=2e-6)
    assert aside is not None and (aside / "checkpoint-40").is_dir()
    assert not (tmp_path / "work/checkpoint-40").exists()


def test_accumulation_must_divide():
    assert prompts_per_step_to_accumulation(256, 8, 4, 8) == 64
    with pytest.raises(ValueError, match="not divisible"):
        prompts_per_step_to_accumulation(3, 8, 5, 1)


def test_checkpoint_discovery_and_metric_truncation(tmp_path):
    for n in (2, 4, 6):
        (tmp_path / f"checkpoint-{n}").mkdir()
    for n in (2, 4):
        (tmp_path / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-4"  # checkpoint-6 is incomplete
    # two ranks: checkpoint-4 lacks rank 1's RNG state (a kill right after rank 0 wrote trainer_state.json)
    for n in (2, 4):
        (tmp_path / f"checkpoint-{n}" / "rng_state_0.pth").write_bytes(b"x")
    (tmp_path / "checkpoint-2" / "rng_state_1.pth").write_bytes(b"x")
    assert last_checkpoint(tmp_path, 2).name == "checkpoint-2"
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 7)))
    truncate_metrics(m, 4)
    assert [json.loads(x)["step"] for x in m.read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.slow
def test_kill_after_checkpoint_then_resume(tiny_model_dir, tmp_path, train_cfg):
    data = tmp_path / "mix.parquet"
    write_choice_mixture(data)
    params = {
        **train_cfg,
        "prompts_per_step": 2,
        "num_generations": 4,
        "per_device_batch": 8,
        "max_completion_length": 8,
        "save_steps": 2,
        "save_total_limit": 2,
        "gradient_checkpointing": False,
    }
    cmd = [
        sys.executable,
        "-m",
        "loongrl.train.grpo",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--params",
        json.dumps(params),
        "--steps",
        "6",
        "--work-dir",
        str(tmp_path / "work"),
        "--output",
        str(tmp_path / "model"),
        "--metrics",
        str(tmp_path / "metrics.jsonl"),
        "--summary",
        str(tmp_path / "summary.json"),
        "--mlflow-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
        "--run-name",
        "stage1",
        "--tag",
        "config_hash=abc123",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if (tmp_path / "work/checkpoint-2/trainer_state.json").exists():
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished or died before it could be killed"
    time.sleep(1.5)  # let it log a step past the checkpoint, which the resume must drop
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "model").exists()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6], steps
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["resumed_from"].rsplit("-", 1)[1] in ("2", "4")
    assert (tmp_path / "model/config.json").exists() and (tmp_path / "model/tokenizer.json").exists()
    # one MLflow run across the kill: reopened on resume, tagged, with the metric history and artifacts
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["loongrl"], output_format="list")
    assert [r.info.run_id for r in runs] == [summary["mlflow_run_id"]]
    run = runs[0]
    assert run.data.tags["config_hash"] == "abc123" and run.info.status == "FINISHED"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "reward")
    assert {m.step for m in history} >= {1, 6}
    assert "metrics.jsonl" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}


def test_multi_node_launcher_reads_rank_and_head_from_slurm(tmp_path):
    """accelerate_node.sh: one accelerate process group per node, rank and rendezvous from SLURM's variables."""
    import os
    import subprocess

    from conftest import ROOT

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "accelerate").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && printf "gpu-a17\\ngpu-a18\\n"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu-a[17-18]",
    }
    script = ROOT / "workflow/scripts/accelerate_node.sh"
    out = subprocess.run(
        ["bash", str(script), "zero3.yaml", "8", "-m", "loongrl.train.grpo", "--steps", "3"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[:2] == ["launch", "--config_file"]
    args = dict(zip(out[1:-4:2], out[2:-4:2], strict=True))
    assert args == {
        "--config_file": "zero3.yaml",
        "--num_machines": "2",
        "--machine_rank": "1",
        "--num_processes": "16",
        "--main_process_ip": "gpu-a17",
        "--main_process_port": "29500",
    }
    assert out[-4:] == ["-m", "loongrl.train.grpo", "--steps", "3"]
    del env["SLURM_NODEID"]
    res = subprocess.run(["bash", str(script), "z.yaml", "8"], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "SLURM_NODEID unset" in res.stderr


def test_a_run_killed_after_its_last_checkpoint_is_not_trained_further(tiny_model_dir, tmp_path, train_cfg):
    """Resuming from checkpoint-N of an N-step stage would train step N+1; the checkpoint is the result instead."""
    from loongrl.train.grpo import run_stage

    data = tmp_path / "mix.parquet"
    write_choice_mixture(data)
    params = {
        **train_cfg,
        "prompts_per_step": 2,
        "num_generations": 4,
        "per_device_batch": 8,
        "max_completion_length": 8,
        "save_steps": 2,
        "gradient_checkpointing": False,
    }
    kw = dict(
        model_path=tiny_model_dir,
        data_path=data,
        train=params,
        steps=2,
        work_dir=tmp_path / "work",
        metrics_path=tmp_path / "metrics.jsonl",
        summary_path=tmp_path / "summary.json",
    )
    run_stage(output_dir=tmp_path / "first", **kw)
    again = run_stage(output_dir=tmp_path / "second", **kw)  # as if killed before the model was saved
    assert again["steps"] == 2 and again["resumed_from"].endswith("checkpoint-2")
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    a = (tmp_path / "first/model.safetensors").read_bytes()
    assert a == (tmp_path / "second/model.safetensors").read_bytes()
    assert (tmp_path / "second/tokenizer.json").exists()


def test_resumed_epoch_sees_its_own_prompt_order(tiny_model_dir, tmp_path, train_cfg):
    """A job requeued inside epoch 1 builds a new sampler: with TRL's RepeatSampler it replays epoch 0's
    permutation (the generator is seeded once, at construction); the stage's trainer draws epoch e's order from
    seed + e, so the resumed epoch sees what the uninterrupted run would have."""
    from loongrl.io import read_parquet
    from loongrl.train import grpo
    from transformers import AutoTokenizer, TrainerState
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    data = tmp_path / "mix.parquet"
    write_choice_mixture(data, n=16)
    params = {**train_cfg, "prompts_per_step": 2, "num_generations": 2, "per_device_batch": 4}
    params.update(max_completion_length=4, gradient_checkpointing=False)
    args = grpo.grpo_config(params, 4, tmp_path / "work", world_size=1, gpu=False, seed=7)
    trainer = grpo.epoch_ordered(GRPOTrainer)(
        model=str(tiny_model_dir),
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=args,
        train_dataset=grpo.load_mixture(data),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    (hook,) = [c for c in trainer.callback_handler.callbacks if type(c).__name__ == "EpochOrder"]

    def run_epochs(sampler, epochs):
        out = []
        for e in epochs:
            hook.on_epoch_begin(trainer.args, TrainerState(epoch=e), None)
            out.append(list(sampler))
        return out

    order0, order1 = run_epochs(trainer._get_train_sampler(), [0.0, 1.0])  # the uninterrupted run
    (resumed,) = run_epochs(trainer._get_train_sampler(), [1.5])  # a new process, restored mid-epoch 1
    assert resumed == order1 != order0
    assert sorted(set(order0)) == list(range(len(read_parquet(data))))
    # TRL's own sampler, as main used it: the requeued epoch 1 replays epoch 0
    kw = {"data_source": list(range(16)), "mini_repeat_count": 2, "batch_size": 2, "seed": 7}
    plain = RepeatSampler(**kw)
    first, second = list(plain), list(plain)
    assert list(RepeatSampler(**kw)) == first != second


def test_warmup_epoch_is_the_full_batches_of_its_data(tmp_path):
    """`steps: epoch` (the paper's "1 epoch" warm-up) is rows // prompts_per_step, as TRL's RepeatSampler yields only
    full batches; too few rows for one step is a one-line data error naming the key; the CLI takes 'epoch'."""
    from loongrl.io import StageError
    from loongrl.train.grpo import epoch_steps, parser

    data = tmp_path / "mix.parquet"
    write_choice_mixture(data, n=10)
    assert epoch_steps(data, 4) == 2 and epoch_steps(data, 10) == 1
    with pytest.raises(
        StageError, match=r"10 rows, fewer than train.prompts_per_step = 16.*'train.stages.<stage>.steps'"
    ):
        epoch_steps(data, 16)
    base = ["--model", "m", "--data", "d", "--params", "{}", "--work-dir", "w", "--output", "o"]
    base += ["--metrics", "x", "--summary", "y"]
    assert parser().parse_args([*base, "--steps", "epoch"]).steps == "epoch"
    assert parser().parse_args([*base, "--steps", "42"]).steps == 42
    for bad in ("0", "1.5", "epochs"):
        with pytest.raises(SystemExit):
            parser().parse_args([*base, "--steps", bad])


def test_prefilled_prompts_reach_trl_as_the_open_assistant_turn(tiny_model_dir, tmp_path, train_cfg):
    """A mixture row whose prompt ends in a started assistant turn (KeyChain over books' answer prefix) reaches
    the policy as that open turn: TRL's own prompt tokenisation (``_tokenize_prompts``) of the loaded rows gives
    the tokens of ``continue_final_message`` for it, and the assistant header for the plain row, as TRL gives a
    conversational prompt. As a conversation TRL closes the prefilled turn and opens a new one."""
    from loongrl.io import write_parquet
    from loongrl.prompts import KEYCHAIN_ANSWER_PREFIX, messages
    from loongrl.schemas import MIXTURE_SCHEMA
    from loongrl.train import grpo
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    convs = [messages("Find the key.", "sys", KEYCHAIN_ANSWER_PREFIX), messages("What is 1+1?", "sys")]
    rows = [
        {
            "id": f"r{i}",
            "data_source": "retrieval_multikey_keychain",
            "source": "keychain_books",
            "prompt": c,
            "answers": ["2"],
            "prompt_tokens": 10,
            "pass_rate": None,
        }
        for i, c in enumerate(convs)
    ]
    data = tmp_path / "mix.parquet"
    write_parquet(rows, data, MIXTURE_SCHEMA)
    with pytest.raises(ValueError, match="prefilled prompts need the tokenizer"):
        grpo.load_mixture(data)
    ds = grpo.load_mixture(data, tok)
    assert ds[0]["prompt"].endswith(KEYCHAIN_ANSWER_PREFIX) and isinstance(ds[1]["prompt"], str)
    params = {**train_cfg, "prompts_per_step": 1, "num_generations": 2, "per_device_batch": 2}
    params.update(max_completion_length=4, gradient_checkpointing=False)
    trainer = GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=grpo.grpo_config(params, 1, tmp_path / "work", world_size=1, gpu=False, seed=7),
        train_dataset=ds,
        processing_class=tok,
    )
    ids, _, _ = trainer._tokenize_prompts(list(ds["prompt"]))
    want = [
        tok.apply_chat_template(convs[0], tokenize=True, continue_final_message=True, return_dict=True)["input_ids"],
        tok.apply_chat_template(convs[1], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"],
    ]
    assert [list(x) for x in ids] == [list(w) for w in want]
    # what TRL does with the same row as a conversation: the prefilled turn is closed and a new one opened
    (conv_ids,), _, _ = trainer._tokenize_prompts(convs[:1])
    assert list(conv_ids) != list(want[0])
    assert tok.decode(conv_ids).endswith(KEYCHAIN_ANSWER_PREFIX + "<|im_end|>\n<|im_start|>assistant\n")
