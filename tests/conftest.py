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
