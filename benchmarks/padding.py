"""Padding in GRPO micro-batches: what TRL computes for nothing, and what ``train.grpo.padding_trimmed`` saves.

    python benchmarks/padding.py            # make bench-padding

TRL left-pads every prompt to the longest of the rank's generation batch and right-pads every completion to the
longest completion, then splits that into micro-batches (trl/trainer/grpo_trainer.py:2443-2461), so a 1K-token
math prompt beside a 20K-token KeyChain prompt is computed at 20K. Two measurements:

1. **A dry count on the paper's mixture.** Per source, prompt lengths drawn uniformly from the ranges the paper and
   the authors' notebook record (Table 1; DAPO-Math 65-1,014 and MathQA 40-425 from
   ``difficulty_analysis/dataset_length_stat.ipynb``; only ranges are published, so uniform is the assumption),
   in the stage-I mixture's proportions (``mixture.counts``). A step is 512 prompts x 8 completions over 8 ranks
   (64 prompts each, as accelerate shards TRL's batches); micro-batches of ``per_device_batch`` are random
   subsets (TRL shuffles the generation batch). Completion lengths: all at the 4,096 cap, or uniform 256-4,096.
   Tokens computed by TRL (padded) against tokens computed with the all-pad columns of each micro-batch trimmed,
   and the real tokens.
2. **A CPU step time.** A small Qwen2's GRPO forward + backward through TRL's loss on one sequence whose prompt
   is padded to 8x its length (a math prompt in a KeyChain batch, scaled down), plain GRPOTrainer against the
   trimmed one.

Prints both tables and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

# prompt-token ranges per mixture source [P Table 1; authors' dataset_length_stat.ipynb for the math sets]
RANGES = {
    "keychain": {"hotpotqa": (16272, 20670), "musique": (16495, 20623), "2wikimqa": (14911, 20576)},
    "plain_qa": {"hotpotqa": (12058, 16279), "musique": (12562, 16283), "2wikimqa": (10727, 16274)},
    "retrieval_multikey": (12038, 17387),
    "retrieval_multivalue": (11648, 17840),
    "dapo_math": (65, 1014),
    "math_choice": (40, 425),
}


def mixture_lengths(counts: dict[str, Any], rng: random.Random) -> list[int]:
    """One prompt length per row of a mixture with these ``counts`` (mixture.counts' layout)."""
    out = []
    for source, spec in counts.items():
        per = spec if isinstance(spec, dict) else {None: spec}
        for sub, n in per.items():
            lo, hi = RANGES[source][sub] if sub else RANGES[source]
            out += [rng.randint(lo, hi) for _ in range(n)]
    return out


def step_tokens(
    lengths: list[int],
    *,
    rng: random.Random,
    prompts: int = 512,
    generations: int = 8,
    ranks: int = 8,
    micro_batch: int = 1,
    completions: str = "cap",
    cap: int = 4096,
) -> dict[str, int]:
    """Tokens of one optimizer step: real, as TRL computes them (padded to the rank's longest), and with each
    micro-batch's all-pad columns trimmed."""
    rows = rng.sample(lengths, prompts)
    real = padded = trimmed = 0
    per_rank = prompts // ranks
    for r in range(ranks):
        seqs = [
            (p, cap if completions == "cap" else rng.randint(256, cap))
            for p in rows[r * per_rank : (r + 1) * per_rank]
            for _ in range(generations)
        ]
        width = max(p for p, _ in seqs) + max(c for _, c in seqs)
        rng.shuffle(seqs)
        real += sum(p + c for p, c in seqs)
        padded += len(seqs) * width
        for i in range(0, len(seqs), micro_batch):
            mb = seqs[i : i + micro_batch]
            trimmed += len(mb) * (max(p for p, _ in mb) + max(c for _, c in mb))
    return {"real": real, "padded": padded, "trimmed": trimmed}


def dry_count(counts: dict[str, Any], *, steps: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    lengths = mixture_lengths(counts, rng)
    rows = []
    for completions in ("cap", "uniform"):
        for micro_batch in (1, 2):
            tot = {"real": 0, "padded": 0, "trimmed": 0}
            for _ in range(steps):
                for k, v in step_tokens(lengths, rng=rng, micro_batch=micro_batch, completions=completions).items():
                    tot[k] += v
            rows.append(
                {
                    "completions": completions,
                    "per_device_batch": micro_batch,
                    "real_share_of_padded": round(tot["real"] / tot["padded"], 3),
                    "trimmed_share_of_padded": round(tot["trimmed"] / tot["padded"], 3),
                    "real_share_of_trimmed": round(tot["real"] / tot["trimmed"], 3),
                }
            )
    return rows


def step_time(*, prompt: int = 256, factor: int = 8, completion: int = 64, repeats: int = 3) -> dict[str, Any]:
    """Forward + backward through TRL's loss on one left-padded sequence: plain GRPOTrainer vs the trimmed one."""
    import tempfile

    import gpu_check
    import torch
    from loongrl.models import build_qwen25_tokenizer
    from loongrl.train.grpo import padding_trimmed
    from trl import GRPOTrainer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    train = gpu_check.shipped_config()["train"]
    shape = gpu_check.CPU_SCALE.shape
    pad = (prompt * (factor - 1), 0)
    out: dict[str, Any] = {"prompt": prompt, "padded_to": prompt * factor, "completion": completion}
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_qwen25_tokenizer(Path(tmp) / "tok")
        for name, cls in (("plain", GRPOTrainer), ("trimmed", padding_trimmed(GRPOTrainer))):
            model = gpu_check.slice_model(shape, 2, "cpu")
            trainer = gpu_check.grpo_loss_trainer(
                model, tok, train, device="cpu", work=Path(tmp) / name, trainer_cls=cls
            )
            inputs = gpu_check.loss_inputs(
                batch=1,
                prompt=prompt,
                completion=completion,
                vocab=shape["vocab_size"],
                beta=train["beta"],
                device="cpu",
                pad=pad,
            )
            times = []
            for _ in range(repeats + 1):  # the first is the warm-up
                trainer.model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                loss = trainer.compute_loss(trainer.model, inputs)
                loss.backward()
                times.append(time.perf_counter() - t0)
            losses[name] = float(loss)
            out[f"{name}_s"] = round(min(times[1:]), 4)
    out["loss_plain"], out["loss_trimmed"] = losses["plain"], losses["trimmed"]
    out["speedup"] = round(out["plain_s"] / out["trimmed_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "results/bench/padding.json")
    ap.add_argument("--steps", type=int, default=20, help="simulated optimizer steps per row of the dry count")
    args = ap.parse_args()
    import gpu_check

    counts = gpu_check.shipped_config()["mixture"]["counts"]
    rows = dry_count(counts, steps=args.steps)
    print("| completions | per_device_batch | real / TRL-padded | trimmed / TRL-padded | real / trimmed |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['completions']} | {r['per_device_batch']} | {r['real_share_of_padded']} "
            f"| {r['trimmed_share_of_padded']} | {r['real_share_of_trimmed']} |"
        )
    timing = step_time()
    print(
        f"\nCPU, one sequence of {timing['prompt']} prompt tokens left-padded to {timing['padded_to']} + "
        f"{timing['completion']} completion: plain {timing['plain_s']} s, trimmed {timing['trimmed_s']} s "
        f"({timing['speedup']}x); loss {timing['loss_plain']:.6f} vs {timing['loss_trimmed']:.6f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dry_count": rows, "cpu_step": timing}, indent=2) + "\n")


if __name__ == "__main__":
    main()
