"""Memory preflight for a GPU training stage: will one device hold it?

GRPO at LoongRL's lengths (a ~20K-token prompt plus 4K of completion per sequence) runs out of memory in ways that
show only after the job has waited for its GPUs: TRL #4585 is an OOM at 20K tokens from the logits tensor. This
estimate adds up, per device:

* weights, gradients and AdamW state (fp32 master + two moments), divided over the ranks by the ZeRO stage;
* ZeRO-3's working set: the largest layer gathered whole (the embedding, and the LM head when untied);
* activations: with gradient checkpointing, every layer's bf16 input (2·s·h bytes per layer) plus one layer
  recomputed in full (~34·s·h bytes, Korthikanti et al. 2022, attention scores excluded as flash attention does);
  without it, every layer in full;
* the logits of the completion positions in fp32 and their log-softmax (TRL keeps only those positions);
* vLLM's colocated share (``vllm_gpu_memory_utilization`` of the device) and a fixed framework overhead.

It is an estimate, meant to catch settings that cannot fit (8 sequences of 26K tokens per device), not to shave
the last GiB; the failure message names the key to change and the largest micro-batch that fits.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loongrl.cli import setup_logging
from loongrl.io import write_json

log = logging.getLogger(__name__)

GIB = 1024**3
OVERHEAD_GIB = 3.0  # CUDA context, NCCL buffers, allocator fragmentation


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder-only transformer (read from its config.json)."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelShape:
        return cls(
            layers=cfg["num_hidden_layers"],
            hidden=cfg["hidden_size"],
            intermediate=cfg["intermediate_size"],
            vocab=cfg["vocab_size"],
            heads=cfg["num_attention_heads"],
            kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            tied=bool(cfg.get("tie_word_embeddings", False)),
        )

    @property
    def embedding(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head_dim = self.hidden // self.heads
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        mlp = 3 * self.hidden * self.intermediate
        per_layer = attn + mlp + 2 * self.hidden
        return self.embedding * (1 if self.tied else 2) + self.layers * per_layer + self.hidden


def estimate(
    shape: ModelShape,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    per_device_batch: int,
    world_size: int,
    zero_stage: int = 3,
    gradient_checkpointing: bool = True,
    vllm_fraction: float = 0.0,
    gpu_gib: float = 80.0,
) -> dict[str, float]:
    """GiB per device for each part, and ``total``."""
    p, s, b, h = shape.params, prompt_tokens + completion_tokens, per_device_batch, shape.hidden
    shard = max(world_size, 1)
    parts = {
        "weights": 2 * p / (shard if zero_stage >= 3 else 1),
        "gradients": 2 * p / (shard if zero_stage >= 2 else 1),
        "optimizer": 12 * p / (shard if zero_stage >= 1 else 1),
        "zero3_gathered": 2 * shape.embedding * (1 if shape.tied else 2) if zero_stage >= 3 else 0,
        "activations": b * s * h * (2 * shape.layers + 34 if gradient_checkpointing else 34 * shape.layers),
        "logits": b * completion_tokens * shape.vocab * 4 * 2,
    }
    out = {k: v / GIB for k, v in parts.items()}
    out["vllm"] = vllm_fraction * gpu_gib
    out["overhead"] = OVERHEAD_GIB
    out["total"] = sum(out.values())
    return out


def largest_batch(shape: ModelShape, gpu_gib: float, *, divides: int | None = None, **kwargs: Any) -> int:
    """The largest per-device micro-batch whose estimate fits (0 if not even one sequence does).

    With ``divides`` (completions per optimizer step / ranks) only batches that divide it count, so the answer is
    one the gradient-accumulation check accepts.
    """
    best, b = 0, 1
    while b <= 256 and estimate(shape, per_device_batch=b, gpu_gib=gpu_gib, **kwargs)["total"] <= gpu_gib:
        if divides is None or divides % b == 0:
            best = b
        b += 1
    return best


def check(
    shape: ModelShape, train: dict[str, Any], *, prompt_tokens: int, zero_stage: int = 3
) -> tuple[dict[str, float], list[str]]:
    """The estimate for a ``train`` config section, and what to change when it does not fit."""
    gpu_gib = train["gpu_memory_gib"]
    kwargs = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": train["max_completion_length"],
        "world_size": train["gpus"] * train["nodes"],
        "zero_stage": zero_stage,
        "gradient_checkpointing": train["gradient_checkpointing"],
        "vllm_fraction": train["vllm_gpu_memory_utilization"]
        if train["generation"] == "vllm" and train["vllm_mode"] == "colocate"
        else 0.0,
    }
    est = estimate(shape, per_device_batch=train["per_device_batch"], gpu_gib=gpu_gib, **kwargs)
    problems = []
    if est["total"] > gpu_gib:
        per_rank = train["prompts_per_step"] * train["num_generations"] // max(1, kwargs["world_size"])
        fits = largest_batch(shape, gpu_gib, divides=per_rank, **kwargs)
        parts = ", ".join(f"{k} {v:.1f}" for k, v in est.items() if k != "total")
        hint = (
            f"lower train.per_device_batch to {fits} (train.prompts_per_step is kept by gradient accumulation)"
            if fits
            else "not even one sequence fits: enable train.gradient_checkpointing, add GPUs (train.gpus/nodes), "
            "lower train.vllm_gpu_memory_utilization or mixture.max_prompt_tokens"
        )
        problems.append(
            f"config key 'train.per_device_batch': {train['per_device_batch']} sequences of "
            f"{prompt_tokens} + {train['max_completion_length']} tokens need ~{est['total']:.1f} GiB per GPU "
            f"({parts}), more than train.gpu_memory_gib = {gpu_gib}; {hint}"
        )
    return est, problems


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.train.memory", description=__doc__)
    ap.add_argument("--model", type=Path, required=True, help="the policy's HF folder (its config.json)")
    ap.add_argument("--params", required=True, help="JSON of the config's train section")
    ap.add_argument("--prompt-tokens", type=int, required=True, help="longest prompt (mixture.max_prompt_tokens)")
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    shape = ModelShape.from_config(json.loads((args.model / "config.json").read_text()))
    est, problems = check(shape, json.loads(args.params), prompt_tokens=args.prompt_tokens)
    report = {"model": str(args.model), "shape": asdict(shape), "params": shape.params, "estimate_gib": est}
    if problems:
        raise SystemExit("memory preflight failed:\n  " + "\n  ".join(problems))
    write_json(report, args.output)
    log.info(
        "memory preflight: ~%.1f GiB per GPU of %s: %s", est["total"], json.loads(args.params)["gpu_memory_gib"], est
    )


if __name__ == "__main__":
    main()
