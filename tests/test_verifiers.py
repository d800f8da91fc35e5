"""Verifiers, including an audit of adversarial completions (reward hacking seen with substring rewards)."""

from __future__ import annotations

import pytest
from loongrl.train.rewards import make_reward_fn, score
from loongrl.verifiers import (
    Guards,
    boxed_spans,
    choice_reward,
    extract_boxed,
    math_reward,
    qa_reward,
    retrieval_reward,
)

GOLD = ["Ed Wood"]
ON = Guards(enabled=True)


def test_brace_matched_last_box_after_think():
    c = r"<think>maybe \boxed{Tim Burton}</think> so \boxed{\text{Ed {Wood}}}"
    assert extract_boxed(c) == r"\text{Ed {Wood}}"
    assert boxed_spans(r"\boxed{a} \boxed{b") == [(0, 9, "a")]  # unterminated box ignored
    assert extract_boxed("<think>\\boxed{x}</think> no box") is None


def test_qa_two_way_substring():
    assert qa_reward(r"</think> \boxed{Ed Wood}", GOLD) == 1.0
    assert qa_reward(r"</think> \boxed{the director Ed Wood.}", GOLD) == 1.0  # gold inside prediction
    assert qa_reward(r"</think> \boxed{Wood}", GOLD) == 1.0  # prediction inside gold
    assert qa_reward(r"</think> \boxed{Tim Burton}", GOLD) == 0.0
    assert qa_reward(r"\boxed{**Ed Wood**}", GOLD) == 1.0


# (name, completion, reward with guards off, reward with guards on)
AUDIT = [
    ("empty box", r"<think>hmm</think> \boxed{}", 0.0, 0.0),
    ("whitespace box", r"</think> \boxed{  }", 0.0, 0.0),
    ("punctuation box", r"</think> \boxed{ the . }", 0.0, 0.0),
    ("no box", "</think> The answer is Ed Wood", 0.0, 0.0),
    ("answer only in thinking", r"<think>\boxed{Ed Wood}</think> I am not sure", 0.0, 0.0),
    ("two boxes", r"</think> \boxed{Tim Burton} or \boxed{Ed Wood}", 1.0, 0.0),
    (
        "gold plus five candidates",
        r"</think> \boxed{Tim Burton, Ed Wood, Bela Lugosi, Orson Welles, Roger Corman, John Waters}",
        1.0,
        1.0,
    ),
    ("overlong answer", r"</think> \boxed{Ed Wood" + ", and also" * 20 + "}", 1.0, 0.0),
    ("essay after the box", r"</think> \boxed{Ed Wood} " + "Let me explain at length why. " * 5, 1.0, 0.0),
]


@pytest.mark.parametrize(("name", "completion", "off", "on"), AUDIT, ids=[a[0] for a in AUDIT])
def test_adversarial_qa_audit(name, completion, off, on):
    assert qa_reward(completion, GOLD) == off, name
    assert qa_reward(completion, GOLD, ON) == on, name


def test_gold_plus_candidates_caught_by_length_guard_when_long():
    many = ", ".join(["Tim Burton", "Ed Wood", "Bela Lugosi", "Orson Welles", "Roger Corman"] * 4)
    assert qa_reward(rf"</think> \boxed{{{many}}}", GOLD) == 1.0
    assert qa_reward(rf"</think> \boxed{{{many}}}", GOLD, ON) == 0.0


def test_choice_reward():
    assert choice_reward(r"</think> \boxed{B}", "B") == 1.0
    assert choice_reward(r"</think> \boxed{(B) 27.675}", "B") == 1.0
    assert choice_reward(r"</think> \boxed{b}", "B") == 1.0
    assert choice_reward(r"</think> \boxed{C}", "B") == 0.0
    assert choice_reward(r"</think> \boxed{A, B, C, D, E}", "B") == 0.0  # every option listed
    assert choice_reward(r"</think> \boxed{(A) or (B)}", "B") == 0.0
    assert choice_reward("</think> B", "B") == 0.0


def test_retrieval_reward():
    vals = ["1234567", "7654321"]
    assert retrieval_reward(r"\boxed{1234567, 7654321}", vals, require_all=True) == 1.0
    assert retrieval_reward(r"\boxed{1234567}", vals, require_all=True) == 0.0
    assert retrieval_reward(r"\boxed{1234567}", ["1234567"], require_all=False) == 1.0
    assert retrieval_reward(r"\boxed{12345678}", ["1234567"], require_all=False) == 0.0  # not a digit-substring
    assert retrieval_reward(r"\boxed{1234567, 7654321, 1111111}", ["1234567"], require_all=False) == 0.0


def test_math_reward_uses_math_verify():
    assert math_reward(r"</think> \boxed{\frac{1}{2}}", "0.5") == 1.0
    assert math_reward(r"</think> \boxed{\dfrac{3}{6}}", r"\frac{1}{2}") == 1.0
    assert math_reward(r"</think> \boxed{3}", "4") == 0.0
    assert math_reward(r"</think> \boxed{}", "4") == 0.0


def test_dispatch_and_trl_callable():
    fn = make_reward_fn()
    rewards = fn(
        completions=[[{"role": "assistant", "content": r"</think>\boxed{Ed Wood}"}], r"\boxed{A}", r"\boxed{5}"],
        data_source=["keychain_hotpotqa", "math_choice", "dapo_math"],
        answers=[["Ed Wood"], ["B"], ["5"]],
    )
    assert rewards == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="no verifier"):
        score("unknown", "x", ["y"])
