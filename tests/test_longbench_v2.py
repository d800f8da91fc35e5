"""LongBench v2 (the paper's Table 6): loader errors, the official prompts, the answer parser, Avg@n and every
breakdown against a hand-worked example, the CoT answer-extraction call, and Table 6 in the report.

The rows in data/samples/longbench_v2/data.json are written in the official format, not real (see its PROVENANCE).
"""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, SAMPLES
from loongrl.eval import evaluate, longbench_v2
from loongrl.eval.kinds import KINDS, model_kind
from loongrl.eval.metrics import extract_choice, score_one
from loongrl.eval.registry import BENCHMARKS, longbench_v2_decoding
from loongrl.inference import Completion, SamplingParams
from loongrl.io import DataError
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT
from loongrl.report.tables import T6_COLUMNS, table6

DATA = SAMPLES / "longbench_v2" / "data.json"


def test_loader_reads_the_official_format():
    rows = longbench_v2.load(DATA)
    assert len(rows) == 6 and {r["length"] for r in rows} == {"short", "medium"}
    assert {longbench_v2.TASK_TYPES[r["domain"]] for r in rows} == set(longbench_v2.TASK_TYPES.values())


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("answer", "E", "is not one of A, B, C, D"),
        ("choice_C", None, "missing"),
        ("difficulty", "medium", "is not one of"),
        ("length", "huge", "is not one of"),
        ("domain", "Poetry", "is not one of"),
        ("context", "  ", "empty"),
    ],
)
def test_loader_errors_name_file_row_and_field(tmp_path, field, value, problem):
    rows = json.loads(DATA.read_text())
    if value is None:
        del rows[2][field]
    else:
        rows[2][field] = value
    bad = tmp_path / "data.json"
    bad.write_text(json.dumps(rows))
    with pytest.raises(DataError) as err:
        longbench_v2.load(bad)
    msg = str(err.value)
    assert str(bad) in msg and f"row {rows[2]['_id']}" in msg and f"field '{field}'" in msg and problem in msg


def test_official_templates_and_truncation(qwen_tokenizer):
    rows = longbench_v2.load(DATA)
    out = longbench_v2.build(
        rows, qwen_tokenizer, bucket="short", max_input_tokens=4096, system=LOONGRL_SYSTEM_PROMPT, cot=False
    )
    assert [r["id"] for r in out] == [
        "longbench_v2-written-0001",
        "longbench_v2-written-0002",
        "longbench_v2-written-0003",
    ]
    user = out[0]["prompt"][-1]["content"]
    assert user.startswith("Please read the following text and answer the question below.\n\n<text>\nAnnual report")
    assert "\nChoices:\n(A) Basel\n(B) Strasbourg\n(C) Mainz\n(D) Cologne\n\n" in user
    assert user.endswith('Format your response as follows: "The correct answer is (insert answer here)".')
    assert out[0]["answers"] == ["B"] and out[0]["metric"] == "longbench_v2" and not out[0]["input_truncated"]
    assert json.loads(out[0]["meta"])["groups"] == {"difficulty": "easy", "length_bucket": "short"}
    cot = longbench_v2.build(rows, qwen_tokenizer, bucket="medium", max_input_tokens=4096, system=None, cot=True)
    assert cot[0]["prompt"][-1]["content"].endswith("Let’s think step by step:")
    follow = json.loads(cot[0]["meta"])["followup"]
    assert "The text is too long and omitted here." in follow and "Let’s think step by step: $COT$\n\n" in follow
    # over-long prompts keep the first and last halves of the budget (pred.py)
    cut = longbench_v2.build(rows, qwen_tokenizer, bucket="short", max_input_tokens=120, system=None, cot=False)
    assert all(r["input_truncated"] for r in cut)
    assert all(r["prompt"][-1]["content"].startswith("Please read") for r in cut)
    assert all(r["prompt"][-1]["content"].endswith('(insert answer here)".') for r in cut)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (C)**", "C"),
        ("The correct answer is D.", "D"),
        ("The correct answer is (B) Strasbourg, a city.", "B"),  # the choice text's capitals do not count
        ("<think>The correct answer is (A)? no...</think>The correct answer is (C)", "C"),
        ("<think>hmm</think> so \\boxed{B}", "B"),
        ("<think>hmm</think> \\boxed{(D) Cologne}", "D"),
        ("The correct answer is (A) or (B)", "A"),  # pred.py: the first match
        ("The correct answer is B. A cat sat on the mat.", "B"),  # not {B, A}
        ("The correct answer is (C). The correct answer is (D).", "C"),
        ("the correct answer is (B)", None),  # pred.py's pattern is case-sensitive
        ("\\boxed{A, C}", None),
        ("I cannot tell from the text.", None),
        ("<think>The correct answer is (A)</think> I am not sure.", None),  # reasoning is never scored
    ],
)
def test_answer_parser(text, letter):
    assert extract_choice(text) == letter


def test_accuracy_and_compensated():
    row = {"id": "x", "metric": "longbench_v2", "answers": ["B"], "meta": "{}"}
    assert score_one(row, "The correct answer is (B)", kind=KINDS["instruct"])[1] == {
        "accuracy": 1.0,
        "accuracy_compensated": 1.0,
    }
    assert score_one(row, "The correct answer is (A)", kind=KINDS["instruct"])[1] == {
        "accuracy": 0.0,
        "accuracy_compensated": 0.0,
    }
    assert score_one(row, "no idea", kind=KINDS["instruct"])[1] == {"accuracy": 0.0, "accuracy_compensated": 0.25}


class ScriptedBackend:
    """Replies from a script: CoT calls get the next reasoning text, answer calls the next stated answer."""

    def __init__(self, first, second):
        self.first, self.second, self.calls = first, second, []

    def generate_detailed(self, prompts, params, seeds=None):
        self.calls.append((prompts, params))
        script = self.first if len(self.calls) == 1 else self.second
        return [script[i] for i in range(len(prompts))]


def _task_rows(tokenizer, cot, system=None):
    rows = longbench_v2.load(DATA)
    out = []
    for bucket in ("short", "medium"):
        out += longbench_v2.build(rows, tokenizer, bucket=bucket, max_input_tokens=4096, system=system, cot=cot)
    return out


def test_avg_at_n_and_every_breakdown_by_hand(qwen_tokenizer):
    """Hand-worked: 6 rows x 2 samples. Gold: B C C | D B A (short rows 1-3, medium rows 4-6).

    Answers given:  row1 B,B (2/2)  row2 C,A (1/2)  row3 -,- (0/2)  row4 D,D (2/2)  row5 A,A (0/2)  row6 A,B (1/2)
    Avg@2 per row:  1, .5, 0, 1, 0, .5  -> overall 3/6 = .5
    easy = rows 1,3,6 -> (1 + 0 + .5)/3 = .5; hard = rows 2,4,5 -> (.5 + 1 + 0)/3 = .5
    short = rows 1-3 -> .5; medium = rows 4-6 -> .5
    task types: singledoc_qa 1, multidoc_qa .5, long_icl 0, long_dialogue 1, code 0, long_sdu .5
    """
    rows = _task_rows(qwen_tokenizer, cot=False)
    given = [["B", "B"], ["C", "A"], [None, None], ["D", "D"], ["A", "A"], ["A", "B"]]
    outs = [
        [Completion(f"<think>..</think>The correct answer is ({g})" if g else "unsure", 9, False) for g in r]
        for r in given
    ]
    samples = evaluate.evaluate(rows, ScriptedBackend(outs, []), SamplingParams(n=2))
    short = evaluate.summarize([x for x in samples if json.loads(x["meta"])["groups"]["length_bucket"] == "short"], {})
    medium = evaluate.summarize(
        [x for x in samples if json.loads(x["meta"])["groups"]["length_bucket"] == "medium"], {}
    )
    assert short["overall"]["score"] == pytest.approx(0.5) and medium["overall"]["score"] == pytest.approx(0.5)
    t6 = table6({"longbench_v2.short": short, "longbench_v2.medium": medium})
    expected = {
        "overall": 0.5, "easy": 0.5, "hard": 0.5, "short": 0.5, "medium": 0.5,
        "singledoc_qa": 1.0, "multidoc_qa": 0.5, "long_icl": 0.0, "long_dialogue": 1.0, "code": 0.0, "long_sdu": 0.5,
    }  # fmt: skip
    for col, value in expected.items():
        assert t6[col].score == pytest.approx(value), col
    assert t6["long"].score is None  # no long bucket in this config: "–" in the report
    assert list(t6) == T6_COLUMNS
    # compensated counts each unparsable sample (row 3, twice) as 0.25: (6 correct + 2 x 0.25) / 12 samples
    comp = [
        dict(x, score=next(s["value"] for s in x["scores"] if s["name"] == "accuracy_compensated")) for x in samples
    ]
    assert evaluate.summarize(comp, {})["overall"]["score"] == pytest.approx(6.5 / 12)


def test_cot_setting_makes_a_second_answer_call(qwen_tokenizer):
    rows = _task_rows(qwen_tokenizer, cot=True, system="a system prompt")[:2]  # rows 1 and 2 (gold B, C)
    assert rows[0]["prompt"][0]["role"] == "system"  # the CoT call has it; the answer call must not
    cot = [[Completion("The report says Strasbourg hosted it.", 8, False)], [Completion("Bridges...", 3, True)]]
    answers = [[Completion("The correct answer is (B)", 6, False)], [Completion("The correct answer is (A)", 6, False)]]
    backend = ScriptedBackend(cot, answers)
    params = SamplingParams(n=1, temperature=0.1, max_new_tokens=99, seed=3)
    samples = evaluate.evaluate(rows, backend, params, kind=KINDS["instruct"], followup_max_new_tokens=128)
    assert [s["score"] for s in samples] == [1.0, 0.0]
    second_prompts, second_params = backend.calls[1]
    assert "Let’s think step by step: The report says Strasbourg hosted it.\n\n" in second_prompts[0][-1]["content"]
    assert "<text>" not in second_prompts[0][-1]["content"]  # the answer call does not see the text again
    assert [[m["role"] for m in p] for p in second_prompts] == [["user"], ["user"]]  # pred.py: no system prompt
    assert second_params.max_new_tokens == 128 and second_params.temperature == 0.1
    assert samples[0]["completion"].endswith("[answer call]\nThe correct answer is (B)")
    assert samples[1]["hit_cap"] and samples[1]["completion_tokens"] == 3 + 6


def test_decoding_per_model_kind():
    import yaml

    ev = yaml.safe_load((ROOT / "config.yaml").read_text())["eval"]
    reasoning = longbench_v2_decoding(ev, model_kind(ev, "stage1"))
    assert (reasoning["n"], reasoning["temperature"], reasoning["greedy"]) == (5, 0.6, False)  # Avg@5 at T=0.6
    assert reasoning["followup_max_new_tokens"] == 128
    baseline = longbench_v2_decoding(ev, model_kind(ev, "base"))  # config.yaml: the base model is instruct
    assert (baseline["n"], baseline["temperature"], baseline["greedy"]) == (5, 0.1, False)  # CoT at T=0.1
    assert baseline["max_new_tokens"] == 1024 and reasoning["max_new_tokens"] == 10000  # pred.py's CoT cap
    assert BENCHMARKS["longbench_v2"].cells(ev) == ["short", "medium", "long"]
