"""check_inputs: the filter-independent counts on the real inputs, and the filter's projected work."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT, SAMPLES
from loongrl.data.check_inputs import check_inputs, filter_work
from loongrl.io import write_parquet
from loongrl.schemas import RAW_SCHEMA


def _inputs(tmp_path, raw_rows, n_math=40):
    from loongrl.data.math_data import MATH_SCHEMA, dapo_rows, load_records, mathqa_rows

    raw = {}
    for ds, rows in raw_rows.items():
        raw[ds] = tmp_path / f"{ds}.parquet"
        write_parquet(rows[:20], raw[ds], RAW_SCHEMA)
    dapo = dapo_rows(load_records(SAMPLES / "dapo_math_17k/dapo_math_17k.sample.parquet"), "d")[:n_math]
    choice = mathqa_rows(load_records(SAMPLES / "mathqa/test.sample.json"), "m")[:n_math]
    math = {"dapo_math": tmp_path / "dapo.parquet", "math_choice": tmp_path / "choice.parquet"}
    write_parquet(dapo, math["dapo_math"], MATH_SCHEMA)
    write_parquet(choice, math["math_choice"], MATH_SCHEMA)
    return raw, math


def _config():
    from loongrl.pipeline import load_config

    return load_config(ROOT / "config.yaml", ROOT / "profiles/local/config.tiny.yaml")


def test_check_inputs_reports_work_and_haystack(tmp_path, raw_rows, qwen_tokenizer):
    raw, math = _inputs(tmp_path, raw_rows)
    cfg = _config()
    report = check_inputs(raw=raw, math=math, books_dir=SAMPLES / "gutenberg", tokenizer=qwen_tokenizer, config=cfg)
    work = report["filter_work"]
    assert work["questions"] == 60 and work["samples"] == 60 * cfg["filter"]["n"]
    assert work["max_generated_tokens"] == 60 * cfg["filter"]["n"] * cfg["filter"]["max_new_tokens"]
    assert work["jobs"] == 3 * cfg["filter"]["shards"]
    assert report["haystack"]["books"] == 3 and report["haystack"]["tokens"] > 100_000


def test_check_inputs_names_every_shortfall(tmp_path, raw_rows, qwen_tokenizer):
    raw, math = _inputs(tmp_path, raw_rows, n_math=5)
    cfg = copy.deepcopy(_config())
    cfg["split"]["plain_questions"] = 15  # 15 + 8 > the 20 questions given
    with pytest.raises(ValueError) as err:
        check_inputs(raw=raw, math=math, books_dir=None, tokenizer=qwen_tokenizer, config=cfg)
    msg = str(err.value)
    assert "hotpotqa.parquet: 20 questions" in msg and "= 23" in msg
    assert "dapo.parquet: 5 rows" in msg and "mixture.counts.dapo_math = 16" in msg


def test_paper_filter_work_projection():
    """budget all (the paper's exact procedure) samples 2.22 M answers; the sized filter's round 1 samples 0.43 M
    for the split's 5,000 questions per dataset at the official pools' keep rates."""
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    sizes = {"hotpotqa": 90_447, "musique": 19_938, "2wikimqa": 167_454}
    work = filter_work(sizes, {**paper["filter"], "budget": "all"})
    assert work["jobs"] == 24 and work["samples"] == 8 * 277_839
    assert work["max_generated_tokens"] == 8 * 277_839 * 2048
    assert work["by_dataset"]["2wikimqa"]["questions_per_shard"] == 20_932
    need = paper["split"]["plain_questions"] + paper["split"]["keychain_questions"]
    sized = filter_work(sizes, paper["filter"], need=need)
    assert sized["budget"] == "auto" and need == 5000
    # ceil(5000 / rate x 1.05 / 1024) chunks: 19 (0.27), 12 (0.43), 22 (0.24)
    assert {d: w["round1_jobs"] for d, w in sized["by_dataset"].items()} == {
        "hotpotqa": 19,
        "musique": 12,
        "2wikimqa": 22,
    }
    assert sized["jobs"] == 53 and sized["samples"] == 8 * 53 * 1024 == 434_176 <= 450_000
