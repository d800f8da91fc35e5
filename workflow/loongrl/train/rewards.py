"""GRPO rewards: the one table that maps a mixture row's ``data_source`` to its verifier [P §3.2.1].

Each row of ``REWARDS`` is (data_source prefix, reward family, verifier). Adding a data source to the mixture means
adding one row here. TRL gets one reward function per family (``make_reward_fns``), so it logs
``rewards/reward_<family>/mean`` beside its KL, entropy and length metrics with no extra logging code. QA families
also feed a ``HackMonitor``: the share of rewarded answers that look gamed, logged per step as
``reward/suspect_frac``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from loongrl.answers import HEDGE_KINDS
from loongrl.verifiers import (
    DEFAULT_RULES,
    HEDGE_METRIC,
    REWARDED_METRIC,
    SUSPECT_METRIC,
    RewardRules,
    choice_score,
    extract_answer,
    math_score,
    qa_reward,
    qa_verdict,
    retrieval_reward,
    suspect,
)

Verifier = Callable[[str, Sequence[str], RewardRules], float]

REWARDS: tuple[tuple[str, str, Verifier], ...] = (
    ("keychain_", "keychain", qa_reward),
    ("plain_qa_", "plain_qa", qa_reward),
    (
        "retrieval_multivalue",
        "retrieval",
        lambda c, a, r: retrieval_reward(c, a, require_all=True, guards=r.guards, answer_format=r.answer_format),
    ),
    (
        "retrieval_multikey",
        "retrieval",
        lambda c, a, r: retrieval_reward(c, a, require_all=False, guards=r.guards, answer_format=r.answer_format),
    ),
    ("math_choice", "math_choice", lambda c, a, r: choice_score(extract_answer(c, r.answer_format), a[0])),
    ("dapo_math", "dapo_math", lambda c, a, r: math_score(extract_answer(c, r.answer_format), a[0])),
)
FAMILIES = tuple(dict.fromkeys(fam for _, fam, _ in REWARDS))
MONITORED = ("keychain", "plain_qa")  # free-text answers: the ones a substring rule can be gamed on


def _entry(data_source: str) -> tuple[str, str, Verifier]:
    for entry in REWARDS:
        if data_source.startswith(entry[0]):
            return entry
    raise ValueError(f"no verifier for data_source {data_source!r}")


def family(data_source: str) -> str:
    """The reward family of a data_source (``keychain_hotpotqa`` -> ``keychain``)."""
    return _entry(data_source)[1]


def score(data_source: str, completion: str, answers: Sequence[str], rules: RewardRules = DEFAULT_RULES) -> float:
    """The reward of one completion, by the verifier its ``data_source`` maps to."""
    return _entry(data_source)[2](completion, answers, rules)


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as a list of messages; plain ones as strings."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion)


class HackMonitor:
    """Counts, between two logged steps, rewarded QA completions, the suspect ones among them, and the QA
    completions the hedge rules rejected, by kind (``loongrl.answers.HEDGE_KINDS``): a rising kind shows which
    hedge the policy is trying."""

    def __init__(self, rules: RewardRules = DEFAULT_RULES) -> None:
        self.rules = rules
        self.rewarded = 0
        self.suspect = 0
        self.hedges = dict.fromkeys(HEDGE_KINDS, 0)

    def record(self, completion: str, answers: Sequence[str], reward: float) -> None:
        if reward > 0:
            self.rewarded += 1
            self.suspect += suspect(completion, answers, reward, self.rules.answer_format)
        else:
            why = qa_verdict(completion, answers, self.rules)[1]
            if why in self.hedges:
                self.hedges[why] += 1

    def pop_counts(self) -> tuple[int, ...]:
        """(suspect, rewarded, hedges by kind...) since the last pop, and reset (summed over ranks by the
        trainer's callback)."""
        out = (self.suspect, self.rewarded, *(self.hedges[k] for k in HEDGE_KINDS))
        self.rewarded = self.suspect = 0
        self.hedges = dict.fromkeys(HEDGE_KINDS, 0)
        return out

    def pop(self) -> tuple[float | None, int]:
        """(suspect share, rewarded count) since the last pop, and reset; the share is None when nothing was
        rewarded."""
        suspect_n, rewarded, *_ = self.pop_counts()
        return (suspect_n / rewarded if rewarded else None), rewarded


def monitor_metrics(counts: Sequence[int]) -> dict[str, float | int | None]:
    """A step's monitor row from (suspect, rewarded, hedges by kind...) counts summed over ranks."""
    suspect_n, rewarded, *hedges = counts
    row: dict[str, float | int | None] = {
        SUSPECT_METRIC: suspect_n / rewarded if rewarded else None,
        REWARDED_METRIC: rewarded,
    }
    row.update({HEDGE_METRIC.format(k): n for k, n in zip(HEDGE_KINDS, hedges, strict=True)})
    return row


def make_reward_fn(rules: RewardRules = DEFAULT_RULES):
    """A TRL ``reward_funcs`` callable: columns ``data_source`` and ``answers`` arrive as keyword lists."""

    def loongrl_reward(completions, data_source, answers, **_: Any) -> list[float]:
        return [
            score(src, completion_text(c), list(ans), rules)
            for c, src, ans in zip(completions, data_source, answers, strict=True)
        ]

    return loongrl_reward


def make_reward_fns(rules: RewardRules = DEFAULT_RULES, monitor: HackMonitor | None = None) -> list:
    """One TRL reward function per family, each returning None for other families' rows.

    TRL sums the functions' rewards (ignoring None) and logs each function's mean and std under
    ``rewards/<name>/...``, which gives the per-data_source reward curves without extra logging code.
    """
    fns = []
    for fam in FAMILIES:

        def reward(completions, data_source, answers, _fam=fam, **_: Any) -> list[float | None]:
            out: list[float | None] = []
            for c, src, ans in zip(completions, data_source, answers, strict=True):
                if family(src) != _fam:
                    out.append(None)
                    continue
                text, golds = completion_text(c), list(ans)
                value = score(src, text, golds, rules)
                if monitor is not None and _fam in MONITORED:
                    monitor.record(text, golds, value)
                out.append(value)
            return out

        reward.__name__ = f"reward_{fam}"
        fns.append(reward)
    return fns
