"""The eval task row: one schema for every benchmark, so generation and scoring are benchmark-agnostic.

A task file holds the exact chat prompts a model will see, the gold answers and the metric name (a key of
``loongrl.eval.metrics.METRICS``). Builders create rows with ``task_row`` and count their prompt tokens with
``finish`` in one batched tokenizer call.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from loongrl.eval.metrics import METRICS
from loongrl.prompts import chat_token_counts, messages
from loongrl.schemas import MESSAGE

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
    prefill: str | None = None,
) -> dict[str, Any]:
    """One task row (``prompt_tokens`` is filled in by ``finish`` in one batched tokenizer call); ``prefill`` starts
    the assistant's reply (RULER's answer prefix for the instruct kind)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    return {
        "id": id,
        "benchmark": benchmark,
        "task": task,
        "length": length,
        "prompt": messages(user, system, prefill),
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


LENGTH_TOLERANCE = 0.03  # a labelled row's prompt may miss its cell's length by this share (or 128 tokens)


def length_slack(length: int, tolerance: float = LENGTH_TOLERANCE) -> int:
    """How far a row's prompt may miss its cell's length (``check_lengths``); the engine check's bound adds it."""
    return int(max(tolerance * length, 128))


def check_lengths(
    rows: list[dict[str, Any]], *, reserve: int = 0, tolerance: float = LENGTH_TOLERANCE, source: str
) -> None:
    """Every row with a length label must fill it: ``prompt_tokens`` within ``tolerance`` of ``length - reserve``
    (or 128 tokens on short cells, where one RULER noise sentence is already a few percent).

    A 128K cell built from a haystack of 40K tokens still looks like a 128K cell in every table, which is how short
    books went unnoticed; here it is a build error that names the row.
    """
    from loongrl.io import DataError

    for r in rows:
        if not r["length"]:
            continue
        target = r["length"] - reserve
        if abs(r["prompt_tokens"] - target) > length_slack(r["length"], tolerance):
            raise DataError(
                source,
                r["id"],
                "prompt_tokens",
                f"{r['prompt_tokens']} tokens for a {r['length']}-token cell (target {target}, tolerance "
                f"{tolerance:.0%}): the source is too small for this length (more books, or the official RULER QA "
                "files: eval.ruler.qa_source: download)",
            )


def truncate_middle(tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    """LongBench ``pred.py``: keep the first and last ``max_tokens // 2`` tokens of an over-long prompt."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, False
    half = max_tokens // 2
    return tokenizer.decode(ids[:half]) + tokenizer.decode(ids[-half:]), True
