"""Answer extraction and matching shared by the difficulty filter, stage-2 re-filtering and the verifiers."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def extract_answer_is(completion: str) -> str | None:
    """Text after the first case-insensitive "the answer is" (the filter prompt's format), or None."""
    m = _ANSWER_IS.search(completion)
    if m is None:
        return None
    return completion[m.end() :].strip().lstrip(":").strip()


def contains_match(pred: str | None, golds: Iterable[str], mode: str = "two_way") -> bool:
    """Substring match after SQuAD normalisation, max over gold answers.

    ``cem``: normalised prediction inside a normalised gold (the official filter's one-way check);
    ``two_way``: either inside the other (the paper's reward). An empty prediction never matches: the empty string
    is a substring of everything, which would reward blank answers.
    """
    if pred is None:
        return False
    p = normalize_answer(pred)
    if not p:
        return False
    for gold in golds:
        g = normalize_answer(gold)
        if not g:
            continue
        if p in g or (mode == "two_way" and g in p):
            return True
    return False
