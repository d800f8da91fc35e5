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
one (joined by ``;`` ``/`` ``|`` ``or`` ``and`` ``&`` ``+``, line breaks or commas), both yes and no, nothing but
function words, a negation of the gold (``not Berlin``) or a range that spans it (``from 1990 to 1995``).

``canonical`` is applied to a boxed answer and the golds before the reward's (and the eval word-EM's) matching:
Unicode NFKC (full-width digits, non-breaking spaces), invisible format characters removed (zero-width space),
LaTeX text wrappers unwrapped (``\\text{Berlin}``, ``\\textbf``, ``\\mathrm``, ``$...$``, nested too) and ``&`` read
as ``and``. The paper-comparable metrics (sub-EM, LongBench's F1) keep the official normalisation alone.
"""

from __future__ import annotations

import re
import string
import unicodedata
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


_WRAPPER = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|emph|mathrm|mathbf|mathit|mathsf|mathtt|mbox|hbox|"
    r"operatorname)\s*\{([^{}]*)\}"
)
_DOLLARS = re.compile(r"\$+([^$]*)\$+")
_AMP = re.compile(r"\s*(?:\\&|&)\s*")
_LATEX_SPACE = re.compile(r"\\[ ,;:!]|~")
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))


def canonical(text: str) -> str:
    """The answer text matching sees: NFKC, LaTeX text wrappers and ``$...$`` unwrapped (innermost first, so
    ``\\textbf{\\text{Berlin}}`` is Berlin), LaTeX spaces as spaces, Unicode dashes and minus as ``-`` (SQuAD
    normalisation drops ASCII punctuation only, so ``1939–1945`` would keep its en dash), ``&`` as ``and``. Line
    breaks are kept (they separate candidates); SQuAD normalisation folds the remaining whitespace."""
    text = unicodedata.normalize("NFKC", text)
    # invisible format characters (zero-width space and joiners, word joiner, BOM, soft hyphen: Unicode category
    # Cf) would split a correct answer's word ("Ber\u200blin") and make it miss
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    prev = None
    while prev != text:
        prev, text = text, _DOLLARS.sub(r"\1", _WRAPPER.sub(r"\1", text))
    text = _LATEX_SPACE.sub(" ", text).translate(_DASHES)
    return _AMP.sub(" and ", text)


def extract_answer_is(completion: str, *, last: bool = False) -> str | None:
    """Text after the first (``last``: the last) case-insensitive "the answer is" (the filter prompt's format),
    stripped of a leading colon, or None. A reply that corrects itself states the later answer."""
    found = list(_ANSWER_IS.finditer(completion)) if last else [_ANSWER_IS.search(completion)]
    if not found or found[-1] is None:
        return None
    return completion[found[-1].end() :].strip().lstrip(":").strip()


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
_ITEM_SEPARATORS = {
    ";": r";",
    "/": r"/",
    "|": r"\|",
    "or": r"\bor\b",
    "and": r"\band\b",  # also "&" (canonical reads it as "and")
    "+": r"\+",
    "line break": r"\n",
    "vs": r"\bvs\b\.?|\bversus\b",
}
# Words of a parenthesis that qualifies the one answer ("Titanic (1997 film)", "Georgia (country)") rather than
# offering a second one ("Paris (Lyon)"); a parenthesis with a digit is a qualifier too (a year, a date).
QUALIFIERS = frozenset(
    """film movie series tv show miniseries episode band group album song single novel book novella play musical
    opera poem magazine newspaper journal game video character comics comic city town village state county country
    province region district river lake mountain island company corporation team club party singer musician rapper
    actor actress writer author novelist poet politician footballer player athlete director painter artist
    composer producer king queen emperor pope saint born died nee formerly ship aircraft car ballet painting
    sculpture franchise brand university college school church station airport stadium bridge building""".split()
)
_PAREN = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*(.*)$", re.DOTALL)


def _qualifier(inner: str) -> bool:
    words = normalize_answer(inner).split()
    return any(ch.isdigit() for ch in inner) or all(w in QUALIFIERS or w in FUNCTION_WORDS for w in words)


_COMMA = re.compile(r",(?!\d{3}(?!\d))")  # a comma that is not a thousands separator (2,000)
_NUMBER = re.compile(r"^[\d.,]+$")


def candidates(pred: str, golds: Iterable[str]) -> list[str]:
    """The items a prediction lists, or ``[pred]`` when it is one answer.

    Items are separated by ``;`` ``/`` ``|`` ``+``, the words ``or`` / ``and`` (``&``) / ``vs.`` / ``versus``, line
    breaks (any count), a parenthesis that is not a qualifier (``Paris (Lyon)``; ``Titanic (1997 film)`` and
    ``Georgia (country)`` are one answer: ``QUALIFIERS``, or a digit inside),
    or by commas when there are three or more items, or two that are both numbers (``1944, 1945``). Two comma items
    such as ``Paris, France`` or ``September 2, 1945`` read as one answer with a qualifier. A separator that a gold
    answer itself contains (``AC/DC``, ``Trick or Treat``, ``Tom and Jerry``, ``Crosby, Stills, Nash``) is not split
    on.
    """
    lowered = [canonical(g).lower() for g in golds]
    seps = [rx for rx in _ITEM_SEPARATORS.values() if not any(re.search(rx, g) for g in lowered)]
    text = pred.strip()
    paren = _PAREN.match(text)
    if paren and not any("(" in g for g in lowered) and not _qualifier(paren.group(2)):
        # a second answer inside parentheses ("Paris (Lyon)"): the items are the text around it and inside it
        items = [x.strip() for x in (paren.group(1) + " " + paren.group(3), paren.group(2)) if x.strip()]
        if len(items) > 1:
            return items
    if seps:
        items = [x.strip() for x in re.split("|".join(seps), text, flags=re.IGNORECASE) if x.strip()]
        if len(items) > 1:
            return items
    if not any("," in g for g in golds):
        items = [x.strip() for x in _COMMA.split(text) if x.strip()]
        if len(items) >= 3 or (len(items) == 2 and all(_NUMBER.match(x) for x in items)):
            return items
    return [text]


NEGATIONS = frozenset("not no never isnt wasnt arent werent doesnt didnt dont cannot cant neither nor hardly".split())
HEDGE_KINDS = ("candidates", "yes_and_no", "function_words", "negation", "range")
_NUM = r"\d[\d,.]*"
_RANGES = (
    re.compile(r"\bfrom\s+(.+?)\s+(?:to|until|till|through|thru)\s+(.+)", re.IGNORECASE | re.DOTALL),
    re.compile(r"\bbetween\s+(.+?)\s+and\s+(.+)", re.IGNORECASE | re.DOTALL),
    re.compile(rf"({_NUM})\s*(?:-|\u2010|\u2011|\u2012|\u2013|\u2014|\bto\b)\s*({_NUM})", re.IGNORECASE),
)


def range_of(text: str) -> tuple[str, str] | None:
    """The endpoints of a range a text states (``from X to Y``, ``between X and Y``, ``X-Y`` / ``X–Y`` / ``X to
    Y`` for numbers), or None."""
    for rx in _RANGES:
        m = rx.search(text)
        if m:
            return m.group(1).strip(), m.group(2).strip()
    return None


def _number(text: str) -> float | None:
    m = re.fullmatch(r"\s*(\d[\d,]*(?:\.\d+)?)\s*", text)
    return float(m.group(1).replace(",", "")) if m else None


def _spans_gold(ends: tuple[str, str], golds: list[str], mode: str) -> bool:
    """A range covers a gold: an endpoint matches it, or the gold number lies between two number endpoints."""
    if any(answer_match(e, golds, mode) for e in ends):
        return True
    lo, hi = (_number(e) for e in ends)
    if lo is None or hi is None:
        return False
    return any(g is not None and min(lo, hi) <= g <= max(lo, hi) for g in map(_number, golds))


def _negated(words: list[str], golds: list[str]) -> bool:
    """A negation word right before (or two words before) the gold's words in the prediction (``not Berlin``,
    ``is not Berlin``, ``never in Berlin``), unless the gold itself says it (``Not Fade Away``)."""
    for g in golds:
        gw = normalize_answer(g).split()
        if not gw:
            continue
        for i in range(len(words) - len(gw) + 1):
            if words[i : i + len(gw)] == gw and any(w in NEGATIONS for w in words[max(0, i - 2) : i]):
                return True
    return False


def hedge(pred: str, golds: Iterable[str], mode: str = "words") -> str | None:
    """Why ``pred`` is a hedge rather than an answer (one of ``HEDGE_KINDS``), or None.

    ``candidates``: it lists several items and the gold matches only some of them; ``yes_and_no``: it says both
    (and no gold does); ``function_words``: every word of it is a function word (``of`` for University of Oxford);
    ``negation``: it negates the gold (``not Berlin``; a gold that itself contains the negation is fine);
    ``range``: it states a range that spans the gold (``from 1990 to 1995`` for 1995; a gold that is itself a
    range, ``1939–1945``, is fine). ``pred`` and the golds are read through ``canonical``.
    """
    golds = [canonical(g) for g in golds]
    pred = canonical(pred)
    words = normalize_answer(pred).split()
    gold_words = [set(normalize_answer(g).split()) for g in golds]
    if {"yes", "no"} <= set(words) and not any({"yes", "no"} <= g for g in gold_words):
        return "yes_and_no"
    if words and all(w in FUNCTION_WORDS for w in words):
        return "function_words"
    if _negated(words, golds):
        return "negation"
    ends = range_of(pred)
    if ends and not any(range_of(g) for g in golds) and _spans_gold(ends, golds, mode):
        return "range"
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
