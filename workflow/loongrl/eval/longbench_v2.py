"""LongBench v2 [THUDM/LongBench-v2, ``data.json``, 503 rows]: the paper's Table 6 (Avg@5) [spec §4, §5].

Prompts are the official ``pred.py`` templates. Reasoning models (the LoongRL system prompt, T=0.6) get the 0-shot
template; the answer is read after ``</think>``, from ``\\boxed{X}`` or the official "The correct answer is (X)".
Non-reasoning baselines (``eval.decoding.greedy``) get the 0-shot CoT template at T=0.1 and, as ``pred.py`` does,
a second call that sees the question, the choices and the chain of thought (not the text) and states the answer.
Over-long prompts keep the first and last halves of the token budget (``pred.py``).

Scoring (``result.py``, in ``loongrl.eval.metrics``): accuracy per sample, averaged over the n samples of a row
(Avg@n) and over rows; an answer naming several letters scores 0; ``compensated`` (off by default) gives an
unparsable answer 0.25. Breakdowns: difficulty (easy / hard), length (short / medium / long) and the task type from
``domain``, in the paper's column order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loongrl.eval.rows import task_row, truncate_middle
from loongrl.io import DataError, read_rows
from loongrl.prompts import count_prompt_tokens, messages

FIELDS = ("_id", "domain", "sub_domain", "difficulty", "length", "question", "choice_A", "choice_B", "choice_C")
FIELDS = (*FIELDS, "choice_D", "answer", "context")
DIFFICULTIES = ("easy", "hard")
LENGTHS = ("short", "medium", "long")
LETTERS = "ABCD"
# ``domain`` -> the paper's task-type column, in Table 6's order [spec §5].
TASK_TYPES = {
    "Long In-context Learning": "long_icl",
    "Long Structured Data Understanding": "long_sdu",
    "Code Repository Understanding": "code",
    "Single-Document QA": "singledoc_qa",
    "Long-dialogue History Understanding": "long_dialogue",
    "Multi-Document QA": "multidoc_qa",
}

_CHOICES = "What is the correct answer to this question: $Q$\nChoices:\n(A) $C_A$\n(B) $C_B$\n(C) $C_C$\n(D) $C_D$\n\n"
# The official templates [THUDM/LongBench prompts/0shot.txt, 0shot_cot.txt, 0shot_cot_ans.txt].
TEMPLATE_0SHOT = (
    "Please read the following text and answer the question below.\n\n<text>\n$DOC$\n</text>\n\n"
    + _CHOICES
    + 'Format your response as follows: "The correct answer is (insert answer here)".'
)
TEMPLATE_COT = (
    "Please read the following text and answer the questions below.\n\n<text>\n$DOC$\n</text>\n\n"
    + _CHOICES
    + "Let’s think step by step:"
)
TEMPLATE_COT_ANSWER = (
    "Please read the following text and answer the questions below.\n\nThe text is too long and omitted here.\n\n"
    + _CHOICES
    + "Let’s think step by step: $COT$\n\nBased on the above, what is the single, most likely answer choice? "
    'Format your response as follows: "The correct answer is (insert answer here)".'
)


def load(path: Path) -> list[dict[str, Any]]:
    """Rows of the official ``data.json``, checked field by field (errors name the file, the row and the field)."""
    rows = read_rows(path)
    for i, row in enumerate(rows):
        rid = row.get("_id", f"#{i}") if isinstance(row, dict) else f"#{i}"
        if not isinstance(row, dict):
            raise DataError(path, rid, "<row>", f"expected an object, got {type(row).__name__}")
        for field in FIELDS:
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(path, rid, field, "missing, not a string or empty")
        if row["answer"] not in LETTERS:
            raise DataError(path, rid, "answer", f"{row['answer']!r} is not one of A, B, C, D")
        if row["difficulty"] not in DIFFICULTIES:
            raise DataError(path, rid, "difficulty", f"{row['difficulty']!r} is not one of {DIFFICULTIES}")
        if row["length"] not in LENGTHS:
            raise DataError(path, rid, "length", f"{row['length']!r} is not one of {LENGTHS}")
        if row["domain"] not in TASK_TYPES:
            raise DataError(path, rid, "domain", f"{row['domain']!r} is not one of {sorted(TASK_TYPES)}")
    return rows


def fill(template: str, row: dict[str, Any], context: str = "", cot: str = "") -> str:
    """A template with the row's fields substituted (``pred.py``: every field stripped)."""
    out = template.replace("$DOC$", context.strip()).replace("$Q$", row["question"].strip())
    for letter in LETTERS:
        out = out.replace(f"$C_{letter}$", row[f"choice_{letter}"].strip())
    return out.replace("$COT$", cot)


def build(
    rows: list[dict[str, Any]],
    tokenizer,
    *,
    bucket: str,
    max_input_tokens: int,
    system: str | None,
    cot: bool,
    compensated: bool = False,
    max_rows: int | None = None,
) -> list[dict[str, Any]]:
    """Task rows of one length bucket. With ``cot`` the prompt is the CoT template and ``meta.followup`` holds the
    answer-extraction template (``$COT$`` is filled with each sample's chain of thought at evaluation time)."""
    overhead = count_prompt_tokens(tokenizer, messages("", system))
    out = []
    for r in [r for r in rows if r["length"] == bucket][: max_rows or None]:
        prompt = fill(TEMPLATE_COT if cot else TEMPLATE_0SHOT, r, r["context"])
        user, cut = truncate_middle(tokenizer, prompt, max_input_tokens - overhead)
        meta = {
            "_id": r["_id"],
            "groups": {"difficulty": r["difficulty"], "length_bucket": r["length"]},
        }
        if cot:
            meta["followup"] = fill(TEMPLATE_COT_ANSWER, r, cot="$COT$")
        out.append(
            task_row(
                id=f"longbench_v2-{r['_id']}",
                benchmark="longbench_v2",
                task=TASK_TYPES[r["domain"]],
                user=user,
                answers=[r["answer"]],
                metric="longbench_v2_compensated" if compensated else "longbench_v2",
                system=system,
                truncated=cut,
                meta=meta,
            )
        )
    return out
