"""Short-context checks [P Table 2]: MMLU, MATH-500 and IFEval in their official file formats.

* MMLU (hendrycks/test ``data/test/<subject>_test.csv``: ``question,A,B,C,D,answer`` without a header, answer a
  letter). Re-exports with a header row and a 0-3 answer index are read too. Scored on the boxed option letter.
* MATH-500 (openai/prm800k ``math_splits/test.jsonl``): scored with ``math-verify``.
* IFEval (google-research ``instruction_following_eval/data/input_data.jsonl``): scored by lm-evaluation-harness's
  port of Google's instruction checkers (prompt- and instruction-level, strict and loose).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from loongrl.eval.rows import task_row
from loongrl.io import DataError, read_rows

LETTERS = "ABCD"
MMLU_TEMPLATE = (
    "The following is a multiple choice question about {subject}.\n\n{question}\n{options}\n\n"
    "Answer with the letter of the correct option."
)
MMLU_HEADER = ["question", "A", "B", "C", "D", "answer"]


def files(inputs: list[Path], pattern: str) -> list[Path]:
    out = sorted(f for p in inputs for f in ([p] if p.is_file() else Path(p).rglob(pattern)))
    if not out:
        raise FileNotFoundError(f"no {pattern} files in {[str(p) for p in inputs]}")
    return out


def load_mmlu(path: Path) -> list[dict[str, Any]]:
    subject = path.name.removesuffix("_test.csv").replace("_", " ")
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for i, rec in enumerate(csv.reader(fh)):
            if i == 0 and rec == MMLU_HEADER:
                continue
            if len(rec) != 6:
                raise DataError(path, i, "<row>", f"expected 6 columns (question,A,B,C,D,answer), got {len(rec)}")
            ans = rec[5].strip()
            if ans in ("0", "1", "2", "3"):
                ans = LETTERS[int(ans)]
            if ans not in LETTERS:
                raise DataError(path, i, "answer", f"{rec[5]!r} is not A-D or 0-3")
            rows.append(
                {"id": f"{path.stem}-{i}", "subject": subject, "question": rec[0], "options": rec[1:5], "answer": ans}
            )
    return rows


def load_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of an official JSONL file, each checked for the fields the builder reads."""
    rows = read_rows(path)
    for i, row in enumerate(rows):
        for f in fields:
            if f not in row:
                raise DataError(path, i, f, "missing")
    return rows


def build(benchmark: str, inputs: list[Path], system: str | None, max_rows: int | None) -> list[dict[str, Any]]:
    out = []
    if benchmark == "mmlu":
        for f in files(inputs, "*_test.csv"):
            for r in load_mmlu(f)[: max_rows or None]:
                options = "\n".join(f"{letter}. {o}" for letter, o in zip(LETTERS, r["options"], strict=True))
                user = MMLU_TEMPLATE.format(subject=r["subject"], question=r["question"], options=options)
                out.append(
                    task_row(
                        id=f"mmlu-{r['id']}",
                        benchmark="mmlu",
                        task=r["subject"],
                        user=user,
                        answers=[r["answer"]],
                        metric="choice",
                        system=system,
                    )
                )
    elif benchmark == "math500":
        for f in files(inputs, "*.jsonl"):
            for r in load_jsonl(f, ("problem", "answer", "unique_id"))[: max_rows or None]:
                out.append(
                    task_row(
                        id=f"math500-{r['unique_id']}",
                        benchmark="math500",
                        task=r.get("subject", "math"),
                        user=r["problem"],
                        answers=[r["answer"]],
                        metric="math",
                        system=system,
                        meta={"level": r.get("level")},
                    )
                )
    elif benchmark == "ifeval":
        for f in files(inputs, "*.jsonl"):
            for r in load_jsonl(f, ("key", "prompt", "instruction_id_list", "kwargs"))[: max_rows or None]:
                out.append(
                    task_row(
                        id=f"ifeval-{r['key']}",
                        benchmark="ifeval",
                        task="ifeval",
                        user=r["prompt"],
                        answers=[],
                        metric="ifeval",
                        system=system,
                        meta={"key": r["key"], "instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]},
                    )
                )
    else:
        raise ValueError(f"unknown short-context benchmark {benchmark!r}")
    return out
