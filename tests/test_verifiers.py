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
    # second pass [issue 20]: joiners, negations, ranges (gamed); LaTeX wrappers, Unicode variants and look-alike
    # golds (legitimate)
    ("and-joined names", "Gore Vidal and Norman Mailer", ["Norman Mailer"], 0, 0, 0),
    ("and-joined, gold first", "Norman Mailer and Gore Vidal", ["Norman Mailer"], 0, 0, 0),
    ("and-list of three", "Oslo and Bergen and Tromso", ["Bergen"], 0, 0, 0),
    ("ampersand list", "Oslo & Bergen", ["Oslo"], 0, 0, 0),
    ("escaped ampersand list", r"Oslo \& Bergen", ["Oslo"], 0, 0, 0),
    ("plus list", "Oslo + Bergen", ["Oslo"], 0, 0, 0),
    ("line-break list", "Oslo\nBergen", ["Oslo"], 0, 0, 0),
    ("line-break list of names", "Tim Burton\nEd Wood\nOrson Welles", ["Ed Wood"], 0, 0, 0),
    ("negation", "not Berlin", ["Berlin"], 0, 0, 0),
    ("negated sentence", "It is not Berlin", ["Berlin"], 0, 0, 0),
    ("never", "never Berlin", ["Berlin"], 0, 0, 0),
    ("isn't", "isn't Berlin", ["Berlin"], 0, 0, 0),
    ("no X", "no goals", ["goals"], 0, 0, 0),
    ("range from-to", "from 1990 to 1995", ["1995"], 0, 0, 0),
    ("range between-and", "between 1990 and 1995", ["1995"], 0, 0, 0),
    ("numeric hyphen range", "1990-1995", ["1995"], 0, 0, 0),
    ("numeric en-dash range", "1990–1995", ["1995"], 0, 0, 0),
    ("number to number", "1990 to 1995", ["1995"], 0, 0, 0),
    ("range around the gold", "from 1990 to 1999", ["1995"], 0, 0, 0),
    ("word range with the gold", "from Oslo to Bergen", ["Bergen"], 0, 0, 0),
    ("text wrapper", r"\text{Berlin}", ["Berlin"], 1, 1, 1),
    ("textbf wrapper", r"\textbf{Berlin}", ["Berlin"], 1, 1, 1),
    ("textit wrapper", r"\textit{Ed Wood}", ["Ed Wood"], 1, 1, 1),
    ("mathrm wrapper", r"\mathrm{Berlin}", ["Berlin"], 1, 1, 1),
    ("mbox wrapper", r"\mbox{Ed Wood}", ["Ed Wood"], 1, 1, 1),
    ("nested wrappers", r"\textbf{\text{Berlin}}", ["Berlin"], 1, 1, 1),
    ("dollar math", r"$1995$", ["1995"], 1, 1, 1),
    ("dollar text", r"$\text{Berlin}$", ["Berlin"], 1, 1, 1),
    ("full-width digits", "１９９５", ["1995"], 1, 1, 1),
    ("full-width letters", "Ｂｅｒｌｉｎ", ["Berlin"], 1, 1, 1),
    ("non-breaking space", "Ed\u00a0Wood", ["Ed Wood"], 1, 1, 1),
    ("gold with and", "Tom and Jerry", ["Tom and Jerry"], 1, 1, 1),
    ("gold with ampersand, answer with and", "Simon and Garfunkel", ["Simon & Garfunkel"], 1, 1, 1),
    ("gold with and, answer with ampersand", "Simon & Garfunkel", ["Simon and Garfunkel"], 1, 1, 1),
    ("gold with not", "Not Fade Away", ["Not Fade Away"], 1, 1, 1),
    ("gold with a hyphen", "Jean-Paul Sartre", ["Jean-Paul Sartre"], 1, 1, 1),
    ("gold is a range", "1939–1945", ["1939–1945"], 1, 1, 1),
    ("gold range, hyphen answer", "1939-1945", ["1939–1945"], 1, 1, 1),
    ("negation after the answer", "Berlin, not Paris", ["Berlin"], 1, 1, 1),
    ("gold with plus", "Google+", ["Google+"], 1, 1, 1),
    # issue 30's two holes: a second candidate in parentheses or after "vs."; invisible characters
    ("second candidate in parentheses", "Paris (Lyon)", ["Paris"], 0, 0, 0),
    ("gold in parentheses", "Lyon (Paris)", ["Paris"], 0, 0, 0),
    ("vs. pair", "Paris vs. Lyon", ["Paris"], 0, 0, 0),
    ("versus pair", "Lyon versus Paris", ["Paris"], 0, 0, 0),
    ("year-and-kind qualifier", "Titanic (1997 film)", ["Titanic"], 1, 1, 1),
    ("kind qualifier", "Georgia (country)", ["Georgia"], 1, 1, 1),
    ("birth-year qualifier", "Ed Wood (born 1924)", ["Ed Wood"], 1, 1, 1),
    ("gold with its own parenthesis", "Titanic (1997 film)", ["Titanic (1997 film)"], 1, 1, 1),
    ("gold with vs.", "Kramer vs. Kramer", ["Kramer vs. Kramer"], 1, 1, 1),
    ("zero-width space", "Ber\u200blin", ["Berlin"], 1, 1, 1),
    ("soft hyphen", "Ber\u00adlin", ["Berlin"], 1, 1, 1),
    ("word joiner", "Ed Wo\u2060od", ["Ed Wood"], 1, 1, 1),
    ("zero-width space in the gold", "Berlin", ["Ber\u200blin"], 1, 1, 1),
]


@pytest.mark.parametrize("mode", ["words", "chars", "gold_in_pred"])
@pytest.mark.parametrize(
    ("name", "answer", "golds", "words", "chars", "gold_in_pred"), HEDGE_AUDIT, ids=[a[0] for a in HEDGE_AUDIT]
)
def test_reward_hacking_audit(mode, name, answer, golds, words, chars, gold_in_pred):
    expected = {"words": words, "chars": chars, "gold_in_pred": gold_in_pred}[mode]
    completion = rf"<think>reasoning</think> The answer is \boxed{{{answer}}}"
    assert qa_reward(completion, golds, RewardRules(match=mode)) == expected, (mode, name)


def test_second_pass_examples_under_the_default_rules():
    """The issue's examples under the project's default rules (match words, hedges rejected, no guards)."""
    zero = [
        (r"\boxed{Gore Vidal and Norman Mailer}", "Norman Mailer"),
        (r"\boxed{Oslo & Bergen}", "Oslo"),
        ("\\boxed{Oslo\nBergen}", "Oslo"),
        (r"\boxed{not Berlin}", "Berlin"),
        (r"\boxed{from 1990 to 1995}", "1995"),
    ]
    one = [
        (r"\boxed{\text{Berlin}}", "Berlin"),
        (r"\boxed{\textbf{Berlin}}", "Berlin"),
        (r"\boxed{\mathrm{Berlin}}", "Berlin"),
        ("\\boxed{１９９５}", "1995"),
        ("\\boxed{Ed\u00a0Wood}", "Ed Wood"),
    ]
    for box, gold in zero:
        assert qa_reward(f"</think>{box}", [gold]) == 0.0, box
    for box, gold in one:
        assert qa_reward(f"</think>{box}", [gold]) == 1.0, box
    # the eval's word-EM reads answers the same way
    from loongrl.eval.metrics import word_em

    assert word_em(r"\text{Berlin}", ["Berlin"]) == 1.0 and word_em("not Berlin", ["Berlin"]) == 0.0
    assert len(HEDGE_AUDIT) + len(AUDIT) >= 54 + 30  # 54 cases (45 + 9) before the second pass, 94 after


def test_monitor_counts_hedges_by_kind():
    from loongrl.train.rewards import monitor_metrics

    monitor = HackMonitor()
    fns = make_reward_fns(RewardRules(), monitor)
    completions = [r"\boxed{not Berlin}", r"\boxed{from 1990 to 1995}", r"\boxed{Oslo and Bergen}", r"\boxed{Berlin}"]
    kw = {"data_source": ["plain_qa_hotpotqa"] * 4, "answers": [["Berlin"], ["1995"], ["Oslo"], ["Berlin"]]}
    [fn(completions=completions, **kw) for fn in fns]
    row = monitor_metrics(monitor.pop_counts())
    assert row["reward/hedge/negation"] == 1 and row["reward/hedge/range"] == 1
    assert row["reward/hedge/candidates"] == 1 and row["reward/qa_rewarded"] == 1
    assert row["reward/suspect_frac"] == 0.0
    assert monitor_metrics(monitor.pop_counts())["reward/hedge/negation"] == 0  # emptied at every log


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


STATED = RewardRules(answer_format="stated")


@pytest.mark.parametrize(
    ("completion", "golds", "reward"),
    [
        ("The answer is Ed Wood.", ["Ed Wood"], 1.0),  # the filter prompt's form
        ("Ed Wood", ["Ed Wood"], 1.0),  # the whole reply
        ("Ed Wood directed it, \\boxed{Tim Burton}", ["Ed Wood"], 0.0),  # a box, when written, is the answer
        ("<think>Ed Wood?</think> Tim Burton", ["Ed Wood"], 0.0),  # the reasoning is never read
        ("The answer is Tim Burton and Ed Wood", ["Ed Wood"], 0.0),  # the hedge rules apply unchanged
        ("It is not Berlin", ["Berlin"], 0.0),
        ("The answer is \\text{Berlin}", ["Berlin"], 1.0),
        ("", ["Ed Wood"], 0.0),
    ],
)
def test_stated_answer_format(completion, golds, reward):
    assert qa_reward(completion, golds, STATED) == reward
    assert qa_reward(completion, golds) == (1.0 if "\\boxed{Ed" in completion else 0.0)  # boxed: no box, no answer


def test_stated_format_for_retrieval_and_the_monitor():
    text = "The special magic number for 3416c670-c656-40ff-9a5e-1c2d mentioned in the provided text is 1099336."
    assert retrieval_reward(text, ["1099336"], require_all=False, answer_format="stated") == 1.0
    assert retrieval_reward(text, ["1099336"], require_all=False) == 0.0  # boxed: nothing boxed
    both = "It is 1099336 or 7654321."
    assert retrieval_reward(both, ["1099336"], require_all=False, answer_format="stated") == 0.0
    monitor = HackMonitor(STATED)
    fns = make_reward_fns(STATED, monitor)
    kw = {"data_source": ["plain_qa_hotpotqa"] * 2, "answers": [["Berlin"], ["Berlin"]]}
    [fn(completions=["The answer is Berlin", "not Berlin"], **kw) for fn in fns]
    suspect_n, rewarded, *hedges = monitor.pop_counts()
    assert (suspect_n, rewarded) == (0, 1) and sum(hedges) == 1
