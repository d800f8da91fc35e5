"""LongBench v1 scored as the authors scored (issue 31): their reading and two-way match, the LLM judge's OR, its
cache, an OpenAI-compatible endpoint, and Table 3's bucketing against the authors' own per-bucket counts.

The expected values of CASES were worked out by hand from the authors' ``boxed_exact_match_judge``
(Wangmerlyn/KeyChain ``filter_again/judge_utils.py`` ~102-133) and checked against it when this file was written;
their code is not shipped here.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
import yaml
from loongrl.eval import evaluate, judge
from loongrl.eval.kinds import KINDS, authors_answer, read_completion
from loongrl.eval.metrics import authors_match, direct_exact_match, score_one
from loongrl.report import tables

# (completion, golds, the authors' is_correct, their extracted "reason"; None: their "boxed extraction failed")
CASES = [
    ("\\boxed{Ozalj}", ["Ozalj"], 1, "ozalj"),
    ("<think>hmm</think>The town is \\boxed{Ozalj, Croatia}.", ["Ozalj"], 1, "ozalj, croatia"),
    ("\\boxed{Zagreb}", ["Ozalj"], 0, "zagreb"),
    ("\\boxed{a young lawyer}", ["Saltram's friend", "A young lawyer"], 1, "a young lawyer"),  # any gold
    ("\\boxed{Paris} then \\boxed{Lyon}", ["Paris"], 0, "lyon"),  # the last box
    ("<think>\\boxed{Paris}", ["Paris"], 1, "paris"),  # no </think>: still read
    ("So the answer is Ozalj.", ["Ozalj"], 1, "ozalj"),
    ("The answer is Zagreb. Wait, the answer is Ozalj.", ["Ozalj"], 1, "ozalj"),  # the last "the answer is"
    ("The answer is Ozalj. Wait, the answer is Zagreb.", ["Ozalj"], 0, "zagreb"),
    ("THE ANSWER IS **Ozalj**", ["Ozalj"], 1, "ozalj"),  # lower-cased, stars dropped
    ("Ozalj", ["Ozalj"], 0, None),  # a bare reply: no box, no phrase
    ("I think it is Ozalj", ["Ozalj"], 0, None),
    ("the answer is", ["Ozalj"], 1, ""),  # an empty answer is inside every gold: no guard in their code
    ("\\boxed{.}", ["Ozalj"], 1, "."),  # normalises to nothing: scores
    ("\\boxed{} the answer is Ozalj", ["Ozalj"], 1, "ozalj"),  # literal empty box removed, phrase read
    ("\\boxed{\\text{Ozalj}}", ["Ozalj"], 1, "\\text{ozalj}"),  # nested braces; normalising drops the rest
    ("\\boxed{1945}", ["September 2, 1945"], 1, "1945"),  # prediction inside gold
    ("\\boxed{September 2, 1945}", ["1945"], 1, "september 2, 1945"),  # gold inside prediction
    ("\\boxed{s}", ["Jesus"], 1, "s"),  # character-level containment
    ("\\boxed{the}", ["The Hague"], 1, "the"),  # an article alone normalises to nothing
    ("\\boxed{yes}", ["no"], 0, "yes"),
    ("\\boxed{No}", ["no"], 1, "no"),
    ("\\boxed{Ozalj", ["Ozalj"], 0, None),  # an unclosed box, no phrase
    ("\\boxed{Ozalj and the answer is Zagreb", ["Zagreb"], 1, "zagreb"),  # unclosed box: the phrase
    ("\\boxed Ozalj$ done", ["Ozalj"], 1, "ozalj"),  # the "\boxed " form, read up to $
    ("\\fbox{Ozalj}", ["zalj"], 1, "zalj"),  # \fbox: their remove_boxed drops the first character
    ("\\fbox{Ozalj}", ["Ozalj"], 1, "zalj"),  # "zalj" inside "ozalj"
    ("\\boxed{Ozalj} and the answer is Zagreb", ["Zagreb"], 0, "ozalj"),  # a box wins over the phrase
    ("answer: \\boxed{Rome}", ["Paris", "Rome"], 1, "rome"),
    ("\\boxed{Mount Everest}", ["Everest, Mount"], 0, "mount everest"),  # word order matters
    ("\\boxed{U.S.A.}", ["USA"], 1, "u.s.a."),  # punctuation dropped when matching
    ("the answer is: Ozalj.", ["Ozalj"], 1, ": ozalj"),  # the colon stays in the reason
    ("*\\boxed{Ozalj}*", ["Ozalj"], 1, "ozalj"),
    ("\\boxed{\\boxed{Ozalj}}", ["Ozalj"], 1, "ozalj"),  # the last \boxed is the inner one
]


@pytest.mark.parametrize(("completion", "golds", "correct", "reason"), CASES)
def test_authors_boxed_rule_matches_their_judge(completion, golds, correct, reason):
    said, how = authors_answer(completion)
    assert said == reason
    assert (how == "none") == (reason is None)
    assert authors_match(said, golds) == correct


def test_authors_rule_is_boxed_or_direct_and_reads_through_missing_think():
    lb = {"id": "r", "metric": "longbench_qa", "answers": ["Ozalj", "Ozalj, Croatia"]}
    inst, reas = KINDS["instruct"], KINDS["reasoning"]
    # a bare reply: no box, no phrase; the direct exact match carries it, QwenLong-L1's sub-EM gives 0
    pred, s = score_one(lb, "Ozalj", kind=inst)
    assert (s["authors"], s["authors_boxed"], s["authors_direct"], s["sub_em"], s["whole_reply"]) == (1, 0, 1, 0, 1)
    assert s["authors_no_answer"] == 1.0 and pred == ""
    # a rambling reply that mentions the gold states nothing: 0 under every rule (no whole-completion fallback)
    _, s = score_one(lb, "Many towns, Zagreb and Ozalj among them, lie there.", kind=inst)
    assert s["authors"] == 0.0 and s["sub_em"] == 0.0
    # a reasoning completion that never closed </think> keeps its box for the authors' rule only
    _, s = score_one(lb, "<think>so \\boxed{Ozalj}")
    assert s["authors"] == 1.0 and s["sub_em"] == 0.0 and read_completion("<think>x", reas).no_think
    # the empty answer the authors' rule scores 1 is counted
    _, s = score_one(lb, "... and so the answer is", kind=inst)
    assert s["authors"] == 1.0 and s["authors_empty"] == 1.0
    assert direct_exact_match("<think>long</think> ozalj ", ["Ozalj"]) == 1.0
    assert direct_exact_match("Ozalj is the town", ["Ozalj"]) == 0.0
    # the instruct kind's stated answer is the last "the answer is" (a reply that corrects itself)
    assert score_one(lb, "The answer is Zagreb. No, the answer is Ozalj.", kind=inst)[1]["sub_em"] == 1.0


def _sample(i: int, completion: str, question: str = "Where?") -> dict:
    row = {"id": f"q{i}", "metric": "longbench_qa", "answers": ["Ozalj"]}
    pred, scores = score_one(row, completion, kind=KINDS["instruct"])
    return {
        "id": f"q{i}",
        "benchmark": "longbench",
        "task": "hotpotqa",
        "length": 0,
        "sample": 0,
        "prompt_tokens": 100,
        "input_truncated": False,
        "completion": completion,
        "completion_tokens": 5,
        "hit_cap": False,
        "no_think": False,
        "extracted": pred,
        "score": scores["authors"],
        "scores": [{"name": n, "value": v} for n, v in sorted(scores.items())],
        "meta": json.dumps({"question": question}),
    }


def test_judge_ors_its_verdict_in_and_caches_it(tmp_path):
    samples = [
        _sample(0, "the answer is Ozalj"),  # the rule already says yes
        _sample(1, "the answer is the small Croatian town on the Kupa"),  # only the judge can say yes
        _sample(2, "the answer is Zagreb"),  # the judge says no
        _sample(3, "I cannot tell"),  # states nothing: no call, verdict 0
        _sample(4, "the answer is the small Croatian town on the Kupa"),  # same item as q1: one call
        _sample(5, "the answer is Vienna"),  # the judge's reply has no verdict: NO, counted
    ]
    answers = {x["id"]: ["Ozalj"] for x in samples}
    calls: list[str] = []

    def scripted(prompts):
        out = []
        for messages in prompts:
            user = messages[-1]["content"]
            calls.append(user)
            assert messages[0]["content"] == judge.JUDGE_SYSTEM and "Answer 2: Ozalj" in user
            if "vienna" in user:
                out.append("I am not sure.")
            elif "kupa" in user or "Answer 1: ozalj" in user:
                out.append("Both name the same town.\n[[YES]]")
            else:
                out.append("Different cities. [[NO]]")
        return out

    cache = judge.VerdictCache(tmp_path / "cache", "test-judge")
    judged, counts = judge.judge_cell(samples, answers, scripted, cache, batch_size=2)
    s = [{x["name"]: x["value"] for x in j["scores"]} for j in judged]
    assert [x["judge"] for x in s] == [1, 1, 0, 0, 1, 0]
    assert [x["authors"] for x in s] == [1, 1, 0, 0, 1, 0]  # boxed OR direct OR judge
    assert [x["qwenlong_l1"] for x in s] == [1, 1, 0, 0, 1, 0]  # max(sub-EM, judge)
    assert [x["sub_em"] for x in s] == [1, 0, 0, 0, 0, 0]
    assert [x["judge_unparsed"] for x in s] == [0, 0, 0, 0, 0, 1]
    assert [j["score"] for j in judged] == [x["authors"] for x in s]
    assert len(calls) == 4 and counts == {"judged": 5, "judge_calls": 4, "cached": 1, "samples": 6}
    # a rerun is answered from the cache: no call at all, the same scores
    calls.clear()
    again, counts = judge.judge_cell(samples, answers, scripted, cache)
    assert calls == [] and counts["judge_calls"] == 0 and again == judged
    # another judge (or prompt version) never reuses these verdicts
    other = judge.VerdictCache(tmp_path / "cache", "another-judge")
    judge.judge_cell(samples[:1], answers, scripted, other)
    assert len(calls) == 1
    # the summary the report reads: the authors' rule with the judge as the score
    summ = evaluate.summarize(judged, {"judge": {"model": "m"}})
    assert summ["overall"]["score"] == pytest.approx(3 / 6)
    assert summ["by_task"]["hotpotqa"]["metrics"]["judge"] == pytest.approx(3 / 6)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("They match. [[YES]]", True),
        ("[[NO]]", False),
        ("At first [[NO]], but on reflection [[YES]]", True),  # the last verdict
        ("YES, they look alike but [[NO]]", False),  # QwenLong-L1 would read the first YES
        ("[[ yes ]]", True),
        ("no verdict here", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert judge.parse_verdict(reply) is verdict


def test_endpoint_judge_speaks_openai_chat_completions(tmp_path, monkeypatch):
    """The endpoint route against a local OpenAI-compatible server: request shape, key, temperature 0, retry."""
    seen: list[dict] = []
    failures = [503]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            if failures:
                self.send_response(failures.pop())
                self.end_headers()
                return
            reply = {"choices": [{"message": {"content": "Same answer. [[YES]]"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("JUDGE_KEY", "sk-test")
        cfg = {"model": "deepseek-chat", "url": f"http://127.0.0.1:{server.server_port}/v1", "api_key_env": "JUDGE_KEY"}
        monkeypatch.setattr(judge.time, "sleep", lambda s: None)
        complete = judge.endpoint_judge(cfg, seed=7)
        assert complete([judge.judge_messages("Where?", "ozalj", "Ozalj")]) == ["Same answer. [[YES]]"]
    finally:
        server.shutdown()
    assert len(seen) == 2  # the 503 was retried
    req = seen[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["model"] == "deepseek-chat" and req["temperature"] == 0.0 and req["seed"] == 7
    assert req["messages"][0]["role"] == "system" and "Answer 1: ozalj" in req["messages"][1]["content"]


def test_judge_cli_names_a_missing_judge_in_one_line(tmp_path, capsys):
    from loongrl.cli import run

    argv = ["--samples", "x", "--summary", "y", "--tasks", "z", "--judge", '{"model": "m"}']
    argv += ["--out-samples", str(tmp_path / "a"), "--out-summary", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exc:
        run(lambda: judge.main(argv))
    assert exc.value.code == 2 and "eval.judge.url" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Table 3 from the authors' counts
AUTHORS = yaml.safe_load((Path(__file__).parent / "data/authors_narrativeqa_buckets.yaml").read_text())["models"]
BIN_TOKENS = {"0-16k": 1000, "16k-32k": 20000, "32k-48k": 40000, "48k-64k": 50000}
# where the paper prints another number than the authors' own counts give (0.1 in the pooled 32-64K bucket; a
# Table 2 NarrativeQA value that is not the Table 3 row's total)
PRINTED_DIFFERENTLY = {
    ("Qwen2.5-14B-Instruct", "narrativeqa@32-64K"): "48.2",
    ("LoongRL-14B", "narrativeqa@32-64K"): "64.2",
    ("R1-Distill-Qwen-14B", "narrativeqa"): "52.1",
}


@pytest.mark.parametrize("model", sorted(AUTHORS))
def test_table3_bucketing_reproduces_the_authors_counts(model):
    """Samples with the authors' per-bin counts, through our summarize() and report tables, print the paper's
    Table 3 NarrativeQA columns and Table 2 NarrativeQA value (pooled by counts, not averaged over bins)."""
    samples = []
    for label, (total, correct) in AUTHORS[model]["bins"].items():
        for i in range(total):
            samples.append(
                {
                    "id": f"{label}-{i}",
                    "benchmark": "longbench",
                    "task": "narrativeqa",
                    "length": 0,
                    "prompt_tokens": BIN_TOKENS[label],
                    "input_truncated": False,
                    "completion_tokens": 1,
                    "hit_cap": False,
                    "no_think": False,
                    "score": float(i < correct),
                    "scores": [{"name": "authors", "value": float(i < correct)}],
                    "meta": "{}",
                }
            )
    summaries = {"longbench.all": evaluate.summarize(samples, {})}
    t3 = tables.table3(summaries, [])
    cols = [f"narrativeqa@{b}" for b in tables.BUCKETS[:3]]
    for col, printed in zip(cols, AUTHORS[model]["paper_table3"], strict=True):
        assert t3[col].text() == PRINTED_DIFFERENTLY.get((model, col), f"{printed:.1f}"), (model, col)
    t2 = tables.table2(summaries)["narrativeqa"].text()
    expected = f"{AUTHORS[model]['paper_table2_narrativeqa']:.1f}"
    assert t2 == PRINTED_DIFFERENTLY.get((model, "narrativeqa"), expected)


def test_table2_title_names_the_judge_or_the_lower_bound():
    plain = {"base": {"longbench.all": {"by_task": {}}}}
    assert tables.judge_label(plain) == "no judge: lower bound"
    judged = {"base": {"longbench.all": {"judge": {"model": "deepseek-chat", "url": "https://api.deepseek.com/v1"}}}}
    assert tables.judge_label(judged) == "LLM judge deepseek-chat at https://api.deepseek.com/v1"
    both = {**judged, "stage2": {"longbench.all": {}}}
    assert tables.judge_label(both).endswith("; no judge: lower bound")
