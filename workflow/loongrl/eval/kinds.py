"""How a model is evaluated: its kind decides the prompt, the decoding and how its completion is read.

The paper evaluates two kinds of model differently [P §4.1; spec §4], and every baseline row of its tables was run
as its kind asks:

* ``reasoning`` (LoongRL and the long-CoT baselines): the LoongRL system prompt, T=0.6 x 8 samples (pass@1 averaged),
  the answer read after ``</think>``; a completion that never closes its reasoning has *no answer* (a capped trace
  that quotes the needle must not score on substring metrics), and the share of those is reported beside the
  cap-hit share. RULER without its answer prefix (up to 8,192 tokens).
* ``instruct`` (Qwen2.5-Instruct and other non-reasoning models): no LoongRL system prompt, T=0 with one sample,
  RULER with the official completion suffix as an assistant prefill (``answer_prefix`` in RULER's
  ``scripts/eval/synthetic/constants.py``) and its per-task generation caps, LongBench v2 in the official CoT
  setting, and the whole completion read; its stated answer is the last box, else the text after the last "the
  answer is" (the format of the official filter prompt this kind gets on LongBench v1), else the whole completion
  (flagged ``fallback``: LongBench v1 never scores it, and reports its share).

LongBench v1's headline reads every kind the authors' way (``authors_answer``), whatever the kind: the last box
anywhere in the lower-cased completion, else the text after the last "the answer is"; a missing ``</think>`` does
not void the answer there [KC ``filter_again/judge_utils.py`` ``boxed_exact_match_judge``].

Which kind a model is comes from ``eval.kinds`` (label -> kind), ``eval.default_kind`` for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loongrl.answers import extract_answer_is
from loongrl.verifiers import THINK_END, answer_region, boxed_spans, extract_boxed


@dataclass(frozen=True)
class ModelKind:
    name: str
    system: bool  # the eval system prompt (eval.system_prompt) is sent
    greedy: bool  # T=0 and one sample; eval.decoding's n / temperature otherwise
    answer_prefix: bool  # RULER's completion suffix as an assistant prefill, with RULER's per-task caps
    think: bool  # the answer is the text after the final </think>; none without one
    explicit_cot: bool  # LongBench v2's official CoT setting; LongBench v1 with the "think step by step" prompt


KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in (
        ModelKind("reasoning", system=True, greedy=False, answer_prefix=False, think=True, explicit_cot=False),
        ModelKind("instruct", system=False, greedy=True, answer_prefix=True, think=False, explicit_cot=True),
    )
}


@dataclass(frozen=True)
class Reading:
    """A completion as its kind reads it: the scored region and the answer it states (None: it states none)."""

    region: str
    stated: str | None
    no_think: bool  # reasoning kind: the completion never wrote </think>, so it has no answer
    text: str = ""  # the whole completion (the authors' LongBench reading ignores </think>)
    fallback: bool = False  # instruct kind: nothing stated, ``stated`` is the whole reply


def read_completion(text: str, kind: ModelKind) -> Reading:
    if kind.think:
        if THINK_END not in text:
            return Reading("", None, True, text)
        return Reading(answer_region(text), extract_boxed(text), False, text)
    spans = boxed_spans(text)
    if spans:
        return Reading(text, spans[-1][2], False, text)
    stated = extract_answer_is(text, last=True)
    return Reading(text, text.strip() if stated is None else stated, False, text, fallback=stated is None)


# ------------------------------------------------------------------------ the authors' LongBench v1 reading
def _authors_last_box(low: str) -> str | None:
    """``last_boxed_only_string`` + ``remove_boxed`` of KC ``filter_again/judge_utils.py`` (~57-99), quirks kept so
    the scores equal theirs: a ``\\boxed `` (with a space) anywhere wins, read up to the next ``$``; else the last
    ``\\boxed`` (or, without one, ``\\fbox``) brace-matched, its first 7 characters and last one dropped (for
    ``\\fbox{`` that drops the answer's first character); an unclosed box is no box."""
    if "\\boxed " in low:
        return low.split("\\boxed ")[-1].split("$")[0]
    idx = low.rfind("\\boxed")
    if idx < 0:
        idx = low.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(low)):
        if low[i] == "{":
            depth += 1
        elif low[i] == "}":
            depth -= 1
            if depth == 0:
                return low[idx : i + 1][len("\\boxed{") : -1]
    return None


def authors_answer(text: str) -> tuple[str | None, str]:
    """(answer, how) as the authors' LongBench v1 judge reads a completion [KC ``judge_utils.py``
    ``boxed_exact_match_judge`` ~102-133]: lower-case it and drop literal empty boxes; the last box (read in
    the text with its ``*``), else the text after the last "the answer is" with ``*`` removed and the ends
    stripped of spaces and full stops; ``how`` is ``boxed``, ``answer_is`` or ``none`` (answer None)."""
    low = text.lower().replace("\\boxed{}", "")
    box = _authors_last_box(low)
    if box is not None:
        return box, "boxed"
    plain = low.replace("*", "")
    if "the answer is" in plain:
        return plain.rsplit("the answer is", 1)[-1].strip().strip(".").strip(), "answer_is"
    return None, "none"


def kind_decoding(dec: dict[str, Any], kind: ModelKind) -> dict[str, Any]:
    """``eval.decoding`` as a kind runs it: greedy kinds at T=0 with one sample."""
    return {**dec, "greedy": kind.greedy}


def model_kind(ev: dict[str, Any], model: str) -> ModelKind:
    """The kind of an eval model label (``eval.kinds``, else ``eval.default_kind``)."""
    return KINDS[(ev.get("kinds") or {}).get(model, ev.get("default_kind", "reasoning"))]


def kinds_in_use(ev: dict[str, Any]) -> list[str]:
    """The kinds of every model the matrix evaluates, in KINDS order (only these get task files)."""
    labels = [*ev["models"], *(ev.get("extra_models") or {})]
    used = {model_kind(ev, m).name for m in labels}
    return [k for k in KINDS if k in used]
