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

import pyarrow as pa

from loongrl.cli import setup_logging
from loongrl.io import write_parquet
from loongrl.mixture import MESSAGE, MIXTURE_SCHEMA
from loongrl.prompts import chat_token_counts, messages, system_prompt

log = logging.getLogger(__name__)

EVAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("benchmark", pa.string()),
        ("task", pa.string()),
        ("length", pa.int64()),  # target context length (synthetic tasks); 0 where the data sets it
        ("prompt", pa.list_(MESSAGE)),
        ("answers", pa.list_(pa.string())),
        ("metric", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("input_truncated", pa.bool_()),
        ("meta", pa.string()),  # JSON: depth, source length, IFEval instruction ids/kwargs, ...
    ]
)

METRICS = ("longbench_qa", "niah", "ruler_all", "ruler_part", "choice", "math", "ifeval")


def task_row(
    *,
    id: str,
    benchmark: str,
    task: str,
    user: str,
    answers: list[str],
    metric: str,
    system: str | None,
    length: int = 0,
    truncated: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One task row (``prompt_tokens`` is filled in by ``finish`` in one batched tokenizer call)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    return {
        "id": id,
        "benchmark": benchmark,
        "task": task,
        "length": length,
        "prompt": messages(user, system),
        "answers": list(answers),
        "metric": metric,
        "prompt_tokens": 0,
        "input_truncated": truncated,
        "meta": json.dumps(meta or {}, sort_keys=True, ensure_ascii=False),
    }


def finish(rows: list[dict[str, Any]], tokenizer) -> list[dict[str, Any]]:
    """Exact chat-templated prompt lengths for every row."""
    for r, n in zip(rows, chat_token_counts(tokenizer, [r["prompt"] for r in rows]), strict=True):
        r["prompt_tokens"] = n
    return rows


def truncate_middle(tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    """LongBench ``pred.py``: keep the first and last ``max_tokens // 2`` tokens of an over-long prompt."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, False
    half = max_tokens // 2
    return tokenizer.decode(ids[:half]) + tokenizer.decode(ids[-half:]), True


def main(argv: list[str] | None = None) -> None:
    from loongrl import bench_longbench, bench_short, bench_synthetic
    from loongrl.models import load_tokenizer

    ap = argparse.ArgumentParser(prog="python -m loongrl.eval_tasks", description=__doc__)
    ap.add_argument("benchmark", choices=["longbench", "niah", "ruler", "mmlu", "math500", "ifeval", "validation"])
    ap.add_argument("--input", type=Path, nargs="*", default=[], help="official data files / folders")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--params", required=True, help="JSON of the config's eval section")
    ap.add_argument("--length", type=int, default=0, help="context length (ruler)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    tok = load_tokenizer(args.tokenizer)
    system = system_prompt(p["system_prompt"])
    b = args.benchmark
    if b in ("longbench", "validation"):
        lb = p["longbench"]
        data = bench_longbench.load_dir(args.input[0], lb["tasks"] if b == "longbench" else p["validation"]["tasks"])
        val = bench_longbench.validation_ids(data, p["validation"])
        if b == "validation":
            rows = bench_longbench.validation_rows(data, val, tok, lb["max_input_tokens"], system)
            write_parquet(rows, args.output, MIXTURE_SCHEMA)
            log.info("validation slice: %d rows -> %s", len(rows), args.output)
            return
        exclude = val if p["validation"]["holdout"] else set()
        rows = bench_longbench.build(data, tok, lb["max_input_tokens"], system, exclude, lb.get("max_rows"))
    elif b == "niah":
        rows = bench_synthetic.build_niah(args.input, tok, p["niah"], system, args.seed)
    elif b == "ruler":
        rows = bench_synthetic.build_ruler(args.input, tok, p["ruler"], args.length, system, args.seed)
    else:
        rows = bench_short.build(b, args.input, system, p["short"].get("max_rows"))
    write_parquet(finish(rows, tok), args.output, EVAL_SCHEMA)
    log.info("%s: %d task rows -> %s", b, len(rows), args.output)


if __name__ == "__main__":
    main()
