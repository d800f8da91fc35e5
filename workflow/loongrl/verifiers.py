"""Rule-based verifiers: one function per kind of answer, shared by the GRPO rewards and the evaluation metrics
[P §3.2.1, spec §2]. ``loongrl.train.rewards`` maps each ``data_source`` to one of them.

* Long QA and KeyChain: the last ``\\boxed{...}`` (brace-matched) after the final ``</think>``; SQuAD normalisation;
  two-way substring match against any gold answer (the paper's Eq. 3). An empty prediction scores 0: the empty string
  is a substring of everything, and a policy rewarded for it learns to answer nothing.
* Optional guards from the official ``format_exact_match`` mode (``guards=True``): an answer more than 128 characters
  longer than the gold, more than 32 characters after the box, or more than one box scores 0.
* Retrieval: multi-value needs every expected value in the answer; multi-key needs the one value.
* Math choice: the option letter. Math (DAPO): answer equivalence through HF ``math-verify``.

Every function returns a float in [0, 1], so TRL's ``reward_funcs`` can use them directly
(see ``loongrl.train.rewards``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from loongrl.answers import normalize_answer

THINK_END = "</think>"
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LETTER = re.compile(r"^\(?\s*([A-Ea-e])\s*(?:\)|\.|:|$|\s)")


@dataclass(frozen=True)
class Guards:
    """The official anti-hacking limits (spec §2, LR longcontext_qa.py ``format_exact_match``)."""

    enabled: bool = False
    answer_overflow: int = 128
    after_box: int = 32
    max_boxes: int = 1


NO_GUARDS = Guards()


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every brace-matched ``\\boxed{...}`` as (start, end, content); unterminated boxes are ignored."""
    spans = []
    for m in _BOX.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            spans.append((m.start(), i, text[m.end() : i - 1]))
    return spans


def answer_region(completion: str) -> str:
    """The text after the final ``</think>`` when present (reasoning is never scored)."""
    return completion.rsplit(THINK_END, 1)[1] if THINK_END in completion else completion


def extract_boxed(completion: str) -> str | None:
    """Content of the last box in the answer region, or None."""
    spans = boxed_spans(answer_region(completion))
    return spans[-1][2] if spans else None


def _guard_fail(completion: str, pred: str, golds: Sequence[str], guards: Guards) -> bool:
    if not guards.enabled:
        return False
    region = answer_region(completion)
    spans = boxed_spans(region)
    if len(spans) > guards.max_boxes:
        return True
    if len(region[spans[-1][1] :].strip()) > guards.after_box:
        return True
    shortest = min((len(g) for g in golds), default=0)
    return len(pred) - shortest > guards.answer_overflow


def qa_reward(completion: str, golds: Sequence[str], guards: Guards = NO_GUARDS) -> float:
    """Two-way substring EM on the last box (the paper's verifier)."""
    pred = extract_boxed(completion)
    if pred is None:
        return 0.0
    p = normalize_answer(pred.replace("*", ""))
    if not p or _guard_fail(completion, pred, golds, guards):
        return 0.0
    for g in golds:
        gn = normalize_answer(g)
        if gn and (gn in p or p in gn):
            return 1.0
    return 0.0


def retrieval_reward(completion: str, values: Sequence[str], require_all: bool, guards: Guards = NO_GUARDS) -> float:
    """Multi-value: every value must appear in the box; multi-key: the single value."""
    pred = extract_boxed(completion)
    if pred is None or not pred.strip():
        return 0.0
    if guards.enabled and len(boxed_spans(answer_region(completion))) > guards.max_boxes:
        return 0.0
    found = [re.search(rf"(?<!\d){re.escape(v)}(?!\d)", pred) is not None for v in values]
    if require_all:
        return float(all(found))
    # multi-key asks for one value; listing extra numbers is a hedge, not an answer
    numbers = re.findall(r"\d+", pred)
    return float(bool(found) and found[0] and len(set(numbers)) == 1)


def choice_reward(completion: str, gold_letter: str) -> float:
    """The option letter in the box: ``B``, ``(B)``, ``B)`` or ``B. text``; listing several options scores 0."""
    pred = extract_boxed(completion)
    if pred is None:
        return 0.0
    letters = re.findall(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z])", pred.strip())
    m = _LETTER.match(pred.strip())
    if m is None or len(set(letters)) > 1:
        return 0.0
    return float(m.group(1).upper() == gold_letter.strip().upper())


def math_reward(completion: str, gold: str) -> float:
    """Equivalence of the boxed answer and the gold through math-verify (LaTeX and plain expressions)."""
    from math_verify import parse, verify

    pred = extract_boxed(completion)
    if pred is None or not pred.strip():
        return 0.0
    gold_parsed = parse(f"\\boxed{{{gold}}}")
    pred_parsed = parse(f"\\boxed{{{pred}}}")
    if not gold_parsed or not pred_parsed:
        return 0.0
    return float(verify(gold_parsed, pred_parsed))
