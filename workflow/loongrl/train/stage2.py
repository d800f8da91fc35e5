"""Stage-II data selection [P §3.2.2]: keep only the examples the model has not mastered.

Every example of the stage-I mixture is answered ``n`` times (8, T=0.6, top-p 0.95, 4,096 tokens [KC filter_again])
by the chosen stage-I checkpoint through the shared inference backend; an example solved in all ``n`` rollouts is
dropped. The paper reports 30-40% of the data remaining. The kept counts per data_source are recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from loongrl.cli import setup_logging
from loongrl.inference import InferenceBackend, SamplingParams, make_backend, pick_device
from loongrl.io import read_parquet, write_json, write_parquet
from loongrl.schemas import MIXTURE_SCHEMA
from loongrl.train.rewards import score
from loongrl.verifiers import DEFAULT_RULES, RewardRules

log = logging.getLogger(__name__)


def solved_counts(
    rows: list[dict[str, Any]], backend: InferenceBackend, params: SamplingParams, rules: RewardRules = DEFAULT_RULES
) -> list[int]:
    """How many of each row's ``params.n`` rollouts the verifier accepts."""
    completions = backend.generate([r["prompt"] for r in rows], params)
    return [
        sum(score(r["data_source"], c, r["answers"], rules) >= 1.0 for c in comps)
        for r, comps in zip(rows, completions, strict=True)
    ]


def select_unsolved(
    rows: list[dict[str, Any]], solved: list[int], n: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows solved fewer than ``n`` times, plus per-data_source counts before and after."""
    kept = [r for r, s in zip(rows, solved, strict=True) if s < n]
    before = Counter(r["data_source"] for r in rows)
    after = Counter(r["data_source"] for r in kept)
    stats = {
        "rollouts_per_example": n,
        "examples": len(rows),
        "kept": len(kept),
        "kept_fraction": len(kept) / len(rows) if rows else 0.0,
        "by_data_source": {k: {"examples": before[k], "kept": after.get(k, 0)} for k in sorted(before)},
        "solved_histogram": [sum(1 for s in solved if s == k) for k in range(n + 1)],
    }
    return kept, stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.train.stage2", description=__doc__)
    ap.add_argument("--model", type=Path, required=True, help="the chosen stage-I checkpoint (HF folder)")
    ap.add_argument("--data", type=Path, required=True, help="stage-I mixture parquet")
    ap.add_argument("--params", required=True, help="JSON of the config's train section")
    ap.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--gpus", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--stats", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    train = json.loads(args.params)
    rows = read_parquet(args.data)
    backend = make_backend(
        args.backend, args.model, device=pick_device(args.gpus), seed=args.seed, tensor_parallel_size=max(1, args.gpus)
    )
    params = SamplingParams(
        n=args.n,
        temperature=train["temperature"],
        top_p=train["top_p"],
        max_new_tokens=train["max_completion_length"],
        seed=args.seed,
    )
    solved = solved_counts(rows, backend, params, RewardRules.from_config(train["reward"]))
    kept, stats = select_unsolved(rows, solved, args.n)
    if not kept:
        raise ValueError(f"every example of {args.data} was solved {args.n}/{args.n}; nothing left for stage II")
    write_parquet(kept, args.output, MIXTURE_SCHEMA)
    write_json(stats, args.stats)
    log.info("stage II keeps %d of %d examples", len(kept), len(rows))


if __name__ == "__main__":
    main()
