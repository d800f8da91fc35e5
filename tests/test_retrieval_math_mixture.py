from __future__ import annotations

import json
import re

import pytest
from conftest import SAMPLES
from loongrl.books import read_book
from loongrl.data.math_data import count_records, dapo_rows, load_records, mathqa_rows, parse_options
from loongrl.data.mixture import build_mixture, data_card, preflight
from loongrl.data.retrieval import RETRIEVAL_SCHEMA, build
from loongrl.io import DataError, write_parquet
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT
from loongrl.schemas import MIXTURE_SCHEMA


@pytest.fixture(scope="module")
def retrieval_rows(qwen_tokenizer):
    books = {p.name: read_book(p) for p in sorted((SAMPLES / "gutenberg").glob("*.txt"))}
    return build(
        books,
        qwen_tokenizer,
        length=16384,
        reserve=128,
        multikey={"examples": 3, "keys": 20},
        multivalue={"examples": 3, "values": 20},
        system=LOONGRL_SYSTEM_PROMPT,
        seed=42,
    )


def test_retrieval_tasks(retrieval_rows):
    mk = [r for r in retrieval_rows if r["task"] == "multikey"]
    mv = [r for r in retrieval_rows if r["task"] == "multivalue"]
    assert len(mk) == len(mv) == 3
    for r in mk:
        needles = re.findall(r"special magic numbers for ([0-9a-f-]{36}) is: (\d{7})\.", r["user_prompt"])
        assert len({k for k, _ in needles}) == 20
        assert dict(needles)[r["query_key"]] == r["answers"][0]
    for r in mv:
        values = re.findall(rf"special magic numbers for {r['query_key']} is: (\d{{7}})\.", r["user_prompt"])
        assert sorted(values) == sorted(r["answers"]) and len(set(values)) == 20
    for r in retrieval_rows:
        assert 12_000 <= r["prompt_tokens"] <= 16384 - 128, r["prompt_tokens"]
        assert "PROJECT GUTENBERG" not in r["user_prompt"].upper()


def test_retrieval_rows_record_their_haystack(retrieval_rows):
    from loongrl.books import paragraphs, strip_gutenberg
    from loongrl.data.retrieval import passage_stats

    books = {p.name: read_book(p) for p in sorted((SAMPLES / "gutenberg").glob("*.txt"))}

    for r in retrieval_rows:
        ps = paragraphs(strip_gutenberg(books[r["book"]]))
        assert r["book_passages"] == len(ps)
        first = ps[r["passage_start"]]
        last = ps[(r["passage_start"] + r["passages"] - 1) % len(ps)]
        assert first[:60] in r["user_prompt"] and last[-60:] in r["user_prompt"]
    stats = passage_stats(retrieval_rows)
    assert stats["examples"] == 6 and stats["passages_used"] == sum(r["passages"] for r in retrieval_rows)
    assert 0 < stats["distinct_passages"] <= stats["passages_used"]
    twice = passage_stats(retrieval_rows + retrieval_rows)
    assert (
        twice["distinct_passages"] == stats["distinct_passages"] and twice["distinct_share"] < stats["distinct_share"]
    )


def test_mathqa_both_option_layouts():
    assert parse_options("a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these") == [
        "38",
        "27.675",
        "30",
        "data inadequate",
        "none of these",
    ]
    assert parse_options("['a ) a ) 4 inches', 'b ) b ) 6 inches', 'c ) c ) 5 inches']") == [
        "4 inches",
        "6 inches",
        "5 inches",
    ]
    where = SAMPLES / "mathqa/test.sample.json"
    records = load_records(where)
    assert count_records(where) == len(records) == 300
    rows = mathqa_rows(records, str(where))
    assert len(rows) == len(records)
    r = rows[0]
    assert (
        r["user_prompt"].startswith("Question: a shopkeeper sold")
        and "\nChoices:(A) 38\n(B) 27.675" in r["user_prompt"]
    )
    assert r["answers"] == ["A"]


def test_mathqa_bad_row_named():
    with pytest.raises(DataError, match="row 1: field 'correct'"):
        mathqa_rows(
            [
                {"Problem": "p", "options": "a ) 1 , b ) 2", "correct": "a"},
                {"Problem": "p", "options": "a ) 1 , b ) 2", "correct": "e"},
            ],
            "f.json",
        )


def test_dapo_rows_dedupe_and_validate():
    where = SAMPLES / "dapo_math_17k/dapo_math_17k.sample.parquet"
    records = load_records(where)
    assert count_records(where) == len(records) == 300
    rows = dapo_rows(records + records[:5], str(where))
    assert len(rows) == len({r["prompt"][-1]["content"] for r in records})
    assert all(r["answers"][0] for r in rows)
    with pytest.raises(DataError, match=r"reward_model\.ground_truth"):
        dapo_rows([{"prompt": [{"role": "user", "content": "x"}], "reward_model": {}}], "f.parquet")


def _qa(kind, ds, n):
    base = {"dataset": ds, "answers": ["a"], "prompt_tokens": 100, "pass_rate": 0.5, "question": "q?"}
    if kind == "keychain":
        return [{**base, "id": f"{ds}{i}", "user_prompt": "kc"} for i in range(n)]
    return [{**base, "id": f"{ds}{i}", "context": "Passage 1:\nT\nx"} for i in range(n)]


def test_mixture_counts_exclusion_and_card(qwen_tokenizer):
    inputs = {
        "keychain": {ds: _qa("keychain", ds, 3) for ds in ("hotpotqa", "musique")},
        "plain_qa": {ds: _qa("plain", ds, 3) for ds in ("hotpotqa", "musique")},
        "retrieval": [
            {"id": f"r{i}", "task": t, "user_prompt": "u", "answers": ["1"], "prompt_tokens": 50}
            for i, t in enumerate(["multikey", "multivalue"] * 3)
        ],
        "dapo_math": [{"id": f"d{i}", "user_prompt": "1+1?", "answers": ["2"]} for i in range(4)],
        "math_choice": [{"id": f"c{i}", "user_prompt": "Q\nChoices:(A) 1", "answers": ["A"]} for i in range(4)],
    }
    counts = {
        "keychain": {"hotpotqa": 2, "musique": 1},
        "plain_qa": {"hotpotqa": 3, "musique": 0},
        "retrieval_multikey": 2,
        "retrieval_multivalue": 1,
        "dapo_math": 4,
        "math_choice": 2,
    }
    rows = build_mixture(
        inputs, counts=counts, exclude=[], system=LOONGRL_SYSTEM_PROMPT, tokenizer=qwen_tokenizer, seed=1
    )
    card = data_card(rows, "stage1")
    assert {k: v["count"] for k, v in card["sources"].items()} == {
        "keychain_hotpotqa": 2,
        "keychain_musique": 1,
        "plain_qa_hotpotqa": 3,
        "retrieval_multikey": 2,
        "retrieval_multivalue": 1,
        "dapo_math": 4,
        "math_choice": 2,
    }
    assert all(r["prompt"][0] == {"role": "system", "content": LOONGRL_SYSTEM_PROMPT} for r in rows)
    assert all(r["prompt_tokens"] > 0 for r in rows)
    assert card["pass_rate_histogram"]["0.5"] == 6
    warm = build_mixture(
        inputs, counts=counts, exclude=["keychain"], system=LOONGRL_SYSTEM_PROMPT, tokenizer=qwen_tokenizer, seed=1
    )
    assert not any(r["source"] == "keychain" for r in warm) and len(warm) == len(rows) - 3
    with pytest.raises(ValueError, match=r"mixture.counts.dapo_math asks for 9 rows"):
        build_mixture(
            inputs, counts={**counts, "dapo_math": 9}, exclude=[], system=None, tokenizer=qwen_tokenizer, seed=1
        )


def test_preflight_names_longest_rows(tmp_path):
    rows = [
        {
            "id": f"r{i}",
            "data_source": "x",
            "source": "x",
            "prompt": [{"role": "user", "content": "c"}],
            "answers": ["a"],
            "prompt_tokens": n,
            "pass_rate": None,
        }
        for i, n in enumerate([10, 500, 30, 900])
    ]
    path = tmp_path / "m.parquet"
    write_parquet(rows, path, MIXTURE_SCHEMA)
    with pytest.raises(ValueError) as err:
        preflight([path], 100)
    msg = str(err.value)
    assert "2 prompts exceed mixture.max_prompt_tokens=100" in msg
    assert msg.index("900 tokens: r3") < msg.index("500 tokens: r1")
    ok = preflight([path], 1000)
    assert ok["longest"][0] == {"tokens": 900, "id": "r3", "file": str(path)}
    json.dumps(ok)


def test_retrieval_validation_slice_is_new_rows_of_the_training_books(tmp_path, tiny_model_dir):
    """eval.validation.source retrieval: the rules' two commands (build_retrieval_validation, retrieval_validation)
    give mixture-schema rows of the training task from the training books only, with needles the training rows do
    not have (another seed), each named by its task, so TRL ranks checkpoints on the training reward."""
    from loongrl.data import mixture, retrieval
    from loongrl.io import read_parquet

    common = ["--books-dir", str(SAMPLES / "gutenberg"), "--tokenizer", str(tiny_model_dir), "--length", "1024"]
    common += ["--reserve", "32", "--system-prompt", "none", "--exclude-books", "pg84.txt"]
    params = json.dumps({"multikey": {"examples": 6, "keys": 2}, "multivalue": {"examples": 0, "values": 1}})
    for name, seed in (("train", 42), ("val", 44)):
        retrieval.main([*common, "--params", params, "--seed", str(seed), "--output", str(tmp_path / f"{name}.pq")])
    out = tmp_path / "validation.parquet"
    mixture.main(
        ["validation", "--retrieval", str(tmp_path / "val.pq"), "--system-prompt", "none", "--output", str(out)]
    )
    val, raw = read_parquet(out, MIXTURE_SCHEMA), read_parquet(tmp_path / "val.pq")
    train = read_parquet(tmp_path / "train.pq")
    assert len(val) == 6 and {r["data_source"] for r in val} == {"retrieval_multikey"}
    assert "pg84.txt" not in {r["book"] for r in raw}
    assert [r["prompt"][-1]["content"] for r in val] == [r["user_prompt"] for r in raw]
    train_answers = {a for r in train for a in r["answers"]}
    assert not train_answers & {a for r in val for a in r["answers"]}
    none = tmp_path / "none.parquet"
    write_parquet([], none, RETRIEVAL_SCHEMA)
    with pytest.raises(ValueError, match=r"none\.parquet: no retrieval rows for the validation slice"):
        mixture.main(["validation", "--retrieval", str(none), "--output", str(tmp_path / "x.parquet")])
    assert not (tmp_path / "x.parquet").exists()


def test_keychain_books_arms_share_rows_and_verifier(qwen_tokenizer):
    """Table 4 in miniature: arm A (keychain_books) and arm B (direct_books) take the same rows, A as the KeyChain
    prompt after its answer prefix, B as the direct question; both scored by the multi-key retrieval verifier."""
    from loongrl.prompts import KEYCHAIN_ANSWER_PREFIX
    from loongrl.train.rewards import family, score

    books = [
        {
            "id": f"k{i}",
            "answers": [f"123456{i}"],
            "user_prompt": f"chain {i}",
            "prefill": KEYCHAIN_ANSWER_PREFIX,
            "direct_prompt": f"direct {i}",
            "prompt_tokens": 90,
            "direct_prompt_tokens": 60,
        }
        for i in range(3)
    ]
    zero = {
        "keychain": {},
        "plain_qa": {},
        "retrieval_multikey": 0,
        "retrieval_multivalue": 0,
        "dapo_math": 0,
        "math_choice": 0,
    }
    kw = {"exclude": [], "system": None, "tokenizer": qwen_tokenizer, "seed": 1}
    a = build_mixture({"keychain_books": books}, counts={**zero, "keychain_books": 2}, **kw)
    b = build_mixture({"keychain_books": books}, counts={**zero, "direct_books": 2}, **kw)
    assert sorted(r["answers"][0] for r in a) == sorted(r["answers"][0] for r in b) == ["1234560", "1234561"]
    for r in a:
        user, reply = r["prompt"]
        assert user["content"].startswith("chain") and reply == {"role": "assistant", "content": KEYCHAIN_ANSWER_PREFIX}
        assert r["prompt_tokens"] == 90 and r["data_source"] == "retrieval_multikey_keychain"
    assert all(len(r["prompt"]) == 1 and r["prompt_tokens"] == 60 for r in b)
    for r in a + b:
        assert family(r["data_source"]) == "retrieval"
        assert score(r["data_source"], f"\\boxed{{{r['answers'][0]}}}", r["answers"]) == 1.0
        assert score(r["data_source"], f"\\boxed{{{r['answers'][0]} or 7654321}}", r["answers"]) == 0.0  # a hedge
    assert (
        build_mixture(
            {"keychain_books": books}, counts={**zero, "keychain_books": 2}, **{**kw, "exclude": ["keychain_books"]}
        )
        == []
    )
    with pytest.raises(ValueError, match=r"mixture\.counts\.direct_books asks for 4 rows"):
        build_mixture({"keychain_books": books}, counts={**zero, "direct_books": 4}, **kw)


def test_the_schema_names_exactly_the_mixture_sources():
    """mixture.SOURCES is the one list of what a mixture can take: the schema's counts and each stage's exclude list
    name exactly these, so a source added in one place and not the other fails here, not in a run."""
    import yaml
    from conftest import ROOT
    from loongrl.data.mixture import BOOK_ARMS, SOURCES

    mixture = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["properties"]["mixture"]
    props = mixture["properties"]
    assert set(props["counts"]["properties"]) == set(SOURCES)
    exclude = props["stages"]["additionalProperties"]["properties"]["exclude"]["items"]["enum"]
    assert exclude == list(SOURCES) and set(BOOK_ARMS) <= set(SOURCES)
