"""LongBench v1 QA [THUDM/LongBench]: the official JSONL rows turned into eval tasks and a validation slice.

Prompts: the LoongRL system prompt with the plain multi-hop QA user message (the official validation set uses
it [spec §4]); over-long prompts are cut in the middle as LongBench's ``pred.py`` does. Scored on the boxed answer
with two-way substring EM (the paper's headline) and LongBench's own ``qa_f1_score``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loongrl.eval.rows import finish, task_row, truncate_middle
from loongrl.io import DataError, read_rows
from loongrl.prompts import PLAIN_QA_TEMPLATE, count_prompt_tokens, messages

TASKS = ("hotpotqa", "2wikimqa", "musique", "narrativeqa", "qasper")
FIELDS = {"input": str, "context": str, "answers": list, "length": int, "_id": str}


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of one official ``<task>.jsonl``, checked field by field."""
    rows = read_rows(path)
    for i, row in enumerate(rows):
        for field, kind in FIELDS.items():
            if not isinstance(row.get(field), kind):
                raise DataError(path, row.get("_id", i), field, f"missing or not {kind.__name__}")
        if not row["answers"] or not all(isinstance(a, str) for a in row["answers"]):
            raise DataError(path, row["_id"], "answers", "must be a non-empty list of strings")
    return rows


def load_dir(folder: str | Path, tasks: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``{task: rows}`` from a folder holding LongBench's ``<task>.jsonl`` files (the unzipped ``data/``).

    A task without a file is left out with its name recorded by the caller's summary; the paper-scale download
    always has all five.
    """
    folder = Path(folder)
    out = {}
    for t in tasks:
        f = folder / f"{t}.jsonl"
        if f.exists():
            out[t] = load_jsonl(f)
    if not out:
        raise FileNotFoundError(f"no LongBench files for {tasks} in {folder}")
    return out


def validation_ids(data: dict[str, list[dict[str, Any]]], val: dict[str, Any]) -> set[str]:
    """Ids of the validation slice: the first ``rows_per_task`` rows of each validation task (file order)."""
    return {r["_id"] for t in val["tasks"] for r in data.get(t, [])[: val["rows_per_task"]]}


def user_prompt(
    tokenizer, row: dict[str, Any], max_input_tokens: int, system: str | None, *, template: str = PLAIN_QA_TEMPLATE
) -> tuple[str, bool]:
    """The user message, cut in the middle so that the whole chat prompt fits ``max_input_tokens``."""
    user = template.format(context=row["context"], question=row["input"])
    overhead = count_prompt_tokens(tokenizer, messages("", system))
    return truncate_middle(tokenizer, user, max_input_tokens - overhead)


def build(
    data: dict[str, list[dict[str, Any]]],
    tokenizer,
    *,
    max_input_tokens: int,
    system: str | None,
    exclude: set[str],
    validation: set[str] | frozenset[str] = frozenset(),
    max_rows: int | None = None,
    template: str = PLAIN_QA_TEMPLATE,
) -> list[dict[str, Any]]:
    """Task rows of every configured task, with ``template`` as the user prompt (the plain-QA prompt the training
    rows have for reasoning models; the instruct kind gets the official filter prompt's "The answer is" form).
    Rows whose id is in ``validation`` (the slice stage I's checkpoints were ranked on) stay in, as in the paper's
    full-set numbers, and are marked (``meta.groups.task_heldout``:
    ``<task>@validation`` / ``<task>@test``) so the report can show the held-out subset beside the full set."""
    rows = []
    for task, items in data.items():
        kept = [r for r in items if r["_id"] not in exclude][: max_rows or None]
        for r in kept:
            meta = {"longbench_length": r["length"], "_id": r["_id"], "question": r["input"]}
            if validation:
                meta["groups"] = {"task_heldout": f"{task}@{'validation' if r['_id'] in validation else 'test'}"}
            user, cut = user_prompt(tokenizer, r, max_input_tokens, system, template=template)
            rows.append(
                task_row(
                    id=f"longbench-{task}-{r['_id']}",
                    benchmark="longbench",
                    task=task,
                    user=user,
                    answers=r["answers"],
                    metric="longbench_qa",
                    system=system,
                    truncated=cut,
                    meta=meta,
                )
            )
    return rows


def validation_rows(
    data: dict[str, list[dict[str, Any]]], ids: set[str], tokenizer, *, max_input_tokens: int, system: str | None
) -> list[dict[str, Any]]:
    """The validation slice in the training mixture's schema (scored by the plain-QA reward during training)."""
    rows = []
    for task, items in data.items():
        for r in items:
            if r["_id"] in ids:
                user, _ = user_prompt(tokenizer, r, max_input_tokens, system)
                rows.append(
                    {
                        "id": f"val-{task}-{r['_id']}",
                        "data_source": f"plain_qa_longbench_{task}",
                        "source": "validation",
                        "prompt": messages(user, system),
                        "answers": r["answers"],
                        "pass_rate": None,
                    }
                )
    if not rows:
        raise ValueError("the validation slice is empty: check eval.validation.tasks and the LongBench files")
    return finish(rows, tokenizer)
