"""Pieces shared by the stage CLIs (``python -m loongrl.<stage>``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def setup_logging() -> None:
    """One log format for every stage, so Snakemake's per-job logs read alike."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def add_synthesis_args(ap: argparse.ArgumentParser, params_help: str) -> None:
    """Arguments of the stages that build prompts at one length under the policy tokenizer."""
    ap.add_argument("--tokenizer", required=True, type=Path, help="local model/tokenizer folder")
    ap.add_argument("--length", required=True, type=int, help="target length in tokens")
    ap.add_argument("--params", required=True, help=params_help)
    ap.add_argument("--system-prompt", default="loongrl")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--stats", required=True, type=Path)
