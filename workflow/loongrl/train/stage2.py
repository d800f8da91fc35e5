"""Stage-II data selection [P §3.2.2]: keep only the examples the model has not mastered.

Every example of the stage-I mixture is answered ``n`` times (8, T=0.6, top-p 0.95, 4,096 tokens [KC filter_again])
by the chosen stage-I checkpoint through the shared inference backend; an example solved in all ``n`` rollouts is
dropped. The paper reports 30-40% of the data remaining. The kept counts per data_source are recorded.

``train.stage2_keep`` picks the rule: ``unmastered`` (the paper's: solved fewer than ``n`` times, so never-solved
rows stay) or ``partial`` (solved at least once and fewer than ``n`` times). GRPO learns only from groups whose
rewards differ, and a row the policy never solves in ``n`` rollouts will mostly give all-0 groups: on the laptop run
of issue 33 the paper's rule kept 24 rows solved 0/4 and no row in between, so every stage-II step had reward 0 and
loss 0. Under ``partial`` a policy that is deterministic on the mixture (every row 0/n or n/n) leaves nothing, and
the selection stops with that histogram rather than train on rows that carry no gradient.

The rollouts can be spread over ``train.stage2_shards`` GPU jobs (``count --shard k --shards N``, contiguous blocks
of the mixture), and ``select`` gathers their solved counts. Each example is sampled with a seed derived from its
id, so the selection is identical for any number of shards.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.cli import run, setup_logging
from loongrl.inference import InferenceBackend, SamplingParams, make_backend, pick_device
from loongrl.io import gather_shards, read_parquet, shard_rows, write_json, write_parquet
from loongrl.rng import prompt_seed
from loongrl.schemas import MIXTURE_SCHEMA
from loongrl.train.rewards import score
from loongrl.verifiers import DEFAULT_RULES, RewardRules

log = logging.getLogger(__name__)


def solved_counts(
    rows: list[dict[str, Any]], backend: InferenceBackend, params: SamplingParams, rules: RewardRules = DEFAULT_RULES
) -> list[int]:
    """How many of each row's ``params.n`` rollouts the verifier accepts (each row seeded by its id)."""
    seeds = [prompt_seed(params.seed, "stage2", r["id"]) for r in rows]
    completions = backend.generate([r["prompt"] for r in rows], params, seeds)
    return [
        sum(score(r["data_source"], c, r["answers"], rules) >= 1.0 for c in comps)
        for r, comps in zip(rows, completions, strict=True)
    ]


KEEP_RULES = {
    "unmastered": lambda s, n: s < n,  # [P §3.2.2, KC filter_again]: drop only the always-solved
    "partial": lambda s, n: 0 < s < n,  # ours: only rows whose groups can have reward variance
}


def select_unsolved(
    rows: list[dict[str, Any]], solved: list[int], n: int, keep: str = "unmastered"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows the keep rule accepts (``KEEP_RULES``), plus per-data_source counts before and after."""
    rule = KEEP_RULES[keep]
    kept = [r for r, s in zip(rows, solved, strict=True) if rule(s, n)]
    before = Counter(r["data_source"] for r in rows)
    after = Counter(r["data_source"] for r in kept)
    stats = {
        "keep": keep,
        "rollouts_per_example": n,
        "examples": len(rows),
        "kept": len(kept),
        "kept_fraction": len(kept) / len(rows) if rows else 0.0,
        "by_data_source": {k: {"examples": before[k], "kept": after.get(k, 0)} for k in sorted(before)},
        "solved_histogram": [sum(1 for s in solved if s == k) for k in range(n + 1)],
    }
    return kept, stats


SOLVED_SCHEMA = pa.schema([("id", pa.string()), ("solved", pa.int32()), ("n", pa.int32())])


def parser() -> argparse.ArgumentParser:
    """The job's command line (the engine check parses a planned job's arguments with it)."""
    ap = argparse.ArgumentParser(prog="python -m loongrl.train.stage2", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    count = sub.add_parser("count", help="roll out one shard of the mixture and count solved rollouts")
    count.add_argument("--model", type=Path, required=True, help="the chosen stage-I checkpoint (HF folder)")
    count.add_argument("--data", type=Path, required=True, help="stage-I mixture parquet")
    count.add_argument("--params", required=True, help="JSON of the config's train section")
    count.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    count.add_argument("--n", type=int, default=8)
    count.add_argument("--shard", type=int, default=0)
    count.add_argument("--shards", type=int, default=1)
    count.add_argument("--gpus", type=int, default=0)
    count.add_argument("--seed", type=int, default=42)
    count.add_argument("--output", type=Path, required=True, help="solved counts parquet (id, solved, n)")
    select = sub.add_parser("select", help="gather the shards' counts and keep the unsolved examples")
    select.add_argument("--data", type=Path, required=True, help="stage-I mixture parquet")
    select.add_argument("counts", type=Path, nargs="+", help="the shards' solved-count files")
    select.add_argument("--output", type=Path, required=True)
    select.add_argument("--stats", type=Path, required=True)
    select.add_argument("--keep", choices=sorted(KEEP_RULES), default="unmastered", help="train.stage2_keep")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    if args.cmd == "count":
        count_shard(args)
    else:
        select_from_counts(args.data, args.counts, output=args.output, stats_path=args.stats, keep=args.keep)


def engine_request(args: argparse.Namespace) -> dict[str, Any]:
    """The engine settings of a ``count`` job (``make_backend`` keywords but the device): one engine over the
    job's GPUs (``train.stage2_gpus``). ``loongrl.enginecheck`` validates the same dict."""
    engine = json.loads(args.params)["stage2_engine"]
    return {
        "seed": args.seed,
        "tensor_parallel_size": max(1, args.gpus),
        "gpu_memory_utilization": engine["gpu_memory_utilization"],
        "max_model_len": engine["max_model_len"],
        "enforce_eager": engine["enforce_eager"],
    }


def count_shard(args: argparse.Namespace) -> None:
    train = json.loads(args.params)
    rows = shard_rows(read_parquet(args.data), args.shard, args.shards)
    solved: list[int] = []
    if rows:
        backend = make_backend(args.backend, args.model, device=pick_device(args.gpus), **engine_request(args))
        params = SamplingParams(
            n=args.n,
            temperature=train["temperature"],
            top_p=train["top_p"],
            max_new_tokens=train["max_completion_length"],
            seed=args.seed,
        )
        solved = solved_counts(rows, backend, params, RewardRules.from_config(train["reward"]))
    out = [{"id": r["id"], "solved": s, "n": args.n} for r, s in zip(rows, solved, strict=True)]
    write_parquet(out, args.output, SOLVED_SCHEMA)
    log.info("stage II shard %d/%d: %d examples rolled out", args.shard, args.shards, len(out))


def select_from_counts(
    data: Path, counts: list[Path], *, output: Path, stats_path: Path, keep: str = "unmastered"
) -> dict[str, Any]:
    """Join the shards' counts to the mixture (every example exactly once) and write the rows the keep rule
    accepts."""
    rows = read_parquet(data)
    gathered = gather_shards(counts)
    solved = {c["id"]: c["solved"] for c in gathered}
    ns = {c["n"] for c in gathered}
    missing = [r["id"] for r in rows if r["id"] not in solved]
    if missing or len(ns) > 1:
        raise ValueError(
            f"{data}: {len(missing)} examples have no solved count (first: {missing[:1]}), rollouts per example {ns}"
        )
    n = ns.pop() if ns else 0
    kept, stats = select_unsolved(rows, [solved[r["id"]] for r in rows], n, keep)
    if not kept:
        hist = ", ".join(f"{k}/{n}: {c}" for k, c in enumerate(stats["solved_histogram"]) if c)
        why = "every example was solved" if keep == "unmastered" else "the policy is deterministic on it"
        raise ValueError(
            f"{data}: train.stage2_keep {keep} keeps no example ({why}; solved counts {hist}); nothing left for "
            "stage II"
        )
    write_parquet(kept, output, MIXTURE_SCHEMA)
    write_json(stats, stats_path)
    log.info("stage II keeps %d of %d examples", len(kept), len(rows))
    return stats


if __name__ == "__main__":
    run(main)
