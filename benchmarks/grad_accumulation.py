"""Gradient accumulation in bf16 against fp32, on the CPU: what ``train.grad_accum_dtype`` buys.

    python benchmarks/grad_accumulation.py            # make bench-accumulation

ZeRO-3 adds each micro-step's gradient partition into a buffer of ``gradient_accumulation_dtype``
(deepspeed/runtime/zero/stage3.py:2030, ``grad_buffer.add_(grad_partition.to(gradient_accumulation_dtype))``),
which is the model dtype (bf16) unless ``data_types.grad_accum_dtype`` says otherwise (runtime/engine.py:1806-1807).
DeepSpeed's engine scales each micro-step's loss by 1 / N before backward, so every addend is ~1/N of the sum and a
bf16 buffer rounds away more of each one as the sum grows. This script runs that arithmetic on a small Qwen2 with
bf16 weights: N micro-batches of token sequences, each backward in bf16 with the loss divided by N, the gradients
summed (a) in a bf16 buffer, (b) in an fp32 buffer, (c) in fp64 (the reference, the same bf16 addends). Printed:
relative L2 error against the reference and cosine similarity, for N = 8, 32, 128. One process: the 2-process ZeRO-3
CI test (tests/test_zero3.py) checks that the running engine accumulates and reduces in fp32; the reduce-scatter's
own rounding (bf16 vs fp32, ``communication_data_type``) comes on top of what is measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


# the CPU benchmark's model; `make gpu-smoke` passes Qwen2.5-7B's full-width slice instead
SMALL_SHAPE = {
    "hidden_size": 256,
    "intermediate_size": 1376,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 512,
}


def measure(
    n_steps: int, *, seed: int = 0, seq: int = 64, batch: int = 2, shape: dict | None = None, device: str = "cpu"
) -> dict[str, float]:
    """Relative error and cosine of the bf16- and fp32-accumulated gradient against fp64, after ``n_steps``
    micro-steps of a bf16 Qwen2 of ``shape`` on ``device``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(**(shape or SMALL_SHAPE))
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    bufs = {
        "bf16": [torch.zeros_like(p, dtype=torch.bfloat16) for p in params],
        "fp32": [torch.zeros_like(p, dtype=torch.float32) for p in params],
        "fp64": [torch.zeros_like(p, dtype=torch.float64) for p in params],
    }
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(n_steps):
        ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen).to(device)
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss / n_steps  # DeepSpeed scales the loss by 1 / GAS
        loss.backward()
        for k, p in enumerate(params):
            for buf in bufs.values():
                buf[k].add_(p.grad.to(buf[k].dtype))
    out = {"N": n_steps}
    ref_sq = sum(float(r.pow(2).sum()) for r in bufs["fp64"])  # per tensor: no fp64 copy of the whole model
    for dtype in ("bf16", "fp32"):
        diff_sq = dot = got_sq = 0.0
        for got, ref in zip(bufs[dtype], bufs["fp64"], strict=True):
            g = got.double()
            diff_sq += float((g - ref).pow(2).sum())
            dot += float((g * ref).sum())
            got_sq += float(g.pow(2).sum())
        out[f"{dtype}_rel_err"] = (diff_sq / ref_sq) ** 0.5
        out[f"{dtype}_cosine"] = dot / (got_sq * ref_sq) ** 0.5
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--out", type=Path, default=ROOT / "results/bench/grad_accumulation.json")
    args = ap.parse_args()
    rows = [measure(n) for n in args.steps]
    print("| N micro-steps | bf16 buffer: rel. error | bf16: cosine | fp32 buffer: rel. error | fp32: cosine |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['N']} | {r['bf16_rel_err']:.2e} | {r['bf16_cosine']:.6f} | {r['fp32_rel_err']:.2e} "
            f"| {r['fp32_cosine']:.9f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
