"""Answer extraction and matching shared by the difficulty filter, the verifiers and the eval metrics.

Matching rules (``answer_match``), after SQuAD normalisation, max over the gold answers:

* ``words`` (the reward's default): the prediction's words are a contiguous run of a gold answer's words, or a gold
  answer's words are a contiguous run of the prediction's. ``Obama`` matches Barack Obama and ``September 2, 1945``
  matches 1945, but ``s`` does not match Jesus, nor ``1`` 1945.
* ``chars``: either string inside the other, character-wise: the paper's two-way substring EM [P Eq. 3] and its
  Table 2 metric. ``s`` matches Jesus.
* ``gold_in_pred``: a gold answer inside the prediction, character-wise: the check of the official reward code's
  stored versions (LR ``longcontext_qa.py``) [spec §2].
* ``cem``: the prediction inside a gold answer, character-wise: the official difficulty filter's check.

``hedge`` names the answers a policy can learn to game a substring rule with: several candidates of which the gold is
one, both yes and no, or nothing but function words.
"""

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


MATCH_MODES = ("words", "chars", "gold_in_pred", "cem")


def _run_of(short: list[str], long: list[str]) -> bool:
    """``short`` is a contiguous run of ``long``."""
    n = len(short)
    return any(long[i : i + n] == short for i in range(len(long) - n + 1))


def _match_one(p: str, g: str, mode: str) -> bool:
    if mode == "words":
        pw, gw = p.split(), g.split()
        return _run_of(pw, gw) or _run_of(gw, pw)
    if mode == "chars":
        return p in g or g in p
    if mode == "gold_in_pred":
        return g in p
    if mode == "cem":
        return p in g
    raise ValueError(f"unknown match mode {mode!r}; known: {MATCH_MODES}")


def answer_match(pred: str | None, golds: Iterable[str], mode: str = "words") -> bool:
    """Whether ``pred`` matches any gold answer under ``mode`` (see the module docstring).

    An empty prediction never matches: the empty string is inside everything, which would reward blank answers.
    """
    if pred is None:
        return False
    p = normalize_answer(pred)
    if not p:
        return False
    return any(_match_one(p, g, mode) for g in map(normalize_answer, golds) if g)


def contains_match(pred: str | None, golds: Iterable[str], mode: str = "two_way") -> bool:
    """The character-level checks: ``two_way`` (the paper's, = ``chars``) or ``cem`` (the official filter's)."""
    return answer_match(pred, golds, "chars" if mode == "two_way" else mode)


# ---------------------------------------------------------------------------------------------------- hedges
# Words that carry no answer on their own. yes / no are answers, so they are not here.
FUNCTION_WORDS = frozenset(
    """a an the of in on at to for from by with into onto upon about over under after before between among through
    during without within and or but nor so as than then that this these those there here it its is are was were be
    been being am do does did has have had i you he she we they me him her us them my your his our their who whom
    whose which what when where why how not s""".split()
)
_ITEM_SEPARATORS = {";": r";", "/": r"/", "|": r"\|", "or": r"\bor\b"}
_COMMA = re.compile(r",(?!\d{3}(?!\d))")  # a comma that is not a thousands separator (2,000)
_NUMBER = re.compile(r"^[\d.,]+$")


def candidates(pred: str, golds: Iterable[str]) -> list[str]:
    """The items a prediction lists, or ``[pred]`` when it is one answer.

    Items are separated by ``;`` ``/`` ``|`` or the word ``or`` (any count), or by commas when there are three or
    more items, or two that are both numbers (``1944, 1945``). Two comma items such as ``Paris, France`` or
    ``September 2, 1945`` read as one answer with a qualifier. A separator that a gold answer itself contains
    (``AC/DC``, ``Trick or Treat``, ``Crosby, Stills, Nash``) is not split on.
    """
    lowered = [g.lower() for g in golds]
    seps = [rx for rx in _ITEM_SEPARATORS.values() if not any(re.search(rx, g) for g in lowered)]
    text = pred.strip()
    if seps:
        items = [x.strip() for x in re.split("|".join(seps), text, flags=re.IGNORECASE) if x.strip()]
        if len(items) > 1:
            return items
    if not any("," in g for g in golds):
        items = [x.strip() for x in _COMMA.split(text) if x.strip()]
        if len(items) >= 3 or (len(items) == 2 and all(_NUMBER.match(x) for x in items)):
            return items
    return [text]


def hedge(pred: str, golds: Iterable[str], mode: str = "words") -> str | None:
    """Why ``pred`` is a hedge rather than an answer, or None.

    ``candidates``: it lists several items and the gold matches only some of them; ``yes_and_no``: it says both
    (and no gold does); ``function_words``: every word of it is a function word (``of`` for University of Oxford).
    """
    golds = list(golds)
    words = normalize_answer(pred).split()
    gold_words = [set(normalize_answer(g).split()) for g in golds]
    if {"yes", "no"} <= set(words) and not any({"yes", "no"} <= g for g in gold_words):
        return "yes_and_no"
    if words and all(w in FUNCTION_WORDS for w in words):
        return "function_words"
    items = candidates(pred, golds)
    if len(items) > 1:
        hits = [answer_match(x, golds, mode) for x in items]
        if any(hits) and not all(hits):
            return "candidates"
    return None


def fragment(pred: str, golds: Iterable[str]) -> bool:
    """A partial answer: fewer words than every gold answer it is part of (``Obama`` for Barack Obama).

    The paper's two-way rule rewards it, so the reward keeps it; the training monitor counts it as suspect."""
    p = normalize_answer(pred).split()
    if not p:
        return False
    parts = [g for g in (normalize_answer(x).split() for x in golds) if g and _run_of(p, g)]
    return bool(parts) and all(len(p) < len(g) for g in parts) and not any(p == g for g in parts)
