from __future__ import annotations

import json

import pytest
from loongrl.answers import contains_match, extract_answer_is, normalize_answer
from loongrl.data.filter_source import filter_prompt, run_filter, score_samples
from loongrl.data.split import keep_mask, split_pools
from loongrl.inference import SamplingParams, make_backend
from loongrl.io import read_parquet


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

    def generate(self, prompts, params, seeds=None):
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


def test_transformers_backend_prefills_a_prompt_once_for_its_samples(tiny_model_dir, raw_rows, monkeypatch):
    """n samples of a prompt share one prefill (the last chunk takes the cache, earlier ones a copy), and draw the
    samples the unshared path draws: the same seeded (k, vocab) distributions in the same order."""
    backend = make_backend("transformers", tiny_model_dir, device="cpu", batch_size=2)
    prompts = [filter_prompt(r) for r in raw_rows["hotpotqa"][:2]]
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=3)
    calls, head_positions = [], []
    prefill = backend._prefill
    monkeypatch.setattr(backend, "_prefill", lambda ids: calls.append(ids.shape) or prefill(ids))
    head = backend.model.get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, _i, out: head_positions.append(out.shape[1]))
    shared = backend.generate_detailed(prompts, params)
    hook.remove()
    assert len(calls) == 2 and all(shape[1] > 100 for shape in calls), "one prefill a prompt, not one a sample"
    assert max(head_positions) == 1, "the prefill computes the LM head at one position, not at every prompt token"
    monkeypatch.setattr(backend, "_prefill", lambda ids: None)
    assert backend.generate_detailed(prompts, params) == shared
    assert backend.generate(prompts, SamplingParams(n=1, max_new_tokens=4, temperature=0))[0][0]


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


class _Recording:
    """A real backend that records every completion by question id (to compare runs sample by sample)."""

    def __init__(self, backend):
        self.backend, self.texts = backend, {}

    def generate(self, prompts, params, seeds=None):
        out = self.backend.generate(prompts, params, seeds)
        for p, comps in zip(prompts, out, strict=True):
            self.texts[p[0]["content"]] = comps
        return out


def test_sharded_filter_equals_one_job(tiny_model_dir, raw_rows, tmp_path):
    """3 shards + gather give byte-identical pass counts to 1 shard, and every question the same samples."""
    import json

    from loongrl.data import filter_source
    from loongrl.io import write_parquet
    from loongrl.schemas import RAW_SCHEMA

    raw = tmp_path / "raw.parquet"
    write_parquet(raw_rows["musique"][:7], raw, RAW_SCHEMA)
    cfg = {
        "backend": "transformers",
        "n": 3,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 6,
        "batch_size": 2,
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "max_model_len": None,
        "enforce_eager": False,
        "match": "two_way",
    }
    common = ["--input", str(raw), "--model", str(tiny_model_dir), "--model-name", "tiny", "--params", json.dumps(cfg)]
    filter_source.main(["run", *common, "--output", str(tmp_path / "one.parquet")])
    shards = [tmp_path / f"s{k}.parquet" for k in range(3)]
    for k, out in enumerate(shards):
        filter_source.main(["run", *common, "--shard", str(k), "--shards", "3", "--output", str(out)])
    filter_source.main(["gather", *map(str, shards), "--output", str(tmp_path / "three.parquet")])
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "three.parquet").read_bytes()
    assert [len(read_parquet(s)) for s in shards] == [2, 2, 3]

    # the samples themselves: per-id seeds make each question's completions independent of its shard and batch
    rows = raw_rows["musique"][:7]
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=4)
    backend = make_backend("transformers", tiny_model_dir, device="cpu", batch_size=2)
    whole, parts = _Recording(backend), _Recording(backend)
    run_filter(rows, whole, params, "tiny", chunk_size=512)
    for block in (rows[:2], rows[2:4], rows[4:]):
        run_filter(block, parts, params, "tiny", chunk_size=1)
    assert whole.texts == parts.texts
    assert len({tuple(c) for c in whole.texts.values()}) > 1  # not a degenerate constant model
    with pytest.raises(ValueError, match="in both"):
        filter_source.gather([shards[0], shards[0]], tmp_path / "dup.parquet")


def test_sized_filter_rounds_top_up_and_exhaustion(tmp_path):
    """Round 1 from need / keep rate x margin; a round that keeps too few adds chunks sized from the observed rate;
    a dataset that runs out first is an error naming it, the need and what was kept."""
    from loongrl.data.filter_source import PASS_SCHEMA, filter_round, first_round, next_round
    from loongrl.io import DataError, write_parquet

    assert first_round(5000, 0.27, 1.05, 1024) == 19 and first_round(4, 0.5, 1.0, 4) == 2
    plan = {"need": 6, "keep_rate": 0.5, "margin": 1.0, "chunk_size": 4, "keep_min": 1, "keep_max": 3}

    def chunk(c, correct):
        p = tmp_path / f"c{c}.parquet"
        rows = [
            {
                "id": f"{c}-{i}",
                "dataset": "d",
                "model": "m",
                "n": 4,
                "correct": k,
                "pass_rate": k / 4,
                "predictions": [],
            }
            for i, k in enumerate(correct)
        ]
        write_parquet(rows, p, PASS_SCHEMA)
        return p

    # round 1: 3 chunks (6 / 0.5 / 4); only 3 of 12 kept (observed rate 0.25) -> 3 more needed -> 3 more chunks
    files = [chunk(0, [0, 4, 2, 0]), chunk(1, [4, 4, 1, 0]), chunk(2, [0, 0, 0, 3])]
    r1 = filter_round(files, dataset="d", plan=plan, round_no=1, output=tmp_path / "r1.json")
    assert (r1["kept"], r1["scored"], r1["done"], r1["next_end"]) == (3, 12, False, 6)
    # round 2 meets the need: done, no further chunk
    files += [chunk(3, [1, 1, 0, 0]), chunk(4, [2, 0, 0, 0]), chunk(5, [0, 0, 0, 0])]
    r2 = filter_round(files, dataset="d", plan=plan, round_no=2, output=tmp_path / "r2.json")
    assert (r2["kept"], r2["done"]) == (6, True)
    # the dataset ran out (a short last chunk) with 5 kept of 8 needed
    short = [*files[:5], chunk(5, [0, 0])]
    with pytest.raises(
        DataError, match=r"filter: d: the split needs 8 questions in the keep band \[1, 3\], but all 22"
    ):
        filter_round(short, dataset="d", plan={**plan, "need": 8}, round_no=2, output=tmp_path / "r3.json")
    assert not (tmp_path / "r3.json").exists()
    assert (
        next_round({"kept": 0, "scored": 8, "end": 2}, need=4, keep_rate=0.5, margin=1.0, chunk_size=4)["next_end"] == 4
    )


def test_sized_filter_chunks_equal_one_run(tmp_path, tiny_model_dir, raw_rows):
    """Chunks of the seeded order give the same pass rows as filtering those questions in one job (per-id seeds),
    and the same seed gives the same chunks and bytes."""
    from loongrl.data import filter_source
    from loongrl.io import read_parquet, write_parquet
    from loongrl.schemas import RAW_SCHEMA

    raw = tmp_path / "raw.parquet"
    write_parquet(raw_rows["hotpotqa"][:10], raw, RAW_SCHEMA)
    params = json.dumps(
        {
            "backend": "transformers",
            "n": 2,
            "temperature": 1.0,
            "top_p": 1.0,
            "max_new_tokens": 4,
            "batch_size": 4,
            "tensor_parallel_size": 1,
            "gpu_memory_utilization": 0.9,
            "max_model_len": None,
            "enforce_eager": False,
            "match": "cem",
        }
    )
    common = [
        "run",
        "--input",
        str(raw),
        "--model",
        str(tiny_model_dir),
        "--model-name",
        "tiny",
        "--params",
        params,
        "--seed",
        "7",
    ]
    outs = []
    for c in range(3):
        out = tmp_path / f"chunk{c}.parquet"
        filter_source.main([*common, "--chunk", str(c), "--chunk-size", "4", "--output", str(out)])
        outs.append(out)
    whole = tmp_path / "whole.parquet"
    filter_source.main([*common, "--output", str(whole)])
    chunks = [r for p in outs for r in read_parquet(p)]
    assert len(chunks) == 10 and [len(read_parquet(p)) for p in outs] == [4, 4, 2]
    by_id = {r["id"]: r for r in read_parquet(whole)}
    assert all(r == by_id[r["id"]] for r in chunks)
    again = tmp_path / "again.parquet"
    filter_source.main([*common, "--chunk", "1", "--chunk-size", "4", "--output", str(again)])
    assert again.read_bytes() == outs[1].read_bytes()
    order = [r["id"] for r in filter_source.seeded_order(raw_rows["hotpotqa"][:10], 7)]
    assert [r["id"] for r in chunks] == order and order != [r["id"] for r in raw_rows["hotpotqa"][:10]]
