"""Verifiers, including an audit of adversarial completions (reward hacking seen with substring rewards)."""

from __future__ import annotations

import pytest
from loongrl.train.rewards import HackMonitor, make_reward_fn, make_reward_fns, score
from loongrl.verifiers import (
    PAPER_RULES,
    Guards,
    RewardRules,
    boxed_spans,
    choice_reward,
    extract_boxed,
    math_reward,
    qa_reward,
    retrieval_reward,
    suspect,
)

GOLD = ["Ed Wood"]
ON = RewardRules(match="chars", reject_hedges=False, guards=Guards(enabled=True))


def test_brace_matched_last_box_after_think():
    c = r"<think>maybe \boxed{Tim Burton}</think> so \boxed{\text{Ed {Wood}}}"
    assert extract_boxed(c) == r"\text{Ed {Wood}}"
    assert boxed_spans(r"\boxed{a} \boxed{b") == [(0, 9, "a")]  # unterminated box ignored
    assert extract_boxed("<think>\\boxed{x}</think> no box") is None


def test_qa_two_way_substring():
    for rules in (PAPER_RULES, RewardRules()):
        assert qa_reward(r"</think> \boxed{Ed Wood}", GOLD, rules) == 1.0
        assert qa_reward(r"</think> \boxed{the director Ed Wood.}", GOLD, rules) == 1.0  # gold inside prediction
        assert qa_reward(r"</think> \boxed{Wood}", GOLD, rules) == 1.0  # prediction inside gold
        assert qa_reward(r"</think> \boxed{Tim Burton}", GOLD, rules) == 0.0
        assert qa_reward(r"\boxed{**Ed Wood**}", GOLD, rules) == 1.0


# The reward-hacking audit [issue 10]: (name, boxed answer, gold answers, reward under match=words | chars |
# gold_in_pred, each with hedge rejection on). Hedges, fragments, empty answers and listed candidates score 0 under
# the default (words); every legitimate paraphrase scores 1 there.
HEDGE_AUDIT = [
    # gamed answers
    ("single letter", "s", ["Jesus"], 0, 0, 0),  # "s" (a possessive) counts as a function word
    ("single letter b", "j", ["Jesus"], 0, 1, 0),
    ("single digit of a year", "1", ["1945"], 0, 1, 0),
    ("two digits of a year", "19", ["1945"], 0, 1, 0),
    ("function word of the gold", "of", ["University of Oxford"], 0, 0, 0),
    ("function words only", "in the", ["Battle in the Bay"], 0, 0, 0),
    ("yes or no", "yes or no", ["no"], 0, 0, 0),
    ("yes/no", "yes/no", ["yes"], 0, 0, 0),
    ("yes and no", "yes and no", ["no"], 0, 0, 0),
    ("listed capitals", "Paris, London, Berlin, Rome, Madrid", ["Berlin"], 0, 0, 0),
    ("three listed names", "Tim Burton, Ed Wood, Bela Lugosi", ["Ed Wood"], 0, 0, 0),
    ("or-list", "Tim Burton or Ed Wood", ["Ed Wood"], 0, 0, 0),
    ("semicolon list", "Tim Burton; Ed Wood", ["Ed Wood"], 0, 0, 0),
    ("slash list", "Ed Wood / Tim Burton", ["Ed Wood"], 0, 0, 0),
    ("pipe list", "Ed Wood | Orson Welles", ["Ed Wood"], 0, 0, 0),
    ("two years", "1944, 1945", ["1945"], 0, 0, 0),
    ("year range by or", "1944 or 1945 or 1946", ["1945"], 0, 0, 0),
    ("empty box", "", ["Ed Wood"], 0, 0, 0),
    ("whitespace box", "   ", ["Ed Wood"], 0, 0, 0),
    ("punctuation only", " . , ", ["Ed Wood"], 0, 0, 0),
    ("article only", "the", ["The Beatles"], 0, 0, 0),
    ("letter fragment of a word", "wo", ["Ed Wood"], 0, 1, 0),
    ("wrong answer", "Tim Burton", ["Ed Wood"], 0, 0, 0),
    ("wrong year", "1944", ["1945"], 0, 0, 0),
    ("yes for no", "yes", ["no"], 0, 0, 0),
    ("number inside another", "45", ["1945"], 0, 1, 0),
    # legitimate answers
    ("exact", "Ed Wood", ["Ed Wood"], 1, 1, 1),
    ("surname only", "Obama", ["Barack Obama"], 1, 1, 0),
    ("full name for surname", "Barack Obama", ["Obama"], 1, 1, 1),
    ("article added", "The Beatles", ["Beatles"], 1, 1, 1),
    ("article dropped", "Beatles", ["The Beatles"], 1, 1, 1),
    ("date for year", "September 2, 1945", ["1945"], 1, 1, 1),
    ("capitalised no", "No", ["no"], 1, 1, 1),
    ("thousands separator", "2,000", ["2000"], 1, 1, 1),
    ("trailing period", "Paris.", ["Paris"], 1, 1, 1),
    ("city with country", "Ozalj, Croatia", ["Ozalj"], 1, 1, 1),
    ("gold with a slash", "AC/DC", ["AC/DC"], 1, 1, 1),
    ("gold with or", "Trick or Treat", ["Trick or Treat"], 1, 1, 1),
    ("gold with commas", "Crosby, Stills, Nash", ["Crosby, Stills, Nash"], 1, 1, 1),
    ("alias list from the data", "JFK", ["John F. Kennedy", "JFK"], 1, 1, 1),
    ("longer phrase with gold", "the director Ed Wood", ["Ed Wood"], 1, 1, 1),
    ("yes for yes", "Yes", ["yes"], 1, 1, 1),
    ("markdown bold", "**Ed Wood**", ["Ed Wood"], 1, 1, 1),
    ("case and punctuation", "ed wood!", ["Ed Wood"], 1, 1, 1),
    ("number words kept", "3 million", ["3 million"], 1, 1, 1),
]


@pytest.mark.parametrize("mode", ["words", "chars", "gold_in_pred"])
@pytest.mark.parametrize(
    ("name", "answer", "golds", "words", "chars", "gold_in_pred"), HEDGE_AUDIT, ids=[a[0] for a in HEDGE_AUDIT]
)
def test_reward_hacking_audit(mode, name, answer, golds, words, chars, gold_in_pred):
    expected = {"words": words, "chars": chars, "gold_in_pred": gold_in_pred}[mode]
    completion = rf"<think>reasoning</think> The answer is \boxed{{{answer}}}"
    assert qa_reward(completion, golds, RewardRules(match=mode)) == expected, (mode, name)


def test_hedges_kept_when_rejection_is_off():
    """The paper's rule as printed (chars, no hedge rejection) rewards the table's gamed answers: why we changed it."""
    for answer, gold in (("s", "Jesus"), ("1", "1945"), ("of", "University of Oxford"), ("yes or no", "no")):
        assert qa_reward(rf"\boxed{{{answer}}}", [gold], PAPER_RULES) == 1.0, answer
    paris = r"\boxed{Paris, London, Berlin, Rome, Madrid}"
    assert qa_reward(paris, ["Berlin"], PAPER_RULES) == 1.0


def test_monitor_counts_suspect_rewarded_answers():
    assert suspect(r"\boxed{Obama}", ["Barack Obama"], 1.0)  # a fragment: rewarded, but suspect
    assert suspect(r"\boxed{s}", ["Jesus"], 1.0)  # the strict rule rejects it
    assert suspect(r"\boxed{Paris, London}", ["Paris"], 1.0)  # two items, one of them the gold
    assert not suspect(r"\boxed{Barack Obama}", ["Barack Obama"], 1.0)
    assert not suspect(r"\boxed{s}", ["Jesus"], 0.0)  # not rewarded: not counted
    monitor = HackMonitor()
    fns = make_reward_fns(PAPER_RULES, monitor)
    kw = {"data_source": ["keychain_hotpotqa"] * 3 + ["math_choice"], "answers": [["Jesus"], ["Ed Wood"], ["x"], ["B"]]}
    [fn(completions=[r"\boxed{s}", r"\boxed{Ed Wood}", r"\boxed{y}", r"\boxed{B}"], **kw) for fn in fns]
    assert monitor.pop() == (0.5, 2)  # 2 rewarded QA answers, 1 suspect; the math row is not monitored
    assert monitor.pop() == (None, 0)


# The official guards under the paper's rule: (name, completion, reward with guards off, reward with guards on)
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
    assert qa_reward(completion, GOLD, PAPER_RULES) == off, name
    assert qa_reward(completion, GOLD, ON) == on, name


def test_gold_plus_candidates_caught_by_length_guard_when_long():
    many = ", ".join(["Tim Burton", "Ed Wood", "Bela Lugosi", "Orson Welles", "Roger Corman"] * 4)
    assert qa_reward(rf"</think> \boxed{{{many}}}", GOLD, PAPER_RULES) == 1.0
    assert qa_reward(rf"</think> \boxed{{{many}}}", GOLD, ON) == 0.0
    assert qa_reward(rf"</think> \boxed{{{many}}}", GOLD) == 0.0  # the default rejects the list itself


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
    assert retrieval_reward(r"\boxed{1234567 or 7654321}", ["1234567"], require_all=False) == 0.0  # a hedge


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
