"""The engine check (loongrl.enginecheck): every GPU job of the paper DAG validated by its engine's own code.

The three blockers of issue 28, one test each: stage-II rollouts asking vLLM for TP 8 on Qwen2.5-7B's 28 heads,
the 32K RULER / NIAH cells asking for a 40,960-token window on 32,768 positions, and a default attention kernel
that the training env does not install. The vLLM tests share one paper dry run and one overlay dry run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from loongrl import enginecheck
from loongrl.eval import evaluate

SEVEN_B = ROOT / "data" / "model_configs" / "Qwen--Qwen2.5-7B-Instruct"


def test_planned_jobs_parse_shell_commands():
    text = (
        "rule train_stage:\n    output: x\nShell command: accelerate launch --num_processes 8 -m loongrl.train.grpo "
        "--model 'a b' --output results/train/warmup/model > logs/x.log 2>&1\n\n"
        "localrule report:\nShell command: python -m loongrl.report --output r.md > logs/r.log 2>&1\n"
        "rule other:\nShell command: echo no module\n"
    )
    jobs = enginecheck.planned_jobs(text)
    assert [(j.rule, j.module) for j in jobs] == [("train_stage", "loongrl.train.grpo"), ("report", "loongrl.report")]
    assert jobs[0].argv == ["--model", "a b", "--output", "results/train/warmup/model"]
    assert jobs[0].launcher[:2] == ["accelerate", "launch"]


def test_default_attention_kernel_is_installed_by_the_training_env():
    """Blocker 3: the default train.attn_implementation must load in the env the training rule names (on the old
    main flash_attention_2 needed flash-attn, which no env installed)."""
    import yaml

    default = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]["attn_implementation"]
    env = enginecheck.rule_env("train_stage")
    assert env == ROOT / "envs" / "train.yaml"
    assert enginecheck.attention_verdict("t", "train_stage", default).ok
    bad = enginecheck.attention_verdict("t", "train_stage", "flash_attention_2")
    assert not bad.ok and "train.attn_implementation" in bad.message and "envs/train.yaml" in bad.message
    assert "flash-attn" not in enginecheck.env_packages(env)  # so the opt-in is reported until the env installs it


def test_models_resolve_hub_ids_and_trained_stages(tmp_path):
    text = (
        "rule train_stage:\nShell command: accelerate launch -m loongrl.train.grpo --model "
        "resources/models/Qwen--Qwen2.5-7B-Instruct --data d --params '{}' --steps 1 --work-dir w --output "
        "results/train/warmup/model --metrics m --summary s\n"
        "rule train_stage:\nShell command: accelerate launch -m loongrl.train.grpo --model results/train/warmup/model "
        "--data d --params '{}' --steps 1 --work-dir w --output results/train/stage1/model --metrics m --summary s\n"
    )
    models = enginecheck.Models(enginecheck.planned_jobs(text))
    assert models.config_dir("results/train/stage1/model") == SEVEN_B
    assert models.config_dir("resources/models/Nobody--Unknown") is None
    local = tmp_path / "m"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert models.config_dir(local) == local


# ------------------------------------------------------------------------------------------- vLLM's own checks


def _dry_run(tmp: Path, *overlays: Path) -> str:
    """``snakemake -n -p`` of the paper DAG through the SLURM profile, as make engine-check runs it. The SLURM
    executor plugin lives in the main env (.venv), not the vLLM one, so its snakemake plans."""
    exe = ROOT / ".venv" / "bin" / "snakemake"
    if not exe.exists():
        exe = Path(shutil.which("snakemake") or "snakemake")
    cmd = [
        str(exe),
        "-n",
        "-p",
        "--profile",
        "profiles/slurm",
        "all",
        "--configfile",
        "config.yaml",
        *map(str, overlays),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def paper_verdicts(tmp_path_factory):
    return enginecheck.check(_dry_run(tmp_path_factory.mktemp("paper")))


@pytest.fixture(scope="module")
def overlay_verdicts(tmp_path_factory):
    """The old main's choices as a config overlay: stage II on train.gpus (8) GPUs, flash_attention_2."""
    tmp = tmp_path_factory.mktemp("overlay")
    overlay = tmp / "old.yaml"
    overlay.write_text("train:\n  stage2_gpus: 8\n  attn_implementation: flash_attention_2\n")
    return enginecheck.check(_dry_run(tmp, overlay))


@pytest.mark.vllm
def test_paper_dag_passes_the_engine_check(paper_verdicts):
    """Every GPU job of `snakemake --profile profiles/slurm all` passes vLLM's, TRL's and the env's checks."""
    failed = [v for v in paper_verdicts if not v.ok]
    assert not failed, enginecheck.table(failed)
    engines = {v.engine for v in paper_verdicts}
    assert engines == {"vllm", "vllm (TRL)", "trl", "attention"}
    jobs = {v.job.split()[0] for v in paper_verdicts}
    assert {"filter_source", "stage2_rollouts", "evaluate", "train_stage"} <= jobs
    # TRL's colocated engine with sleep mode (train.vllm_sleep_mode), accepted by vLLM's own config check
    colocated = [v for v in paper_verdicts if v.engine == "vllm (TRL)"]
    assert colocated and all("sleep mode" in v.message for v in colocated)


@pytest.mark.vllm
def test_stage2_rollouts_fit_the_heads(paper_verdicts, overlay_verdicts):
    """Blocker 1: TP 8 on 28 heads is refused by vLLM's own check; the default (one GPU per shard) passes."""
    ok = [v for v in paper_verdicts if v.job.startswith("stage2_rollouts")]
    assert len(ok) == 8 and all(v.ok and v.message.startswith("TP 1,") for v in ok)
    bad = [v for v in overlay_verdicts if v.job.startswith("stage2_rollouts")]
    assert bad and all(not v.ok for v in bad)
    assert "Total number of attention heads (28) must be divisible by tensor parallel size (8)" in bad[0].message
    attention = [v for v in overlay_verdicts if v.engine == "attention"]
    assert attention and not any(v.ok for v in attention)  # blocker 3, reported from the env file


@pytest.mark.vllm
def test_32k_cells_fit_the_engine_window(paper_verdicts):
    """Blocker 2: the old window (32,768-token prompt + 8,192 new tokens, no YaRN at 32K) is refused by vLLM; the
    planned one (eval.past_native: yarn) is accepted, and so is every RULER / NIAH cell of the paper run."""
    from loongrl.inference import vllm_engine_kwargs

    old = enginecheck.vllm_verdict("old", vllm_engine_kwargs(SEVEN_B, max_model_len=32768 + 8192))
    assert not old.ok and "max_model_len (40960) is greater than the derived max_model_len" in old.message
    cells = [v for v in paper_verdicts if v.job.startswith("evaluate") and ".L32768." in v.job]
    assert len(cells) == 8 and all(v.ok and "YaRN x4" in v.message for v in cells)  # (niah, ruler) x 4 models
    long = [v for v in paper_verdicts if v.job.startswith("evaluate") and ".L131072." in v.job]
    assert long and all(v.ok and "long-length override" in v.message for v in long)
    plan = evaluate.plan_cell(
        [32768],
        labels=[32768],
        caps=[8192],
        native=32768,
        yarn={"factor": 4.0, "native_context": 32768, "min_length": 65536},
        past_native="yarn",
        source="t",
    )
    new = enginecheck.vllm_verdict(
        "new",
        vllm_engine_kwargs(
            SEVEN_B, max_model_len=plan.window, rope_parameters=evaluate.model_rope_parameters(SEVEN_B, **plan.yarn)
        ),
    )
    assert new.ok and "max_model_len 40960, YaRN x4" in new.message


@pytest.mark.vllm
def test_engine_check_cli_exit_code(tmp_path):
    """The CLI prints the table and exits non-zero on a failing job."""
    text = (
        "rule stage2_rollouts:\nShell command: python -m loongrl.train.stage2 count --model "
        'resources/models/Qwen--Qwen2.5-7B-Instruct --data d --params \'{"stage2_engine": '
        '{"gpu_memory_utilization": 0.9, "max_model_len": null, "enforce_eager": false}}\' --backend vllm --n 8 '
        "--shard 0 --shards 1 --gpus 8 --seed 1 --output o.parquet > l 2>&1\n"
    )
    listing = tmp_path / "dry.txt"
    listing.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "loongrl.enginecheck", str(listing)], capture_output=True, text=True, env=env
    )
    assert res.returncode != 0 and "| FAIL |" in res.stdout and "divisible by tensor parallel size (8)" in res.stdout


@pytest.mark.vllm
def test_local_judge_jobs_get_the_engine_check():
    """A LongBench judge run by our vLLM backend is checked like any GPU job; an endpoint judge asks for none."""
    judge = json.dumps({"model": "Qwen/Qwen2.5-32B-Instruct", "backend": "vllm", "batch_size": 16})
    endpoint = json.dumps({"model": "deepseek-chat", "url": "https://api.deepseek.com/v1"})
    line = (
        "rule judge:\nShell command: python -m loongrl.eval.judge --samples s --summary y --tasks t --judge '{j}' "
        "--model {m} --gpus {g} --seed 42 --out-samples a --out-summary b > l 2>&1\n"
    )
    m = "resources/models/Qwen--Qwen2.5-32B-Instruct"
    text = line.format(j=judge, m=m, g=4) + line.format(j=judge, m=m, g=3) + line.format(j=endpoint, m="''", g=0)
    verdicts = enginecheck.check(text)
    assert [v.ok for v in verdicts] == [True, False]
    assert verdicts[0].message.startswith("TP 4,")
    assert "Total number of attention heads (40) must be divisible by tensor parallel size (3)" in verdicts[1].message
