"""Memory preflight: the paper presets fit their GPUs with the shipped settings; settings that cannot fit fail,
naming the key to change."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT
from loongrl.pipeline import load_config
from loongrl.train.memory import ModelShape, check, estimate, main

# Public config.json values of the paper's policies.
QWEN25_7B = {
    "num_hidden_layers": 28,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}
QWEN25_14B = {
    "num_hidden_layers": 48,
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "vocab_size": 152064,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
}


def _train(*overlays: str) -> dict:
    cfg = load_config(ROOT / "config.yaml", *(ROOT / o for o in overlays))
    return cfg["train"], cfg["mixture"]["max_prompt_tokens"]


def test_parameter_counts_match_the_models():
    assert round(ModelShape.from_config(QWEN25_7B).params / 1e9, 2) == 7.62  # Qwen2.5-7B: 7.61B
    assert round(ModelShape.from_config(QWEN25_14B).params / 1e9, 1) == 14.8  # Qwen2.5-14B: 14.7B


@pytest.mark.parametrize(
    ("overlays", "model"),
    [((), QWEN25_7B), (("presets/qwen7b-16xa100.yaml",), QWEN25_7B), (("presets/qwen14b-8xmi300x.yaml",), QWEN25_14B)],
)
def test_paper_presets_fit_with_shipped_settings(overlays, model):
    train, prompt = _train(*overlays)
    assert prompt >= 20_500 and train["max_completion_length"] == 4096  # ~20.5K-token prompts + 4K of reasoning
    est, problems = check(ModelShape.from_config(model), train, prompt_tokens=prompt)
    assert problems == [], problems
    # at least 10 % headroom (train.memory_margin), DeepSpeed's live-parameter window counted
    assert est["total"] <= 0.9 * train["gpu_memory_gib"] and est["activations"] > 0 and est["lm_head_tiles"] > 0
    assert est["zero3_live_window"] * 2**30 == 2 * (1_000_000_000 + 50_000_000)
    assert est["reference"] > 0  # beta = 0.001: TRL keeps a ZeRO-3-sharded reference model


def test_settings_that_cannot_fit_fail_naming_the_key():
    train, prompt = _train("presets/qwen7b-16xa100.yaml")
    shape = ModelShape.from_config(QWEN25_7B)
    _, problems = check(shape, {**train, "per_device_batch": 8}, prompt_tokens=prompt)
    assert len(problems) == 1
    assert "config key 'train.per_device_batch': 8 sequences" in problems[0]
    assert "lower train.per_device_batch to 2" in problems[0]
    assert "train.memory_margin x train.gpu_memory_gib = 0.9 x 80 = 72.0 GiB" in problems[0]
    # a 128K prompt without gradient checkpointing: not even one sequence fits
    _, problems = check(shape, {**train, "per_device_batch": 1, "gradient_checkpointing": False}, prompt_tokens=131_072)
    assert "not even one sequence fits" in problems[0] and "train.gradient_checkpointing" in problems[0]


def test_a_shape_past_the_margin_fails_though_it_fits_the_device():
    """95 % full fits 80 GiB on paper but not the 90 % margin: refused, naming the key (and the margin is a key)."""
    train, prompt = _train()
    train = {**train, "vllm_sleep_mode": False}  # vLLM's 30 % of the smaller device still holds the policy
    shape = ModelShape.from_config(QWEN25_7B)
    est, _ = check(shape, train, prompt_tokens=prompt)
    gib = est["total"] / 0.95  # a device on which this estimate is 95 % full
    _, problems = check(shape, {**train, "gpu_memory_gib": gib}, prompt_tokens=prompt)
    assert len(problems) == 1 and "config key 'train.per_device_batch': 1 sequences" in problems[0]
    assert "not even one sequence fits" in problems[0]  # batch 1 is the smallest: the hint names other keys
    assert check(shape, {**train, "gpu_memory_gib": gib, "memory_margin": 0.96}, prompt_tokens=prompt)[1] == []


def test_sleeping_vllm_is_counted_by_phase_and_must_hold_one_sequence():
    """train.vllm_sleep_mode: vLLM's share and the backward's activations never coexist, so the peak is the larger
    phase; awake, they add up. vLLM's share below the policy plus one sequence's KV cache fails naming its key."""
    train, prompt = _train()
    shape = ModelShape.from_config(QWEN25_7B)
    est, problems = check(shape, train, prompt_tokens=prompt)
    awake, _ = check(shape, {**train, "vllm_sleep_mode": False}, prompt_tokens=prompt)
    training = sum(v for k, v in est.items() if k not in ("vllm", "total"))
    generation = sum(est[k] for k in ("weights", "gradients", "optimizer", "reference", "overhead")) + est["vllm"]
    assert problems == [] and est["total"] == pytest.approx(max(training, generation))
    assert awake["total"] == pytest.approx(training + est["vllm"]) and awake["total"] > est["total"] + 20
    _, problems = check(shape, {**train, "vllm_gpu_memory_utilization": 0.18}, prompt_tokens=prompt)
    assert len(problems) == 1 and problems[0].startswith("config key 'train.vllm_gpu_memory_utilization'")
    assert "less than one 26624-token sequence needs" in problems[0]


def test_estimate_follows_zero_stage_and_batch():
    shape = ModelShape.from_config(QWEN25_7B)
    kw = {"prompt_tokens": 20_000, "completion_tokens": 4096, "world_size": 16}
    z3 = estimate(shape, per_device_batch=1, zero_stage=3, **kw)
    z0 = estimate(shape, per_device_batch=1, zero_stage=0, **kw)
    assert z0["optimizer"] == pytest.approx(16 * z3["optimizer"]) and z0["weights"] > 14  # 7.6B x 2 bytes unsharded
    two = estimate(shape, per_device_batch=2, zero_stage=3, **kw)
    assert two["activations"] == pytest.approx(2 * z3["activations"])
    assert z3["lm_head_grad"] == pytest.approx(4 * shape.embedding / 2**30)  # the head's fp32 gradient, gathered


def test_terms_follow_trl_and_the_qwen_layer():
    """What the first estimate got wrong: no full logits (TRL's chunked LM head: one 4,096 x 32,768 tile), a
    SwiGLU layer of I = 5.3 h with fp32 RMSNorm costs more than the 34·h of a 4h-MLP layer, sdpa adds its padding
    mask, and beta = 0 drops the reference model."""
    from loongrl.train.memory import GIB, checkpoint_gib, recomputed_layer_bytes

    shape = ModelShape.from_config(QWEN25_7B)
    kw = {"prompt_tokens": 22_528, "completion_tokens": 4096, "per_device_batch": 2, "world_size": 16}
    flash = estimate(shape, **kw)
    assert flash["lm_head_tiles"] * GIB == pytest.approx(2 * 4096 * 32768 + 4 * 2 * 4096 * shape.hidden)
    assert recomputed_layer_bytes(shape) > 2.5 * 34 * shape.hidden
    sdpa = estimate(shape, **kw, attention="sdpa")
    assert sdpa["attention"] * GIB == 2 * 26_624**2 and flash["attention"] == 0
    assert estimate(shape, **kw, reference_model=False)["reference"] == 0
    assert 100 < checkpoint_gib(shape) < 125  # ~7.6B x 16 bytes: bf16 shards + fp32 master and moments + 16-bit model


def test_cli_writes_a_report_or_fails(tmp_path, tiny_model_dir):
    train, prompt = _train("profiles/local/config.tiny.yaml")
    out = tmp_path / "m.json"
    main(
        [
            "--model",
            str(tiny_model_dir),
            "--params",
            json.dumps(train),
            "--prompt-tokens",
            str(prompt),
            "--output",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["estimate_gib"]["total"] < 10
    assert report["checkpoints_on_disk_gib"] == pytest.approx(
        report["checkpoint_gib"] * (train["save_total_limit"] + 1)
    )
    (tmp_path / "big").mkdir()
    (tmp_path / "big/config.json").write_text(json.dumps(QWEN25_7B))
    with pytest.raises(SystemExit, match=r"train\.per_device_batch"):
        main(
            [
                "--model",
                str(tmp_path / "big"),
                "--params",
                json.dumps({**train, "per_device_batch": 16, "gpus": 1, "nodes": 1}),
                "--prompt-tokens",
                "22528",
                "--output",
                str(tmp_path / "x.json"),
            ]
        )


def test_stage_hours_from_the_mixture_and_the_assumed_throughput(tmp_path, caplog):
    """The preflight sizes each stage from its mixture (rows, mean prompt tokens; `steps: epoch` as full batches,
    stage II by stage I's mixture) and the two throughput assumptions, and warns, naming the keys, when a stage
    cannot finish within job_runtime x (job_retries + 1)."""
    from conftest import write_choice_mixture
    from loongrl.train.memory import schedule, step_hours

    train, _ = _train()
    shape = ModelShape.from_config(QWEN25_7B)
    short, long = step_hours(shape, train, mean_prompt_tokens=1000), step_hours(shape, train, mean_prompt_tokens=20000)
    assert long["training_h"] > 5 * short["training_h"] and long["generation_h"] == short["generation_h"]
    twice = step_hours(
        shape, {**train, "assumed_train_tflops": 2 * train["assumed_train_tflops"]}, mean_prompt_tokens=1000
    )
    assert twice["training_h"] == pytest.approx(short["training_h"] / 2)
    mixtures = {
        "warmup": {"rows": 13524, "mean_prompt_tokens": 9000.0},
        "stage1": {"rows": 21024, "mean_prompt_tokens": 12300.0},
    }
    plan, warnings = schedule(shape, train, mixtures)
    assert plan["stages"]["warmup"]["steps"] == 13524 // 512 == 26  # one epoch: full batches only
    assert plan["stages"]["stage2"]["step_h"] == plan["stages"]["stage1"]["step_h"]
    assert warnings == [] and plan["budget_h"] == 48 * (train["job_retries"] + 1)
    _, warnings = schedule(shape, {**train, "job_retries": 0}, mixtures)
    assert warnings and "raise config key 'train.job_retries' or 'train.job_runtime'" in warnings[0]
    assert "train.job_runtime x (train.job_retries + 1) = 48h x 1 = 48 h" in warnings[0]
    # the CLI reads the mixtures' real prompt lengths and writes the plan
    mix = tmp_path / "stage1.parquet"
    write_choice_mixture(mix, n=8)
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.json").write_text(json.dumps(QWEN25_7B))
    tiny = {**train, "prompts_per_step": 4, "stages": {"stage1": {"steps": "epoch", "data": "stage1", "init": "base"}}}
    main(
        [
            "--model",
            str(tmp_path / "m"),
            "--params",
            json.dumps(tiny),
            "--prompt-tokens",
            "22528",
            "--mixture",
            f"stage1={mix}",
            "--output",
            str(tmp_path / "out.json"),
        ]
    )
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["mixtures"]["stage1"] == {"rows": 8, "mean_prompt_tokens": 20.0, "max_prompt_tokens": 20}
    assert report["schedule"]["stages"]["stage1"]["steps"] == 2 and report["schedule_warnings"] == []


# SmolLM2-135M-Instruct's config.json (the laptop policy)
SMOLLM2 = {
    "num_hidden_layers": 30,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}


def test_cpu_stage_past_host_ram_fails_naming_the_batch_that_fits():
    """KeyChain-nano on a 24 GB laptop: a group of 8 sequences of ~1,300 + 64 tokens at once (the setting the OOM
    killer ended at 21.6 GB RSS) is refused with the batch that fits; 4 (two micro-batches a step) and the plain
    retrieval task's ~250-token prompts (measured 7.5 GB peak RSS) pass."""
    from loongrl.train.memory import cpu_check

    shape = ModelShape.from_config(SMOLLM2)
    train, _ = _train("profiles/local/config.tiny.yaml", "profiles/nano/config.nano.yaml")
    train = {**train, "beta": 0.04}
    est, problems = cpu_check(shape, train, prompt_tokens=1305, host_gib=23.5)
    (msg,) = problems
    assert "config key 'train.per_device_batch': 8 sequences of 1305 + 64 tokens" in msg
    assert "on the CPU (fp32)" in msg and "lower train.per_device_batch to 4" in msg and est["total"] > 21.6
    assert cpu_check(shape, {**train, "per_device_batch": 4}, prompt_tokens=1305, host_gib=23.5)[1] == []
    est, problems = cpu_check(shape, train, prompt_tokens=255, host_gib=23.5)
    assert problems == [] and 7.5 < est["total"] < 2 * 7.5  # above the measured peak, within 2x of it
    # fp32 on the CPU: twice the bf16 activations of the same step on a GPU
    kw = {"prompt_tokens": 1305, "completion_tokens": 64, "per_device_batch": 8, "world_size": 1, "zero_stage": 0}
    assert estimate(shape, dtype_bytes=4, **kw)["activations"] == pytest.approx(
        2 * estimate(shape, **kw)["activations"]
    )


def test_cpu_stage_checks_itself_before_training(tmp_path, monkeypatch):
    """grpo.run_stage on the CPU refuses a mixture whose longest prompt cannot fit, naming the file and the key,
    before any model is loaded."""
    import loongrl.train.memory as memory
    from loongrl.io import write_parquet
    from loongrl.schemas import MIXTURE_SCHEMA
    from loongrl.train.grpo import check_host_memory

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(SMOLLM2))
    rows = [{name: None for name in MIXTURE_SCHEMA.names} | {"id": f"r{i}", "prompt_tokens": t} for i, t in
            enumerate([200, 1305])]  # fmt: skip
    data = tmp_path / "stage1.parquet"
    write_parquet(rows, data, MIXTURE_SCHEMA)
    train, _ = _train("profiles/local/config.tiny.yaml", "profiles/nano/config.nano.yaml")
    monkeypatch.setattr(memory, "host_memory_gib", lambda: 23.5)
    with pytest.raises(RuntimeError, match=r"stage1.parquet: config key 'train.per_device_batch': 8 sequences of 1305"):
        check_host_memory(model, data, train)
    check_host_memory(model, data, {**train, "per_device_batch": 4})
    with pytest.raises(RuntimeError, match=r"lower train\.per_device_batch to 1 "):  # two ranks share the host
        check_host_memory(model, data, {**train, "per_device_batch": 4}, world_size=2)


def test_host_memory_is_the_machine_or_its_cgroup_limit():
    import os

    from loongrl.train.memory import GIB, host_memory_gib

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    assert 0 < host_memory_gib() <= physical
