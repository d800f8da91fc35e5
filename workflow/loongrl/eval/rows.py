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
) -> dict[str, Any]:
    """One task row (``prompt_tokens`` is filled in by ``finish`` in one batched tokenizer call)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
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
