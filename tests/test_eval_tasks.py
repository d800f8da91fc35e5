"""Eval task builders: the shipped official-format rows load, prompts fit their lengths, answers are recoverable."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from conftest import SAMPLES
from loongrl.eval import longbench as bench_longbench
from loongrl.eval import short as bench_short
from loongrl.eval import synthetic as bench_synthetic
from loongrl.eval.kinds import KINDS
from loongrl.eval.metrics import score_one
from loongrl.eval.rows import finish, truncate_middle
from loongrl.io import DataError
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT

BOOKS = [SAMPLES / "gutenberg"]
QA2_SAMPLE = SAMPLES / "hotpotqa/hotpot_dev_distractor_v1.sample.json"


def test_longbench_loader_reads_shipped_rows_and_truncates_in_the_middle(qwen_tokenizer):
    data = bench_longbench.load_dir(SAMPLES / "longbench", list(bench_longbench.TASKS))
    assert sorted(data) == ["2wikimqa", "narrativeqa", "qasper"]  # no hotpotqa / musique rows are shipped
    assert data["2wikimqa"][0]["answers"] == ["Ozalj"]
    rows = finish(
        bench_longbench.build(data, qwen_tokenizer, max_input_tokens=4096, system=LOONGRL_SYSTEM_PROMPT, exclude=set()),
        qwen_tokenizer,
    )
    by = {r["task"]: r for r in rows}
    assert by["narrativeqa"]["input_truncated"] and by["narrativeqa"]["prompt_tokens"] <= 4096
    user = by["narrativeqa"]["prompt"][-1]["content"]
    assert user.startswith("The following are given passages.")
    assert user.endswith("Question: What is Saltram's living situation?")  # the tail survives middle truncation
    assert json.loads(by["2wikimqa"]["meta"])["question"] == "Where was the wife of Francis I Rákóczi born?"


def test_truncate_middle_keeps_both_ends(qwen_tokenizer):
    text = "alpha " + "filler " * 500 + "omega"
    cut, truncated = truncate_middle(qwen_tokenizer, text, 20)
    assert truncated and cut.startswith("alpha") and cut.endswith("omega") and len(cut) < len(text)
    assert truncate_middle(qwen_tokenizer, "short", 20) == ("short", False)


def test_validation_slice_is_held_out(qwen_tokenizer):
    data = bench_longbench.load_dir(SAMPLES / "longbench", ["2wikimqa", "qasper"])
    ids = bench_longbench.validation_ids(data, {"tasks": ["2wikimqa"], "rows_per_task": 1})
    val = bench_longbench.validation_rows(
        data, ids, qwen_tokenizer, max_input_tokens=4096, system=LOONGRL_SYSTEM_PROMPT
    )
    assert [r["data_source"] for r in val] == ["plain_qa_longbench_2wikimqa"]
    test = bench_longbench.build(data, qwen_tokenizer, max_input_tokens=4096, system=None, exclude=ids)
    assert [r["task"] for r in test] == ["qasper"]


def test_longbench_bad_row_names_file_row_and_field(tmp_path):
    bad = tmp_path / "hotpotqa.jsonl"
    bad.write_text(json.dumps({"input": "q", "context": "c", "answers": "not a list", "length": 3, "_id": "x1"}) + "\n")
    with pytest.raises(DataError, match=r"hotpotqa.jsonl: row x1: field 'answers'"):
        bench_longbench.load_jsonl(bad)


def test_short_context_loaders_read_shipped_rows():
    mmlu = bench_short.build("mmlu", [SAMPLES / "mmlu"], None, None)
    assert len(mmlu) == 80 + 108 + 84 + 160  # every shipped row, header skipped
    assert {r["answers"][0] for r in mmlu} == set("ABCD")
    assert "\nA. " in mmlu[0]["prompt"][-1]["content"]
    math = bench_short.build("math500", [SAMPLES / "math500"], None, None)
    assert len(math) == 400 and all(r["metric"] == "math" for r in math)
    ife = bench_short.build("ifeval", [SAMPLES / "ifeval"], None, None)
    assert len(ife) == 433 and json.loads(ife[0]["meta"])["instruction_id_list"]


def test_mmlu_official_headerless_format_and_bad_answer(tmp_path):
    f = tmp_path / "anatomy_test.csv"
    f.write_text('"What is 1+1?","1","2","3","4","B"\n')
    assert bench_short.load_mmlu(f)[0]["answer"] == "B"
    f.write_text('"What is 1+1?","1","2","3","4","E"\n')
    with pytest.raises(DataError, match=r"anatomy_test\.csv: row 0: field 'answer'"):
        bench_short.load_mmlu(f)


@pytest.mark.parametrize("needle", ["minference", "kamradt"])
def test_niah_grid_lengths_and_depths(qwen_tokenizer, needle):
    p = {"lengths": [1024, 4096], "depths": [0, 50, 100], "reserve": 0, "needle": needle}
    rows = finish(bench_synthetic.build_niah(BOOKS, qwen_tokenizer, p, system=None, seed=42), qwen_tokenizer)
    assert len(rows) == 6
    sentences = {}
    for r in rows:
        assert 0.97 * r["length"] <= r["prompt_tokens"] <= r["length"]
        ctx = r["prompt"][-1]["content"]
        if needle == "kamradt":
            sentence = bench_synthetic.NIAH_NEEDLE
            assert r["metric"] == "niah" and r["answers"] == [bench_synthetic.NIAH_ANSWER]
        else:
            # MInference's needle: a city and a 7-digit number per row; the question names the same city
            m = re.search(r"The special magic ([A-Z][a-z]+) number is: (\d{7})\.", ctx)
            assert m and r["answers"] == [m.group(2)] and r["metric"] == "niah_number"
            assert f"What is the special magic {m.group(1)} number?" in ctx
            sentence = m.group(0)
            row = {"id": r["id"], "metric": r["metric"], "answers": r["answers"]}
            assert score_one(row, f"</think>It is {m.group(2)}.")[1]["number_in_answer"] == 1.0
            assert score_one(row, "</think>It is 1234567.")[1]["number_in_answer"] == float(m.group(2) == "1234567")
        assert ctx.count(sentence) == 1
        sentences[(r["length"], json.loads(r["meta"])["depth"])] = sentence
    if needle == "minference":
        assert len(set(sentences.values())) > 1  # drawn per row
    first = {json.loads(r["meta"])["depth"]: r["prompt"][-1]["content"] for r in rows if r["length"] == 4096}
    pos = {d: t.index(sentences[(4096, d)]) / len(t) for d, t in first.items()}
    assert pos[0] < 0.05 and 0.4 < pos[50] < 0.6 and pos[100] > 0.9


@pytest.mark.parametrize("length", [1024, 4096])
def test_ruler_tasks_fit_and_hold_their_answers(qwen_tokenizer, length):
    p = {
        "tasks": [*bench_synthetic.RULER_TASKS[:-2], "qa_2"],
        "samples": 2,
        "qa_files": {"qa_2": str(SAMPLES / "hotpotqa/hotpot_dev_distractor_v1.sample.json")},
    }
    rows = finish(
        bench_synthetic.build_ruler(BOOKS, qwen_tokenizer, p, length=length, system=None, seed=42), qwen_tokenizer
    )
    assert len(rows) == 2 * 12
    for r in rows:
        assert r["prompt_tokens"] <= length, (r["task"], r["prompt_tokens"])
        assert r["prompt_tokens"] >= 0.7 * length, (r["task"], r["prompt_tokens"])
        ctx = r["prompt"][-1]["content"]
        if r["task"].startswith("niah"):
            assert all(a in ctx for a in r["answers"])
            # a gold completion scores 1, a wrong one 0: the answers really are the queried values
            assert score_one(r, " ".join(r["answers"]), kind=KINDS["instruct"])[1]["string_match_all"] == 1.0
        if r["task"] == "vt":
            # RULER's one-shot example (3-letter names, with its answer) before the question (5-letter names)
            shot, question = ctx.split("\n\nMemorize and track", 1)
            assert shot.startswith("Memorize and track") and "variables are assgined the value" in shot
            assert re.search(r"VAR [A-Z]{3} = \d{5}", shot) and len(r["answers"]) == 5
            # statements without a period, between noise blocks: "VAR B = VAR A " [variable_tracking.py]
            assert re.search(rf"VAR {r['answers'][0]} = \d{{5}} ", question)
            assert all(f"VAR {b} = VAR {a} " in question for a, b in itertools.pairwise(r["answers"]))
        if r["task"] == "cwe":
            # space-joined "1. w 2. w ..." after a one-shot example and its answer [common_words_extraction.py]
            shot, question = ctx.split("\nBelow is a numbered list", 1)
            assert "Answer: The top 10 words that appear most often in the list are: 1. " in shot
            words = re.findall(r"\d+\. (\S+)", question.split("\n")[1])
            common = {w: words.count(w) for w in r["answers"]}
            assert set(common.values()) == {6 if length < 4096 else 30}
            assert {words.count(w) for w in set(words) - set(r["answers"])} == {1 if length < 4096 else 3}
        if r["task"] == "fwe":
            # length // 50 six-letter words, the top rank is "..." noise, Zipf counts, answer = ranks 2-4
            words = ctx.split("coded words. ", 1)[1].split("\nQuestion:")[0].split()
            counts = {w: words.count(w) for w in set(words)}
            assert max(counts, key=counts.get) == "..." and all(len(w) == 6 for w in counts if w != "...")
            assert [counts[a] for a in r["answers"]] == sorted((counts[a] for a in r["answers"]), reverse=True)
            assert all(
                counts[a] > c for a in r["answers"] for w, c in counts.items() if w not in {*r["answers"], "..."}
            )
            assert len(counts) <= length // 50


def test_ruler_single_needle_wording_and_answer_prefixes(qwen_tokenizer):
    """RULER's singular wording for the 6 NIAH tasks that ask for one value, and the instruct kind's answer prefix
    (an assistant prefill the chat template continues) and per-task caps [constants.py; lm-eval gen_prefix]."""
    p = {"tasks": ["niah_single_2", "niah_multivalue", "vt", "cwe", "fwe"], "samples": 1, "qa_files": {}}
    plain = bench_synthetic.build_ruler(BOOKS, qwen_tokenizer, p, length=2048, system=None, seed=3)
    rows = {
        r["task"]: r
        for r in finish(
            bench_synthetic.build_ruler(BOOKS, qwen_tokenizer, p, length=2048, system=None, seed=3, prefix=True),
            qwen_tokenizer,
        )
    }
    single = rows["niah_single_2"]["prompt"][0]["content"]
    assert single.startswith("A special magic number is hidden within the following text.")
    assert "I will quiz you about the number afterwards." in single and "What is the special magic number for" in single
    assert rows["niah_multivalue"]["prompt"][0]["content"].startswith("Some special magic numbers are hidden")
    assert all(len(r["prompt"]) == 1 for r in plain)  # the reasoning kind: no prefill
    prefill = {t: r["prompt"][-1] for t, r in rows.items()}
    assert all(m["role"] == "assistant" for m in prefill.values())
    assert re.fullmatch(
        r"The special magic number for \S+ mentioned in the provided text is", prefill["niah_single_2"]["content"]
    )
    assert prefill["niah_multivalue"]["content"].endswith("mentioned in the provided text are")
    assert re.fullmatch(
        r"Answer: According to the chain\(s\) of variable assignment in the text above, 5 variables are assgined "
        r"the value \d{5}, they are:",
        prefill["vt"]["content"],
    )
    caps = {t: json.loads(r["meta"])["max_new_tokens"] for t, r in rows.items()}
    assert caps == {"niah_single_2": 128, "niah_multivalue": 128, "vt": 30, "cwe": 120, "fwe": 50}
    # the prefill is continued, not closed: the rendered prompt ends in it
    from loongrl.inference import render_prompts

    text = render_prompts(qwen_tokenizer, [rows["cwe"]["prompt"]])[0]
    assert text.endswith("Answer: The top 10 words that appear most often in the list are:")
    assert abs(rows["cwe"]["prompt_tokens"] - 2048) <= 0.03 * 2048


def test_ruler_qa_takes_the_questions_own_documents_first(tmp_path):
    """[RULER qa.py] HotpotQA: all of a question's paragraphs (hard distractors too) are its documents; SQuAD:
    its paragraph, then the same article's paragraphs; the pool is de-duplicated."""
    hot = [
        {
            "_id": "a",
            "question": "q1",
            "answer": "x",
            "supporting_facts": [["T1", 0]],
            "context": [["T1", ["one."]], ["T2", ["two."]], ["T3", ["three."]]],
        },
        {
            "_id": "b",
            "question": "q2",
            "answer": "y",
            "supporting_facts": [["T2", 0]],
            "context": [["T2", ["two."]], ["T4", ["four."]]],
        },
    ]
    (tmp_path / "hot.json").write_text(json.dumps(hot))
    qas, pool = bench_synthetic.load_hotpot(tmp_path / "hot.json")
    assert pool == sorted({"T1\none.", "T2\ntwo.", "T3\nthree.", "T4\nfour."})
    assert [pool[i] for i in qas[0]["docs"]] == ["T1\none."]  # supporting: always in
    assert sorted(pool[i] for i in qas[0]["more"]) == ["T2\ntwo.", "T3\nthree."]  # its distractors: next
    squad = {
        "data": [
            {
                "paragraphs": [
                    {"context": "P1", "qas": [{"question": "s1", "answers": [{"text": "a"}]}]},
                    {"context": "P2", "qas": [{"question": "s2", "answers": [{"text": "b"}], "is_impossible": False}]},
                ]
            },
            {"paragraphs": [{"context": "P3", "qas": [{"question": "s3", "answers": [], "is_impossible": True}]}]},
        ]
    }
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    qas, pool = bench_synthetic.load_squad(tmp_path / "squad.json")
    assert pool == ["P1", "P2", "P3"] and len(qas) == 2
    assert [pool[i] for i in qas[0]["docs"]] == ["P1"] and [pool[i] for i in qas[0]["more"]] == ["P2"]


def test_ruler_is_deterministic_and_needs_qa_files(qwen_tokenizer):
    p = {"tasks": ["niah_multikey_3", "vt"], "samples": 1, "qa_files": {}}
    a = bench_synthetic.build_ruler(BOOKS, qwen_tokenizer, p, length=1024, system=None, seed=7)
    b = bench_synthetic.build_ruler(BOOKS, qwen_tokenizer, p, length=1024, system=None, seed=7)
    assert a == b
    with pytest.raises(ValueError, match=r"qa_files\.qa_1"):
        bench_synthetic.build_ruler(BOOKS, qwen_tokenizer, {**p, "tasks": ["qa_1"]}, length=1024, system=None, seed=7)


def test_validation_prompts_get_the_training_cap(qwen_tokenizer):
    """The validation slice is generated inside the training job, so its prompts are cut to the training prompts'
    limit (mixture.max_prompt_tokens), not to LongBench's 120K."""
    from loongrl.eval.tasks import validation_slice
    from loongrl.prompts import count_tokens_batch

    p = {"longbench": {"max_input_tokens": 121_072}, "validation": {"tasks": ["2wikimqa"], "rows_per_task": 2}}
    wide = validation_slice(SAMPLES / "longbench", qwen_tokenizer, p, LOONGRL_SYSTEM_PROMPT)
    capped = validation_slice(SAMPLES / "longbench", qwen_tokenizer, p, LOONGRL_SYSTEM_PROMPT, max_input_tokens=1024)

    def tokens(rows):
        return count_tokens_batch(qwen_tokenizer, [r["prompt"][-1]["content"] for r in rows])

    assert max(tokens(wide)) > 1024 >= max(tokens(capped))


@pytest.mark.parametrize("length", [65536, 131072])
def test_long_cells_fill_their_label(qwen_tokenizer, tiny_model_dir, tmp_path, length):
    """At 64K and 128K every NIAH and RULER row built from the shipped books is within 3 % of its label (one
    book is shorter than that: the haystack continues into the next books), checked by the builder CLI itself;
    a source too small for the cell (two HotpotQA questions for qa_2) is a build error naming the row."""
    from loongrl.eval.tasks import main
    from loongrl.io import read_parquet

    tasks = [t for t in bench_synthetic.RULER_TASKS if not t.startswith("qa")]
    settings = {
        "system_prompt": "loongrl",
        "niah": {"lengths": [length], "depths": [0, 50, 100], "reserve": 0},
        "ruler": {"tasks": tasks, "samples": 1, "qa_files": {}},
    }

    def build(bench, params, out):
        cmd = [bench, "--input", str(BOOKS[0]), "--tokenizer", str(tiny_model_dir), "--params", json.dumps(params)]
        main([*cmd, "--length", str(length), "--cell", f"L{length}", "--output", str(out)])
        return read_parquet(out)

    rows = build("niah", settings, tmp_path / "niah.parquet") + build("ruler", settings, tmp_path / "ruler.parquet")
    assert len(rows) == 3 + len(tasks)
    assert all(abs(r["prompt_tokens"] - length) <= 0.03 * length for r in rows), [
        (r["id"], r["prompt_tokens"]) for r in rows
    ]
    small = tmp_path / "hotpot_small.json"  # two questions: far too few paragraphs for a 64K cell
    small.write_text(json.dumps(json.loads(QA2_SAMPLE.read_text())[:2]))
    qa = {**settings, "ruler": {"tasks": ["qa_2"], "samples": 1, "qa_files": {"qa_2": str(small)}}}
    with pytest.raises(
        DataError, match=r"ruler cell L\d+: row ruler-qa_2-\S+: field 'prompt_tokens': .* tokens for a \d+-token cell"
    ):
        build("ruler", qa, tmp_path / "qa.parquet")
    assert not (tmp_path / "qa.parquet").exists()


def test_haystack_continues_past_a_short_book(qwen_tokenizer):
    """One short book and a budget twice its size: the stretch wraps into the collection again and meets the
    budget (it used to stop at the book's end), ending in a cut paragraph rather than leaving the room empty."""
    import random

    from loongrl.books import Haystack

    book = "\n\n".join(f"Paragraph {i} of a short book, with a few more words in it." for i in range(50))
    hay = Haystack({"short": book}, qwen_tokenizer)
    size = sum(hay.tokens["short"]) + hay.sep * 50
    _, paras = hay.stretch(random.Random(0), 2 * size)
    got = len(qwen_tokenizer("\n\n".join(paras), add_special_tokens=False)["input_ids"])
    # counts are per paragraph plus a separator; joined, ".\n\n" is one token, so the text is ~1 token a paragraph
    # shorter than its count (here 16-17-token paragraphs: ~6 %; book paragraphs at 64K+: well under 1 %)
    assert 0.93 * 2 * size <= got <= 2 * size and len(paras) > 50


def test_longbench_full_set_with_the_validation_rows_marked(qwen_tokenizer):
    """The paper-comparable headline is the full set; the validation slice's rows stay in and are marked, so the
    report can show the held-out subset beside it (they used to be removed from the test set)."""
    from loongrl.eval.registry import BENCHMARKS, BuildRequest

    settings = {
        "longbench": {"tasks": ["2wikimqa", "qasper"], "max_input_tokens": 4096, "max_rows": None},
        "validation": {"tasks": ["2wikimqa"], "rows_per_task": 1, "holdout": True},
    }
    req = BuildRequest(
        inputs=[SAMPLES / "longbench"], tokenizer=qwen_tokenizer, settings=settings, system=None, length=0
    )
    rows = BENCHMARKS["longbench"].build(req)
    data = bench_longbench.load_dir(SAMPLES / "longbench", ["2wikimqa", "qasper"])
    assert len(rows) == sum(len(v) for v in data.values())  # nothing removed
    marks = [json.loads(r["meta"])["groups"]["task_heldout"] for r in rows]
    assert marks.count("2wikimqa@validation") == 1 and "qasper@validation" not in marks
    off = BENCHMARKS["longbench"].build(
        BuildRequest(
            inputs=[SAMPLES / "longbench"],
            tokenizer=qwen_tokenizer,
            settings={**settings, "validation": {**settings["validation"], "holdout": False}},
            system=None,
            length=0,
        )
    )
    assert len(off) == len(rows) and all("groups" not in json.loads(r["meta"]) for r in off)


def test_heldout_keychain_cell_asks_after_the_answer_prefix(qwen_tokenizer, tmp_path):
    """The held-out KeyChain cell: the rows build_keychain_books_heldout writes, each prompt the KeyChain prompt
    with the reply opened by its answer prefix, scored by the multi-key verifier (the true chain's number only);
    the distractor chains' numbers go along in meta."""
    from loongrl.books import Haystack, load_books
    from loongrl.data.keychain import KEYCHAIN_BOOKS_SCHEMA, build_book_keychain_rows
    from loongrl.eval.registry import BENCHMARKS, BuildRequest, eval_cells
    from loongrl.io import write_parquet
    from loongrl.prompts import KEYCHAIN_ANSWER_PREFIX

    hay = Haystack(load_books([SAMPLES / "gutenberg"], only=["pg84.txt"]), qwen_tokenizer)
    rows = build_book_keychain_rows(
        hay, qwen_tokenizer, examples=3, length=384, hops=2, chains=2, seed=2, prefill=KEYCHAIN_ANSWER_PREFIX
    )
    path = tmp_path / "heldout.L384.parquet"
    write_parquet(rows, path, KEYCHAIN_BOOKS_SCHEMA)
    bench = BENCHMARKS["heldout_keychain"]
    req = BuildRequest(inputs=[path], tokenizer=qwen_tokenizer, settings={}, system=None, length=384, cell="L384")
    tasks = finish(bench.build(req), qwen_tokenizer)
    for t, r in zip(tasks, rows, strict=True):
        user, reply = t["prompt"]
        assert user["content"] == r["user_prompt"] and reply["content"] == KEYCHAIN_ANSWER_PREFIX
        assert t["metric"] == "keychain" and t["answers"] == r["answers"]
        assert json.loads(t["meta"])["distractor_answers"] == r["distractor_answers"]
        instruct = KINDS["instruct"]
        right, wrong = r["answers"][0], r["distractor_answers"][0]
        assert score_one(t, f" {right}.", kind=instruct)[1] == {"accuracy": 1.0, "distractor": 0.0, "names_chain": 0.0}
        assert score_one(t, f" {wrong}.", kind=instruct)[1] == {"accuracy": 0.0, "distractor": 1.0, "names_chain": 0.0}
        # the reasoning pattern: every key of the true chain written out (start key first), then the answer; a
        # chain followed only part of the way, or another chain's keys, is not it
        true_chain, other = r["chains"][0], r["chains"][1]
        walked = " ".join(f"{k} ->" for k in true_chain) + f" so the answer is {right}."
        assert score_one(t, walked, kind=instruct)[1] == {"accuracy": 1.0, "distractor": 0.0, "names_chain": 1.0}
        assert score_one(t, " ".join(true_chain[:-1]) + f" {right}", kind=instruct)[1]["names_chain"] == 0.0
        assert score_one(t, " ".join(other) + f" {wrong}", kind=instruct)[1]["names_chain"] == 0.0
        # a UUID's digit run is no number: restating a key before the answer still reads the answer
        assert score_one(t, f"{true_chain[-1]} holds {right}.", kind=instruct)[1]["accuracy"] == 1.0
    # its own lengths (eval.heldout_keychain), none unless asked for: make effect's matrix is unchanged
    ev = {
        "heldout_keychain": {"lengths": [384, 768]},
        "heldout": {"lengths": [384]},
        "benchmarks": ["heldout_keychain"],
    }
    assert eval_cells(ev) == [("heldout_keychain", "L384"), ("heldout_keychain", "L768")]
    assert eval_cells({**ev, "heldout_keychain": {"lengths": []}}) == []
