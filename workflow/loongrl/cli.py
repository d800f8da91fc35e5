"""Pieces shared by the stage CLIs (``python -m loongrl.<stage>``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
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


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` as its ``python -m`` entry point: bad or unreadable input (a ``DataError`` naming the
    file, row and field; a missing file; a corrupt or truncated parquet; a missing or mistyped column) and a failed
    download (``StageError``) end in one line on stderr and exit status 2 instead of a traceback. Outputs are
    written atomically, so nothing is left half-written. ``LOONGRL_TRACEBACK=1`` re-raises, for debugging."""
    from loongrl.io import DataError, StageError

    try:
        main()
    except (DataError, StageError, FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        if os.environ.get("LOONGRL_TRACEBACK") == "1":
            raise
        name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "loongrl"
        print(f"error ({name}): {exc}", file=sys.stderr)
        sys.exit(2)
