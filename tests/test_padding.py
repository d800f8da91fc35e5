"""Micro-batches computed without their all-pad columns (``loongrl.train.grpo.padding_trimmed``): the same
log-probs and loss as TRL's padded computation, on fewer tokens; and the padding that TRL's batching costs on the
paper's mixture (benchmarks/padding.py)."""

from __future__ import annotations

import sys

import pytest
import torch
import yaml
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check
import padding


def test_pad_columns_finds_the_columns_every_row_pads():
    from loongrl.train.grpo import pad_columns

    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 0]])
    assert pad_columns(mask, logits_to_keep=3) == (1, 1)
    assert pad_columns(torch.ones(2, 5, dtype=torch.long), logits_to_keep=2) == (0, 0)
    # never into the completion region from the left, and one completion column always kept
    assert pad_columns(torch.tensor([[0, 0, 0, 0, 1]]), logits_to_keep=3) == (2, 0)
    assert pad_columns(torch.tensor([[1, 0, 0, 0, 0]]), logits_to_keep=3) == (0, 2)


def test_trimmed_micro_batch_gives_trls_log_probs_and_loss(tmp_path):
    """A micro-batch padded 48 columns on the left and 8 on the right (as beside longer rows of its generation
    batch): per-token log-probs at every completion position, the loss and the gradient equal TRL's padded
    computation (fp32; positions shift, RoPE keeps relative ones), and the computed share is logged."""
    from loongrl.models import build_qwen25_tokenizer
    from loongrl.train.grpo import padding_trimmed
    from trl import GRPOTrainer

    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    shape = gpu_check.CPU_SCALE.shape
    tok = build_qwen25_tokenizer(tmp_path / "tok")
    inputs = gpu_check.loss_inputs(
        batch=2, prompt=24, completion=8, vocab=shape["vocab_size"], beta=train["beta"], device="cpu", pad=(48, 8)
    )
    got = {}
    for name, cls in (("plain", GRPOTrainer), ("trimmed", padding_trimmed(GRPOTrainer))):
        model = gpu_check.slice_model(shape, 2, "cpu", dtype="float32")
        trainer = gpu_check.grpo_loss_trainer(
            model, tok, train, device="cpu", work=tmp_path / name, trainer_cls=cls, bf16=False
        )
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 16, batch_size=2)
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        got[name] = (logps[:, :8], float(loss), grad, trainer._metrics["train"].get("padding/computed_share"))
    (lp_a, loss_a, g_a, share_a), (lp_b, loss_b, g_b, share_b) = got["plain"], got["trimmed"]
    assert lp_a.shape == lp_b.shape == (2, 8)
    assert torch.allclose(lp_a, lp_b, atol=1e-4), (lp_a - lp_b).abs().max()
    assert lp_a.std() > 1e-3  # distinct log-probs: a one-column misalignment would show
    assert loss_b == pytest.approx(loss_a, rel=1e-4, abs=1e-6)
    assert torch.nn.functional.cosine_similarity(g_a, g_b, dim=0) > 0.9999
    assert not share_a and share_b and share_b[-1] == pytest.approx(2 * 32 / (2 * 88))  # 32 of 88 columns used


def test_dry_count_of_trls_padding_on_the_paper_mixture():
    """On the paper's length ranges, TRL computes a third or more of a step on padding; with per_device_batch 1
    the trimmed micro-batches compute exactly the real tokens."""
    counts = yaml.safe_load((ROOT / "config.yaml").read_text())["mixture"]["counts"]
    rows = {(r["completions"], r["per_device_batch"]): r for r in padding.dry_count(counts, steps=4)}
    assert rows[("cap", 1)]["real_share_of_padded"] < 0.75 and rows[("uniform", 1)]["real_share_of_padded"] < 0.7
    assert rows[("cap", 1)]["real_share_of_trimmed"] == 1.0 and rows[("uniform", 1)]["real_share_of_trimmed"] == 1.0
    assert rows[("cap", 2)]["real_share_of_padded"] < rows[("cap", 2)]["real_share_of_trimmed"] < 1.0
