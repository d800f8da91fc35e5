from __future__ import annotations

import pytest
from loongrl.answers import contains_match, extract_answer_is, normalize_answer
from loongrl.data.filter_source import filter_prompt, run_filter, score_samples
from loongrl.data.split import keep_mask, split_pools
from loongrl.inference import SamplingParams, make_backend


def test_squad_normalisation_and_matching():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert extract_answer_is("blah. The answer is: Paris.") == "Paris."
    assert extract_answer_is("no phrase") is None
    assert contains_match("Paris", ["paris, france"], "cem")
    assert not contains_match("Paris, France", ["Paris"], "cem")  # one-way: prediction inside gold
    assert contains_match("Paris, France", ["Paris"], "two_way")
    assert not contains_match("", ["Paris"], "two_way")  # empty answers never match
    assert not contains_match("  the ", ["Paris"], "two_way")


def test_score_samples_counts_correct():
    row = {"id": "q", "dataset": "hotpotqa", "answers": ["Ed Wood", "Edward Wood"]}
    comps = ["The answer is Ed Wood", "the answer is edward wood.", "The answer is Tim Burton", "no answer"]
    s = score_samples(row, comps, "m", "cem")
    assert (s["n"], s["correct"], s["pass_rate"]) == (4, 2, 0.5)
    assert s["predictions"][3] is None


def test_filter_prompt_is_the_official_one(raw_rows):
    row = raw_rows["hotpotqa"][0]
    content = filter_prompt(row)[0]["content"]
    assert content.startswith("The following are given passages.\n" + row["documents"][0]["title"] + "\n")
    assert "output the final answer in the format of 'The answer is <your answer here>'" in content
    assert content.endswith("Question: " + row["question"])


class _Echo:
    """Answers every prompt with a gold answer for even-numbered calls; counts calls for the resume check."""

    def __init__(self):
        self.prompts = 0

    def generate(self, prompts, params):
        self.prompts += len(prompts)
        return [["The answer is " + p[0]["content"].rsplit("Question: ", 1)[1]] * params.n for p in prompts]


def test_run_filter_resumes_from_cached_chunks(tmp_path, raw_rows):
    rows = raw_rows["2wikimqa"][:10]
    params = SamplingParams(n=2, max_new_tokens=4)
    first = _Echo()
    out1 = run_filter(rows, first, params, "m", match="two_way", work_dir=tmp_path, chunk_size=4)
    assert first.prompts == 10
    second = _Echo()
    out2 = run_filter(rows, second, params, "m", match="two_way", work_dir=tmp_path, chunk_size=4)
    assert second.prompts == 0 and out1 == out2
    # a changed setting must not reuse the cache
    third = _Echo()
    run_filter(
        rows, third, SamplingParams(n=3, max_new_tokens=4), "m", match="two_way", work_dir=tmp_path, chunk_size=4
    )
    assert third.prompts == 10


def test_transformers_backend_samples_n_per_prompt(tiny_model_dir, raw_rows):
    backend = make_backend("transformers", tiny_model_dir, device="cpu", batch_size=2)
    prompts = [filter_prompt(r) for r in raw_rows["hotpotqa"][:2]]
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=4, seed=7)
    a = backend.generate(prompts, params)
    b = backend.generate(prompts, params)
    assert [len(x) for x in a] == [3, 3]
    assert a == b, "same seed -> same samples"
    assert len(set(a[0])) > 1, "sampling gives different completions within a group"


def test_keep_band_and_fallback():
    passes = {q: {"correct": c, "n": 8} for q, c in {"a": 0, "b": 1, "c": 7, "d": 8, "e": 0}.items()}
    assert keep_mask(passes, 1, 7) == {"a": False, "b": True, "c": True, "d": False, "e": False}
    assert keep_mask(passes, 1, 6)["c"] is False  # the official code's band
    fb = {"a": {"correct": 3, "n": 8}, "e": {"correct": 8, "n": 8}}
    kept = keep_mask(passes, 1, 6, fb)
    assert kept["a"] is True and kept["e"] is False


def test_split_pools_disjoint_and_in_file_order():
    rows = [{"id": str(i)} for i in range(10)]
    kept = {str(i): i % 3 != 0 for i in range(10)}
    plain, kc, dropped = split_pools(rows, kept, plain_n=3, keychain_n=2, dataset="x")
    assert [r["id"] for r in plain] == ["1", "2", "4"] and [r["id"] for r in kc] == ["5", "7"]
    assert {r["id"] for r in dropped} == {"0", "3", "6", "9"}
    with pytest.raises(ValueError, match="kept 6 of 10"):
        split_pools(rows, kept, plain_n=5, keychain_n=5, dataset="x")
