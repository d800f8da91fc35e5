"""Rule-based verifiers: one function per kind of answer, shared by the GRPO rewards and the evaluation metrics
[P §3.2.1, spec §2]. ``loongrl.train.rewards`` maps each ``data_source`` to one of them.

* Long QA and KeyChain: the last ``\\boxed{...}`` (brace-matched) after the final ``</think>``, matched against any
  gold answer under ``RewardRules.match`` (``loongrl.answers.answer_match``): ``words`` by default (a contiguous run
  of words either way), or the paper's character-level two-way rule ``chars`` [P Eq. 3], or the official reward code's
  one-way ``gold_in_pred``. An empty prediction scores 0 (the empty string is inside everything). With
  ``reject_hedges`` (default) a hedge scores 0: several candidates of which the gold is one, both yes and no, or
  only function words (``loongrl.answers.hedge``).
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

from loongrl.answers import answer_match, canonical, extract_answer_is, fragment, hedge, normalize_answer

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


@dataclass(frozen=True)
class RewardRules:
    """What a QA answer must satisfy (config ``train.reward``): the match rule, hedge rejection, official guards."""

    match: str = "words"
    reject_hedges: bool = True
    guards: Guards = NO_GUARDS
    answer_format: str = "boxed"  # ANSWER_FORMATS: where the answer is read from

    def __post_init__(self):
        if self.match not in ("words", "chars", "gold_in_pred"):
            raise ValueError(f"train.reward.match: {self.match!r} is not one of words, chars, gold_in_pred")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"train.reward.answer_format: {self.answer_format!r} is not one of {ANSWER_FORMATS}")

    @classmethod
    def from_config(cls, reward: dict) -> RewardRules:
        return cls(
            match=reward["match"],
            reject_hedges=reward["reject_hedges"],
            guards=Guards(enabled=reward["guards"]),
            answer_format=reward.get("answer_format", "boxed"),
        )


# Where a completion's answer is read [config train.reward.answer_format]: "boxed" is the paper's format (the last
# \boxed{} after the final </think>); "stated" is for models that do not box (SmolLM2-135M writes a box in 2 of 72
# samples, benchmarks/learning.py): the last box if any, else the text after "the answer is", else the whole
# reply after any </think>. The same hedge rules, guards and hack monitor apply to either.
ANSWER_FORMATS = ("boxed", "stated")
DEFAULT_RULES = RewardRules()
# The paper's verifier as printed (two-way character substring match, nothing rejected), and the strict rule the
# training monitor checks rewarded answers against.
PAPER_RULES = RewardRules(match="chars", reject_hedges=False)
STRICT_RULES = RewardRules(match="words", reject_hedges=True)


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


def stated_answer(text: str) -> str:
    """The answer a reply states without the paper's format: the last box, else the text after the first "the
    answer is" (the official filter prompt's form), else the whole reply (stripped)."""
    spans = boxed_spans(text)
    if spans:
        return spans[-1][2]
    stated = extract_answer_is(text)
    return stated if stated is not None else text.strip()


def extract_answer(completion: str, answer_format: str = "boxed") -> str | None:
    """The answer of a completion in ``answer_format`` (``ANSWER_FORMATS``), or None when it gives none."""
    if answer_format == "boxed":
        return extract_boxed(completion)
    return stated_answer(answer_region(completion))


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


def qa_verdict(completion: str, golds: Sequence[str], rules: RewardRules = DEFAULT_RULES) -> tuple[float, str | None]:
    """(reward, why it is 0): ``no_box``, ``empty``, ``guard``, a hedge kind (``loongrl.answers.HEDGE_KINDS``) or
    ``no_match``; the reason is None when the answer is rewarded. The hack monitor counts the hedge kinds."""
    pred = extract_answer(completion, rules.answer_format)
    if pred is None:
        return 0.0, "no_box"
    pred = canonical(pred.replace("*", ""))
    if not normalize_answer(pred):
        return 0.0, "empty"
    if _guard_fail(completion, pred, golds, rules.guards):
        return 0.0, "guard"
    return answer_verdict(pred, golds, rules)


def qa_reward(completion: str, golds: Sequence[str], rules: RewardRules = DEFAULT_RULES) -> float:
    """1 when the last box's answer matches a gold answer under ``rules`` and is not a hedge; else 0."""
    return qa_verdict(completion, golds, rules)[0]


def answer_verdict(pred: str, golds: Sequence[str], rules: RewardRules = DEFAULT_RULES) -> tuple[float, str | None]:
    pred = canonical(pred)
    golds = [canonical(g) for g in golds]
    if rules.reject_hedges:
        kind = hedge(pred, golds, rules.match)
        if kind:
            return 0.0, kind
    if answer_match(pred, golds, rules.match):
        return 1.0, None
    return 0.0, "no_match"


def answer_score(pred: str, golds: Sequence[str], rules: RewardRules = DEFAULT_RULES) -> float:
    """The match-and-hedge part of ``qa_reward`` on an already extracted answer (also the eval's word-EM, so
    training and evaluation read answers alike: ``canonical`` first, then SQuAD normalisation)."""
    return answer_verdict(pred, golds, rules)[0]


SUSPECT_METRIC = "reward/suspect_frac"  # the training monitor's per-step metrics (MLflow, metrics.jsonl)
REWARDED_METRIC = "reward/qa_rewarded"
HEDGE_METRIC = "reward/hedge/{}"  # per step: QA completions the hedge rules scored 0, by kind (summed over ranks)


def suspect(completion: str, golds: Sequence[str], reward: float, answer_format: str = "boxed") -> bool:
    """A rewarded answer that looks gamed: the strict rule rejects it, or it is a fragment of the gold.

    The share of these among rewarded completions is the training monitor's ``reward/suspect_frac``: a rising line
    is the first sign of reward hacking. Fragments (``Obama`` for Barack Obama) keep their reward under every rule
    but are counted here, as are two-item comma answers whose gold is one item (``Paris, London``). The answer is
    read in the training rules' ``answer_format``.
    """
    if reward <= 0:
        return False
    pred = (extract_answer(completion, answer_format) or "").replace("*", "")
    strict = RewardRules(match=STRICT_RULES.match, reject_hedges=True, answer_format=answer_format)
    if qa_reward(completion, golds, strict) == 0 or fragment(pred, golds):
        return True
    items = [x for x in pred.split(",") if x.strip()]
    return len(items) == 2 and sum(answer_match(x, golds) for x in items) == 1


def retrieval_reward(
    completion: str,
    values: Sequence[str],
    *,
    require_all: bool,
    guards: Guards = NO_GUARDS,
    answer_format: str = "boxed",
) -> float:
    """Multi-value: every value must appear in the answer; multi-key: the single value."""
    if guards.enabled and len(boxed_spans(answer_region(completion))) > guards.max_boxes:
        return 0.0
    return retrieval_score(extract_answer(completion, answer_format), values, require_all=require_all)


def retrieval_score(pred: str | None, values: Sequence[str], *, require_all: bool) -> float:
    """``retrieval_reward`` on an already extracted answer (the eval's held-out retrieval reads it so too)."""
    if pred is None or not pred.strip():
        return 0.0
    found = [re.search(rf"(?<!\d){re.escape(v)}(?!\d)", pred) is not None for v in values]
    if require_all:
        return float(all(found))
    # multi-key asks for one value; listing extra numbers is a hedge, not an answer. Numbers are whole tokens: the
    # digits inside a UUID key restated with the answer ("for 3416c670-c656-... is 1099336") are not candidates
    return float(bool(found) and found[0] and len(set(whole_numbers(pred))) == 1)


def whole_numbers(text: str) -> list[str]:
    """The numbers of an answer as the retrieval verifier reads them: whole tokens, so the digit runs inside a UUID
    key ("3416c670-c656-...") are not numbers."""
    return re.findall(r"(?<![\w-])\d+(?![\w-])", text)


def choice_reward(completion: str, gold_letter: str) -> float:
    """The option letter in the box: ``B``, ``(B)``, ``B)`` or ``B. text``; listing several options scores 0."""
    return choice_score(extract_boxed(completion), gold_letter)


def choice_score(pred: str | None, gold_letter: str) -> float:
    """``choice_reward`` on an already extracted answer (the eval reads it as the model's kind asks)."""
    if pred is None:
        return 0.0
    letters = re.findall(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z])", pred.strip())
    m = _LETTER.match(pred.strip())
    if m is None or len(set(letters)) > 1:
        return 0.0
    return float(m.group(1).upper() == gold_letter.strip().upper())


def math_reward(completion: str, gold: str) -> float:
    """Equivalence of the boxed answer and the gold through math-verify (LaTeX and plain expressions)."""
    return math_score(extract_boxed(completion), gold)


def math_score(pred: str | None, gold: str) -> float:
    """``math_reward`` on an already extracted answer."""
    from math_verify import parse, verify

    if pred is None or not pred.strip():
        return 0.0
    gold_parsed = parse(f"\\boxed{{{gold}}}")
    pred_parsed = parse(f"\\boxed{{{pred}}}")
    if not gold_parsed or not pred_parsed:
        return 0.0
    return float(verify(gold_parsed, pred_parsed))
