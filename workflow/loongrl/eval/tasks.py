"""Evaluation task files: every benchmark becomes rows of one schema, built offline and scored by ``evaluate``.

A task file holds the exact chat prompts a model will see, the gold answers and the metric name, so the
generation step is benchmark-agnostic and a cell of the eval matrix (model x benchmark x length) is one job.
Builders: ``longbench`` (official JSONL), ``niah`` and ``ruler`` (synthetic, on book haystacks), ``mmlu``,
``math500`` and ``ifeval`` (official file formats). ``validation`` turns LongBench rows into the mixture schema for
choosing the best stage-I checkpoint [spec §3 / LR ``longbench_valid.sh``].
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from loongrl.cli import run, setup_logging
from loongrl.eval import longbench
from loongrl.eval.kinds import KINDS
from loongrl.eval.registry import BENCHMARKS, BuildRequest
from loongrl.eval.rows import EVAL_SCHEMA, check_lengths, finish
from loongrl.io import write_parquet
from loongrl.prompts import system_prompt
from loongrl.schemas import MIXTURE_SCHEMA

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    """The job's command line (the engine check parses a planned job's arguments with it)."""
    ap = argparse.ArgumentParser(prog="python -m loongrl.eval.tasks", description=__doc__)
    ap.add_argument("benchmark", choices=[*BENCHMARKS, "validation"])
    ap.add_argument("--input", type=Path, nargs="*", default=[], help="official data files / folders")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--params", required=True, help="JSON of the eval settings the benchmark reads")
    ap.add_argument("--length", type=int, default=0, help="context length (benchmarks with length cells)")
    ap.add_argument("--cell", default="all", help="the cell of the eval matrix (L<n>, a length bucket, or all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--kind", choices=list(KINDS), default="reasoning", help="the kind of model the rows are for")
    ap.add_argument("--threads", type=int, default=1, help="worker processes for builders that spread examples")
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument(
        "--max-input-tokens", type=int, default=None, help="validation: prompt cap (the training prompts' limit)"
    )
    return ap


def main(argv: list[str] | None = None) -> None:
    from loongrl.models import load_tokenizer

    args = parser().parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    tok = load_tokenizer(args.tokenizer)
    kind = KINDS[args.kind]
    system = system_prompt(p["system_prompt"]) if kind.system else None
    if args.benchmark == "validation":
        rows = validation_slice(args.input[0], tok, p, system, max_input_tokens=args.max_input_tokens)
        write_parquet(rows, args.output, MIXTURE_SCHEMA)
        log.info("validation slice: %d rows -> %s", len(rows), args.output)
        return
    req = BuildRequest(
        inputs=args.input,
        tokenizer=tok,
        settings=p,
        system=system,
        length=args.length,
        cell=args.cell,
        seed=args.seed,
        threads=args.threads,
        kind=kind,
    )
    rows = finish(BENCHMARKS[args.benchmark].build(req), tok)
    if args.benchmark in ("niah", "ruler"):
        reserve = p["niah"]["reserve"] if args.benchmark == "niah" else 0
        check_lengths(rows, reserve=reserve, source=f"{args.benchmark} cell {args.cell}")
    write_parquet(rows, args.output, EVAL_SCHEMA)
    log.info("%s (%s kind): %d task rows -> %s", args.benchmark, kind.name, len(rows), args.output)


def validation_slice(
    folder: Path, tokenizer, p: dict[str, Any], system: str | None, *, max_input_tokens: int | None = None
) -> list[dict[str, Any]]:
    """The first LongBench rows of ``eval.validation.tasks`` in the mixture schema (stage I's best checkpoint).

    ``max_input_tokens`` caps the prompts below LongBench's own limit: the slice is generated inside the training
    job, whose memory was sized (and preflighted) for ``mixture.max_prompt_tokens``, not for 120K-token prompts.
    """
    data = longbench.load_dir(folder, p["validation"]["tasks"])
    ids = longbench.validation_ids(data, p["validation"])
    cap = p["longbench"]["max_input_tokens"]
    return longbench.validation_rows(
        data, ids, tokenizer, max_input_tokens=min(cap, max_input_tokens or cap), system=system
    )


if __name__ == "__main__":
    run(main)
