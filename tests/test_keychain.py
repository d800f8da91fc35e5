"""KeyChain synthesis on the shipped real HotpotQA, MuSiQue and 2Wiki rows at 16K with the Qwen2.5 tokenizer."""

from __future__ import annotations

import json
import random
import re

import pytest
from loongrl.data.fill import fill_rows
from loongrl.data.keychain import (
    build_keychain_rows,
    insert_pairs,
    insertion_points,
    make_chains,
    num_chains,
    pick_distractors,
)
from loongrl.data.split import filler_pool, with_token_counts
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT

PAIR = re.compile(r'\{"([0-9a-f-]{8,36})": "(.*?)"\}\.')
LENGTH = 16384
# The paper-era chain settings: 4 keys per chain, one chain per 1K tokens, full UUID keys, quoted start key.
CHAINS = {"chain_length": 4, "chains_per_1k": 1, "key_format": "uuid4", "quote_start_key": True}


@pytest.fixture(scope="module")
def synthesized(raw_rows, qwen_tokenizer):
    out = {}
    for ds, rows in raw_rows.items():
        rate = {r["id"]: 0.5 for r in rows}
        plain = with_token_counts(qwen_tokenizer, rows[:6], rate)
        kc_pool = with_token_counts(qwen_tokenizer, rows[6:12], rate)
        pool = filler_pool(rows)
        counts = [len(ids) for ids in qwen_tokenizer([f"{d['title']}\n{d['text']}" for d in pool])["input_ids"]]
        fillers = [{**d, "n_tokens": n} for d, n in zip(pool, counts, strict=True)]
        kw = {
            "length": LENGTH,
            "reserve": 128,
            "budget_scope": "prompt",
            "placement": "random",
            "system": LOONGRL_SYSTEM_PROMPT,
            "seed": 42,
        }
        plain_rows, plain_stats = fill_rows(plain, fillers, qwen_tokenizer, **kw)
        kc_filled, _ = fill_rows(kc_pool, fillers, qwen_tokenizer, **kw)
        kc = build_keychain_rows(
            kc_filled,
            [r["question"] for r in rows],
            qwen_tokenizer,
            length=LENGTH,
            system=LOONGRL_SYSTEM_PROMPT,
            seed=42,
            **CHAINS,
        )
        out[ds] = {"plain": plain_rows, "plain_stats": plain_stats, "keychain": kc, "pool": plain}
    return out


@pytest.mark.parametrize("ds", ["hotpotqa", "musique", "2wikimqa"])
def test_keychain_chains_lead_to_the_question(synthesized, ds):
    rows = synthesized[ds]["keychain"]
    assert len(rows) == 6
    for r in rows:
        pairs = PAIR.findall(r["user_prompt"])
        assert len(pairs) == num_chains(LENGTH) * 4 == 64
        mapping = dict(pairs)
        assert len(mapping) == 64, "every key is used exactly once"
        assert f'starting from "{r["start_key"]}".' in r["user_prompt"]
        node = r["start_key"]
        for _ in range(4):
            node = mapping[node]
        assert node == r["question"]
        assert r["question"] not in r["distractor_questions"]
        assert len(set(r["distractor_questions"])) == 15
        # every distractor chain ends at its distractor question
        ends = {mapping[c[-1]] for c in r["chains"][1:]}
        assert ends == set(r["distractor_questions"])


@pytest.mark.parametrize("ds", ["hotpotqa", "musique", "2wikimqa"])
def test_prompt_lengths_match_paper_table1(synthesized, ds):
    plain = [r["prompt_tokens"] for r in synthesized[ds]["plain"]]
    kc = [r["prompt_tokens"] for r in synthesized[ds]["keychain"]]
    # Paper Table 1 (HotpotQA): plain 12,058-16,279, KeyChain 16,272-20,670 tokens.
    assert all(10_000 <= n <= LENGTH for n in plain), plain
    assert all(14_000 <= n <= 21_000 for n in kc), kc
    assert max(plain) <= LENGTH - 128  # the generation reserve is kept


def test_tokens_recorded_are_exact(synthesized, qwen_tokenizer):
    r = synthesized["hotpotqa"]["keychain"][0]
    msgs = [{"role": "system", "content": LOONGRL_SYSTEM_PROMPT}, {"role": "user", "content": r["user_prompt"]}]
    text = qwen_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert len(qwen_tokenizer(text)["input_ids"]) == r["prompt_tokens"]


def test_gold_documents_present_and_positions_vary(synthesized):
    for ds in synthesized:
        gold = {r["id"]: set(r["gold_titles"]) for r in synthesized[ds]["pool"]}
        for r in synthesized[ds]["plain"]:
            passages = re.split(r"(?:^|\n\n)Passage \d+:\n", r["context"])[1:]
            assert len(passages) == r["n_passages"]
            assert r["gold_positions"]
            for pos in r["gold_positions"]:
                assert passages[pos - 1].split("\n", 1)[0] in gold[r["id"]]
    positions = {tuple(r["gold_positions"]) for r in synthesized["hotpotqa"]["plain"]}
    assert len(positions) > 1, "random placement: gold passages are not at the same positions every time"


def test_own_documents_all_included(synthesized, raw_rows):
    for r in synthesized["musique"]["plain"]:
        src = next(x for x in raw_rows["musique"] if x["id"] == r["id"])
        for d in src["documents"]:
            assert f"{d['title']}\n{d['text']}" in r["context"]


SPLIT_NUMBER = re.compile(r'\d\. ?\{"[^{}]*\}\.\d')  # a pair inside "4.02"
AFTER_LABEL = re.compile(r'Passage \d+:\n\{"')  # a pair between "Passage N:" and its title


def test_no_pair_splits_a_number_or_a_passage_label_at_16k(synthesized):
    """keychain.insert_at: sentence_end (default) on the shipped samples at 16K: the official rule's two defects."""
    prompts = [r["user_prompt"] for ds in synthesized for r in synthesized[ds]["keychain"]]
    assert len(prompts) == 18
    assert not [m.group(0) for p in prompts for m in SPLIT_NUMBER.finditer(p)]
    assert not [m.group(0) for p in prompts for m in AFTER_LABEL.finditer(p)]
    # the official rule (any_stopper) offers both kinds of point on these very contexts; sentence_end offers neither
    contexts = [r["context"] for ds in synthesized for r in synthesized[ds]["plain"]]
    for rule, expect in (("any_stopper", True), ("sentence_end", False)):
        points = [(c, i) for c in contexts for i in insertion_points(c, rule)]
        in_number = [1 for c, i in points if c[i] == "." and c[i - 1 : i].isdigit() and c[i + 1 : i + 2].isdigit()]
        after_label = [1 for c, i in points if c[i] == "\n" and re.search(r"Passage \d+:$", c[:i][-16:])]
        assert bool(in_number) is expect and bool(after_label) is expect, rule


def test_sentence_end_points():
    ctx = "Passage 1:\nTitle\nIt cost 4.02 billion. Then? Yes!\nEnd"
    assert [ctx[i - 3 : i + 1] for i in insertion_points(ctx)] == ["tle\n", "ion.", "hen?", "Yes!", "es!\n"]
    assert {ctx[i] for i in insertion_points(ctx, "any_stopper")} == {"\n", ".", "?"}
    assert ctx.index("4.02") + 1 in insertion_points(ctx, "any_stopper")  # the dot of 4.02 (the official rule)
    assert ctx.index("4.02") + 1 not in insertion_points(ctx)
    with pytest.raises(ValueError, match="insert_at"):
        insertion_points(ctx, "anywhere")


def test_too_few_sentence_ends_names_the_row(synthesized, qwen_tokenizer):
    row = {**synthesized["hotpotqa"]["plain"][0], "context": "no sentence ends at all here"}
    with pytest.raises(ValueError, match=f"KeyChain row {row['id']} .*sentence/line ends"):
        build_keychain_rows([row], ["q1", "q2"], qwen_tokenizer, length=1024, system=None, seed=1, **CHAINS)


def test_insert_pairs_after_stoppers():
    ctx = "Alpha beta.\nGamma? Delta.\nEnd"
    out = insert_pairs(ctx, ['{"a": "b"}', '{"c": "d"}'], random.Random(0))
    for pair in ('{"a": "b"}.', '{"c": "d"}.'):
        i = out.index(pair)
        prev = out[i - 1] if out[i - 1] != " " else out[i - 2]
        assert prev in ".?\n"
    assert (
        out.replace(' {"a": "b"}.', "")
        .replace('{"a": "b"}.', "")
        .replace(' {"c": "d"}.', "")
        .replace('{"c": "d"}.', "")
        == ctx
    )


def test_insert_pairs_needs_enough_stoppers():
    with pytest.raises(ValueError, match="sentence/line ends"):
        insert_pairs("no stops here", ['{"a": "b"}'], random.Random(0))


def test_hex8_keys_unique_and_short():
    chains = make_chains(random.Random(1), 64, 4, "hex8")
    keys = [k for c in chains for k in c]
    assert len(set(keys)) == len(keys) and all(re.fullmatch(r"[0-9a-f]{8}", k) for k in keys)


def test_distractors_never_the_own_question():
    pool = sorted({"q1", "q2", "q3", "own"})
    for seed in range(50):
        picked = pick_distractors(random.Random(seed), "own", pool, 3)
        assert "own" not in picked and len(picked) == 3


def test_official_first_keys_reproduced():
    """With Python's random seeded 42, the paper-era code's first keys are the chain of paper Fig. 6."""
    chain = make_chains(random.Random(42), 1, 4, "uuid4")[0]
    assert chain[0] == "bdd640fb-0667-4ad1-9c80-317fa3b1799d"
    assert chain[1].startswith("23b8c1e9") and chain[2].startswith("bd9c66b3") and chain[3].startswith("972a8469")


def test_report_ranges(synthesized, capsys):
    """Prints the measured ranges (visible with -s); asserts the three datasets were all built."""
    lines = []
    for ds, d in synthesized.items():
        p = [r["prompt_tokens"] for r in d["plain"]]
        k = [r["prompt_tokens"] for r in d["keychain"]]
        lines.append(f"{ds}: plain {min(p)}-{max(p)}, keychain {min(k)}-{max(k)}")
    print("\n".join(lines))
    assert len(lines) == 3


def test_fidelity_table_ours_next_to_the_release(synthesized, qwen_tokenizer, tmp_path):
    """Our KeyChain and plain rows at 16K beside the authors' released row (the shipped official prompt, loaded by
    the released-data loader): prompt tokens, pairs, hops from the start key, answer words, answer in context."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import SAMPLES
    from loongrl.data import released

    prompt = json.loads((SAMPLES / "keychain/keychain_2wikimqa_distractor_row0_prompt.json").read_text())["prompt"]
    src = tmp_path / "theirs.parquet"
    row = {
        "data_source": "custom_longcontext_needle_qa_2wikimqa_x",
        "prompt": prompt,
        "reward_model": {"style": "rule", "ground_truth": ["Wedding Bills"]},
        "extra_info": {"index": 2500},
    }
    pq.write_table(pa.Table.from_pylist([row]), src)
    theirs = released.load_released(
        src, kind="keychain", dataset="2wikimqa", tokenizer=qwen_tokenizer, system=LOONGRL_SYSTEM_PROMPT
    )
    ours = synthesized["2wikimqa"]
    plain = [{**r, "user_prompt": None} for r in ours["plain"]]
    for r in plain:
        r["user_prompt"] = f"The following are given passages.\n{r['context']}\n\nQuestion: {r['question']}"
    table = released.fidelity_table(
        {
            ("ours", "keychain", "2wikimqa"): ours["keychain"],
            ("released", "keychain", "2wikimqa"): theirs,
            ("ours", "plain_qa", "2wikimqa"): plain,
        }
    )
    print(table)
    lines = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in table.splitlines()[2:]}
    mine, official = lines[("ours", "keychain", "2wikimqa")], lines[("released", "keychain", "2wikimqa")]
    prof = released.row_profile(theirs[0]["user_prompt"], theirs[0]["answers"], theirs[0]["prompt_tokens"])
    # 64 pairs (16 chains of 4), the true chain 4 hops from the start key; the gold answer is in the documents
    assert (prof["pairs"], prof["hops"], prof["answer_in_context"]) == (64, 4, True)
    assert all(released.row_profile(r["user_prompt"], r["answers"], 0)["hops"] == 4 for r in ours["keychain"])
    assert mine.split("|")[6:8] == official.split("|")[6:8] == [" 64 ", " 4 "]  # pairs and hops alike


# --- KeyChain over Book-RULER questions (the laptop source: SmolLM2 reads needles but cannot answer multi-hop QA) ---
SENTENCE_PAIR = re.compile(r"The key ([0-9a-f-]{36}) leads to: ([0-9a-f-]{36}|What is [^?]*\?)\.")
BOOK_NEEDLE = re.compile(r"One of the special magic numbers for ([0-9a-f-]{36}) is: (\d{7})\.")


@pytest.fixture(scope="module")
def book_haystack(qwen_tokenizer):
    from conftest import SAMPLES
    from loongrl.books import Haystack, load_books

    return Haystack(load_books([SAMPLES / "gutenberg"]), qwen_tokenizer)


def _follow(pairs: dict[str, str], start: str) -> tuple[list[str], str]:
    """Walk key -> value from the start key until a value is not a key; the keys walked and where it ended."""
    walked, cur = [start], pairs[start]
    while cur in pairs:
        walked.append(cur)
        cur = pairs[cur]
    return walked, cur


@pytest.mark.parametrize(("fmt", "pattern"), [("json", PAIR), ("sentence", SENTENCE_PAIR)])
@pytest.mark.parametrize(("hops", "chains"), [(1, 2), (4, 4)])
def test_book_keychain_chains_lead_to_needle_questions(book_haystack, qwen_tokenizer, fmt, pattern, hops, chains):
    from loongrl.data.keychain import build_book_keychain_rows

    rows = build_book_keychain_rows(
        book_haystack, qwen_tokenizer, examples=4, length=384, hops=hops, chains=chains, pair_format=fmt, seed=1
    )
    for r in rows:
        text = r["user_prompt"]
        pairs = dict(pattern.findall(text))
        assert len(pairs) == r["n_pairs"] == hops * chains
        needles = dict(BOOK_NEEDLE.findall(text))
        assert len(needles) == chains and len(set(needles.values())) == chains  # a wrong chain: another number
        walked, question = _follow(pairs, r["start_key"])
        assert walked == r["chains"][0] and len(walked) == hops and question == r["question"]
        (true_key,) = re.findall(r"for ([0-9a-f-]{36}) mentioned", question)
        assert needles[true_key] == r["answers"][0]
        for chain, q in zip(r["chains"][1:], r["distractor_questions"], strict=True):
            assert _follow(pairs, chain[0]) == (chain, q)
        (other_keys,) = [[k for k in needles if k != true_key]]
        assert sorted(needles[k] for k in other_keys) == sorted(r["distractor_answers"])
        assert f'starting from "{r["start_key"]}"' in text
        assert r["prompt_tokens"] > 384
    again = build_book_keychain_rows(
        book_haystack, qwen_tokenizer, examples=4, length=384, hops=hops, chains=chains, pair_format=fmt, seed=1
    )
    assert again == rows  # same seed, same rows


def test_book_keychain_true_needle_position_carries_no_signal(book_haystack, qwen_tokenizer):
    """The true needle is first in the text about as often as a distractor's is: a fixed order would let a model
    answer by position instead of by following the chain (the first ladder's rows always put it first)."""
    from loongrl.data.keychain import build_book_keychain_rows

    rows = build_book_keychain_rows(
        book_haystack, qwen_tokenizer, examples=64, length=384, hops=1, chains=2, seed=0, ending="paper"
    )
    first = sum(
        r["user_prompt"].find(r["answers"][0]) < r["user_prompt"].find(r["distractor_answers"][0]) for r in rows
    )
    assert 20 <= first <= 44, first  # 32 expected; binomial(64, 0.5) lies in [20, 44] with probability > 0.998


def test_book_keychain_rejects_unknown_pair_format_and_empty_chains(book_haystack, qwen_tokenizer):
    from loongrl.data.keychain import build_book_keychain_rows, pair_text

    with pytest.raises(ValueError, match="pair_format: 'yaml' is not one of"):
        pair_text("a", "b", "yaml")
    with pytest.raises(ValueError, match="hops >= 1 and chains >= 1"):
        build_book_keychain_rows(book_haystack, qwen_tokenizer, examples=1, length=384, hops=0, chains=2, seed=0)
    with pytest.raises(ValueError, match="unknown prompt ending 'cue'"):
        build_book_keychain_rows(
            book_haystack, qwen_tokenizer, examples=1, length=384, hops=1, chains=2, seed=0, ending="cue"
        )


def test_book_keychain_prompt_ending_changes_only_the_last_line(book_haystack, qwen_tokenizer):
    from loongrl.data.keychain import build_book_keychain_rows
    from loongrl.prompts import KEYCHAIN_ENDINGS

    kw = {"examples": 2, "length": 384, "hops": 1, "chains": 2, "seed": 3}
    paper = build_book_keychain_rows(book_haystack, qwen_tokenizer, **kw)
    answer = build_book_keychain_rows(book_haystack, qwen_tokenizer, ending="answer", **kw)
    for p, a in zip(paper, answer, strict=True):
        assert p["user_prompt"].endswith(KEYCHAIN_ENDINGS["paper"]) and a["user_prompt"].endswith("number it asks for.")
        head = p["user_prompt"].removesuffix(KEYCHAIN_ENDINGS["paper"])
        assert a["user_prompt"] == head + KEYCHAIN_ENDINGS["answer"]
        assert {k: v for k, v in p.items() if k not in ("user_prompt", "prompt_tokens")} == {
            k: v for k, v in a.items() if k not in ("user_prompt", "prompt_tokens")
        }


def test_ladder_picks_the_variant_closest_to_the_paper_inside_the_band():
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from keychain_ladder import pick, score

    v = [
        {"ending": "answer", "pair_format": "json", "hops": 4, "chains": 4, "accuracy": 0.05},  # too hard: no signal
        {"ending": "answer", "pair_format": "json", "hops": 2, "chains": 2, "accuracy": 0.30},
        {"ending": "answer", "pair_format": "sentence", "hops": 4, "chains": 4, "accuracy": 0.40},
        {"ending": "answer", "pair_format": "json", "hops": 1, "chains": 4, "accuracy": 0.70},
    ]
    assert pick(v) is v[1] and pick(v[:1]) is None
    paper = {"ending": "paper", "pair_format": "sentence", "hops": 1, "chains": 2, "accuracy": 0.20}
    assert pick([*v, paper]) is paper  # the paper's own prompt first, when it gives signal
    t, d = "11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-000000000000"
    row = {
        "answers": ["1234567"],
        "distractor_answers": ["7654321"],
        "chains": [["k1", "k2"]],
        "question": f"What is the special magic number for {t}?",
        "distractor_questions": [f"What is the special magic number for {d}?"],
    }
    assert score(row, f"k1 then k2: the question is about {t}; the number is 1234567, not 7654321") == {
        "correct": 1.0,
        "distractor": 0.0,
        "names_chain": 1.0,
        "true_question": 1.0,
        "distractor_question": 0.0,
        "consistent": 1.0,
    }
    # the wrong chain, then its own needle: a retrieval that works after a chain that was not followed
    wrong = score(row, f"The question is for {d}. It is 7654321.")
    assert wrong["distractor"] == 1.0 and wrong["distractor_question"] == 1.0 and wrong["consistent"] == 1.0
    assert score(row, "none")["correct"] == 0.0 and score(row, "none")["consistent"] == 0.0


def test_book_keychain_heldout_rows_share_nothing_with_training_rows(qwen_tokenizer):
    """KeyChain over Book-RULER questions, training rows from every book but the held-out one and held-out rows
    from it (the split retrieval.heldout_books makes): no held-out haystack sentence, UUID key, needle number or
    question occurs in a training row."""
    from conftest import SAMPLES
    from loongrl.books import Haystack, load_books
    from loongrl.data.keychain import build_book_keychain_rows
    from loongrl.data.retrieval import select_books

    books = load_books([SAMPLES / "gutenberg"])
    kw = {"length": 384, "hops": 2, "chains": 2, "ending": "answer"}
    train = build_book_keychain_rows(
        Haystack(select_books(books, exclude=["pg84.txt"]), qwen_tokenizer), qwen_tokenizer, examples=24, seed=42, **kw
    )
    held = build_book_keychain_rows(
        Haystack(select_books(books, only=["pg84.txt"]), qwen_tokenizer), qwen_tokenizer, examples=24, seed=43, **kw
    )
    assert {r["book"] for r in held} == {"pg84.txt"} and "pg84.txt" not in {r["book"] for r in train}
    train_text = "\n".join(r["user_prompt"] for r in train)
    for r in held:
        keys = [k for chain in r["chains"] for k in chain]
        assert not any(k in train_text for k in keys), r["id"]
        assert not any(v in train_text for v in [*r["answers"], *r["distractor_answers"]]), r["id"]
        assert not any(q in train_text for q in [r["question"], *r["distractor_questions"]]), r["id"]
        body = r["user_prompt"].split("\n", 1)[1].rsplit("\n\n", 1)[0]
        sentences = [x for x in body.split(". ") if len(x) > 80 and "{" not in x]
        assert sentences and not any(x in train_text for x in sentences), r["id"]


def test_book_keychain_direct_prompt_is_the_same_haystack_without_chains(book_haystack, qwen_tokenizer):
    """Table 4's arm without KeyChain: the same book stretch and needles, the true question asked directly (the
    Book-RULER multi-key prompt), no pairs; the answer prefix opens the KeyChain reply and is counted."""
    from loongrl.data.keychain import build_book_keychain_rows
    from loongrl.data.retrieval import HEAD
    from loongrl.prompts import KEYCHAIN_ANSWER_PREFIX

    kw = {"examples": 4, "length": 384, "hops": 2, "chains": 2, "seed": 5}
    rows = build_book_keychain_rows(book_haystack, qwen_tokenizer, prefill=KEYCHAIN_ANSWER_PREFIX, **kw)
    bare = build_book_keychain_rows(book_haystack, qwen_tokenizer, **kw)
    for r, b in zip(rows, bare, strict=True):
        direct = r["direct_prompt"]
        assert direct.startswith(HEAD) and direct.endswith("\n" + r["question"])
        assert PAIR.findall(direct) == [] and not any(k in direct for chain in r["chains"] for k in chain)
        assert dict(BOOK_NEEDLE.findall(direct)) == dict(BOOK_NEEDLE.findall(r["user_prompt"]))
        hay = direct.removeprefix(HEAD).rsplit("\n", 1)[0]
        # the KeyChain context is this haystack with pairs put between its sentences
        assert PAIR.sub("", r["user_prompt"]).replace(" .", "").count(hay[:200]) == 1
        assert r["prefill"] == KEYCHAIN_ANSWER_PREFIX and b["prefill"] is None
        assert r["prompt_tokens"] > b["prompt_tokens"] and r["direct_prompt"] == b["direct_prompt"]
        assert 0 < r["direct_prompt_tokens"] < r["prompt_tokens"]


def test_book_keychain_cli_builds_training_and_heldout_slices(tiny_model_dir, tmp_path):
    """``python -m loongrl.data.keychain books``: the training books (held-out one excluded) or only the held-out
    one, with the config's keychain.books settings; the QA form of the CLI is unchanged."""
    import pyarrow.parquet as pq
    from conftest import SAMPLES
    from loongrl.config import fill_defaults
    from loongrl.data.keychain import main

    params = json.dumps(fill_defaults({"keychain": {}})["keychain"]["books"])
    common = ["--books-dir", str(SAMPLES / "gutenberg"), "--tokenizer", str(tiny_model_dir), "--length", "384"]
    common += ["--params", params, "--system-prompt", "none"]
    train, held = tmp_path / "train.parquet", tmp_path / "held.parquet"
    main(
        [
            "books",
            *common,
            "--examples",
            "6",
            "--seed",
            "42",
            "--exclude-books",
            "pg84.txt",
            "--output",
            str(train),
            "--stats",
            str(tmp_path / "train.json"),
        ]
    )
    main(
        [
            "books",
            *common,
            "--examples",
            "3",
            "--seed",
            "43",
            "--only-books",
            "pg84.txt",
            "--output",
            str(held),
            "--stats",
            str(tmp_path / "held.json"),
        ]
    )
    t, h = pq.read_table(train).to_pylist(), pq.read_table(held).to_pylist()
    assert len(t) == 6 and len(h) == 3
    assert {r["book"] for r in h} == {"pg84.txt"} and "pg84.txt" not in {r["book"] for r in t}
    assert all(r["prefill"] for r in t) and all(len(r["chains"]) == 2 and len(r["chains"][0]) == 4 for r in t)
    stats = json.loads((tmp_path / "train.json").read_text())
    assert stats["examples"] == 6 and stats["pair_format"] == "json" and stats["direct"]["prompt_tokens_max"]
