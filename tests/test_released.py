"""The authors' released QA data as a mixture source: files written in the release's verl schema from the shipped
official KeyChain prompt, malformed rows, the mixture built from them, and a DAG that filters and synthesises
nothing for the QA part."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLES
from loongrl.data import released
from loongrl.data.mixture import build_mixture
from loongrl.io import DataError
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT, count_prompt_tokens, messages

KC_PROMPT = json.loads((SAMPLES / "keychain/keychain_2wikimqa_distractor_row0_prompt.json").read_text())["prompt"]


def verl_row(i: int, *, content: str, answers, source: str) -> dict:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": content}],
        "ability": "longcontext_qa",
        "reward_model": {"style": "rule", "ground_truth": answers},
        "extra_info": {"split": "train", "index": 2500 + i, "input_question": "q"},
    }


def write_release(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


KC_SOURCE = "custom_longcontext_needle_qa_2wikimqa_qwen_filtered-max_seq_16384-distractor"


def test_released_keychain_rows_load_with_our_system_prompt(tmp_path, qwen_tokenizer):
    content = KC_PROMPT[0]["content"]
    src = write_release(
        tmp_path / "kc.parquet",
        [verl_row(i, content=content, answers=["Wedding Bills"], source=KC_SOURCE) for i in range(3)],
    )
    rows = released.load_released(
        src, kind="keychain", dataset="2wikimqa", tokenizer=qwen_tokenizer, system=LOONGRL_SYSTEM_PROMPT
    )
    assert [r["id"] for r in rows] == ["released-2500", "released-2501", "released-2502"]
    assert rows[0]["answers"] == ["Wedding Bills"] and rows[0]["user_prompt"] == content
    assert rows[0]["prompt_tokens"] == count_prompt_tokens(qwen_tokenizer, messages(content, LOONGRL_SYSTEM_PROMPT))
    assert 14_000 < rows[0]["prompt_tokens"] < 22_528  # the release's KeyChain prompts: ~15-20.7K tokens
    # the mixture takes them as our own KeyChain rows: reward family keychain, the system prompt added
    counts = {
        "keychain": {"2wikimqa": 2},
        "plain_qa": {},
        **dict.fromkeys(["retrieval_multikey", "retrieval_multivalue", "dapo_math", "math_choice"], 0),
    }
    inputs = {"keychain": {"2wikimqa": rows}, "plain_qa": {}, "retrieval": [], "dapo_math": [], "math_choice": []}
    mix = build_mixture(
        inputs, counts=counts, exclude=[], system=LOONGRL_SYSTEM_PROMPT, tokenizer=qwen_tokenizer, seed=1
    )
    assert len(mix) == 2 and {r["data_source"] for r in mix} == {"keychain_2wikimqa"}
    assert all(r["prompt"][0] == {"role": "system", "content": LOONGRL_SYSTEM_PROMPT} for r in mix)
    assert all(r["prompt"][1]["content"] == content for r in mix)


def test_released_plain_rows_and_ground_truth_string(tmp_path, qwen_tokenizer):
    content = "The following are given passages.\nPassage 1:\nOslo\nOslo is a city.\n\nQuestion: Which city?"
    src = write_release(
        tmp_path / "plain.parquet",
        [verl_row(0, content=content, answers="Oslo", source="custom_longcontextqa_hotpotqa_qwen_filtered")],
    )
    rows = released.load_released(src, kind="plain_qa", dataset="hotpotqa", tokenizer=qwen_tokenizer, system=None)
    assert rows[0]["answers"] == ["Oslo"] and rows[0]["user_prompt"] == content


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r.update(data_source="custom_longcontextqa_x"), "data_source"),  # a plain row in a KeyChain file
        (lambda r: r.update(prompt=[{"role": "system", "content": "s"}, *r["prompt"]]), "prompt"),
        (lambda r: r["prompt"][0].update(role="assistant"), r"prompt\[0\]"),
        (lambda r: r["prompt"][0].update(content="Answer this."), r"prompt\[0\]\.content"),
        (lambda r: r["reward_model"].update(ground_truth=[]), r"reward_model\.ground_truth"),
        (lambda r: r["reward_model"].update(ground_truth=["", "x"]), r"reward_model\.ground_truth"),
    ],
)
def test_malformed_released_rows_name_file_row_and_field(tmp_path, qwen_tokenizer, edit, field):
    good = [verl_row(i, content=KC_PROMPT[0]["content"][:2000], answers=["a"], source=KC_SOURCE) for i in range(3)]
    edit(good[1])
    src = write_release(tmp_path / "bad.parquet", good)
    with pytest.raises(DataError, match=rf"{src}: row 1: field '{field}'"):
        released.load_released(src, kind="keychain", dataset="2wikimqa", tokenizer=qwen_tokenizer, system=None)


def test_released_source_runs_no_filter_and_no_synthesis(tmp_path):
    """The paper config with mixture.qa_source: released: six downloads and loads, no filter, fill or KeyChain job,
    and the mixtures, training and eval as before."""
    from conftest import snakemake
    from test_workflow import job_counts

    overlay = tmp_path / "released.yaml"
    overlay.write_text("mixture: {qa_source: released}\n")
    out = snakemake("-n", "-p", "--configfile", str(ROOT / "config.yaml"), str(overlay))
    counts = job_counts(out.stdout)
    assert counts["download_released"] == 6 and counts["released_qa"] == 6
    assert not {"filter_source", "filter_round", "fill_context", "insert_keychain", "split"} & set(counts)
    assert counts["build_mixture"] == 2 and counts["train_stage"] == 3
    assert "OldKingMeister/LoongRL-Train-Data/resolve/main/hotpotqa_distractor_2500_5000/" in out.stdout
