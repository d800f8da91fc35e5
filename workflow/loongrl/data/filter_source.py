"""Stage 2: source difficulty filter.

Each question is answered ``n`` times by a strong model on its *short* original context (the official filter
prompt), the answer after "The answer is" is matched against the gold answers, and the per-question pass count is
stored. The keep band is applied later (by ``split``), so changing the band never re-samples.

Long runs are chunked: each finished chunk is kept in a work folder outside Snakemake's declared outputs, so a
killed job resumes from the last finished chunk instead of starting over. On a cluster the questions are split into
``filter.shards`` contiguous blocks, one GPU job each (``run --shard k --shards N``), and ``gather`` concatenates
them. Every question is sampled with a seed derived from its id (``rng.prompt_seed``), so its pass count does not
depend on the shard, chunk or batch it lands in: N shards give byte-identical output to one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.answers import contains_match, extract_answer_is
from loongrl.cli import run, setup_logging
from loongrl.inference import InferenceBackend, SamplingParams, make_backend, pick_device
from loongrl.io import gather_shards, read_parquet, shard_rows, write_parquet
from loongrl.prompts import FILTER_QA_TEMPLATE
from loongrl.rng import prompt_seed

log = logging.getLogger(__name__)

FILTER_PROMPT = FILTER_QA_TEMPLATE

PASS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("n", pa.int32()),
        ("correct", pa.int32()),
        ("pass_rate", pa.float64()),
        ("predictions", pa.list_(pa.string())),
    ]
)


def doc_string(doc: dict[str, str]) -> str:
    """The official document string: ``title\\ntext``."""
    return f"{doc['title']}\n{doc['text']}"


def filter_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """The official filter prompt on the question's own (short) context, as a single user turn."""
    context = "\n".join(doc_string(d) for d in row["documents"])
    return [{"role": "user", "content": FILTER_PROMPT.format(context=context, question=row["question"])}]


def score_samples(row: dict[str, Any], completions: list[str], model: str, match: str) -> dict[str, Any]:
    """Pass count of one question's samples."""
    preds = [extract_answer_is(c) for c in completions]
    correct = sum(contains_match(p, row["answers"], mode=match) for p in preds)
    return {
        "id": row["id"],
        "dataset": row["dataset"],
        "model": model,
        "n": len(completions),
        "correct": int(correct),
        "pass_rate": correct / len(completions),
        "predictions": preds,
    }


def run_filter(
    rows: list[dict[str, Any]],
    backend: InferenceBackend,
    params: SamplingParams,
    model_name: str,
    *,
    match: str = "cem",
    work_dir: Path | None = None,
    chunk_size: int = 512,
) -> list[dict[str, Any]]:
    """Sample and score every row; finished chunks are cached in ``work_dir`` (keyed by inputs and settings)."""
    key = hashlib.sha256(
        json.dumps([model_name, match, params.__dict__, [r["id"] for r in rows], "id-seeds"], sort_keys=True).encode()
    ).hexdigest()[:16]
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        cache = work_dir / f"{key}-{start:08d}.parquet" if work_dir else None
        if cache is not None and cache.exists():
            out += read_parquet(cache)
            log.info("chunk %d: reused %s", start, cache)
            continue
        seeds = [prompt_seed(params.seed, "filter", r["id"]) for r in chunk]
        completions = backend.generate([filter_prompt(r) for r in chunk], params, seeds)
        scored = [score_samples(r, c, model_name, match) for r, c in zip(chunk, completions, strict=True)]
        if cache is not None:
            write_parquet(scored, cache, PASS_SCHEMA)
        out += scored
        log.info("chunk %d-%d done", start, start + len(chunk))
    return out


def gather(inputs: list[Path], output: Path) -> list[dict[str, Any]]:
    """Concatenate shard outputs in shard order; a question scored twice is an error naming both files."""
    rows = gather_shards(inputs)
    write_parquet(rows, output, PASS_SCHEMA)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.filter_source", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="sample and score one shard of the questions")
    run.add_argument("--input", required=True, type=Path, help="normalised raw QA parquet")
    run.add_argument("--model", required=True, type=Path, help="local model folder")
    run.add_argument("--model-name", required=True, help="name recorded in the output")
    run.add_argument("--params", required=True, help="JSON of the config's filter section")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--only-failed", type=Path, default=None, help="pass counts: re-run only rows with 0 correct")
    run.add_argument("--shard", type=int, default=0, help="which block of the questions (0-based)")
    run.add_argument("--shards", type=int, default=1, help="how many blocks (filter.shards)")
    run.add_argument("--work-dir", type=Path, default=None, help="chunk cache for resuming a killed run")
    run.add_argument("--gpus", type=int, default=0)
    run.add_argument("--output", required=True, type=Path)
    gat = sub.add_parser("gather", help="concatenate shard outputs in order")
    gat.add_argument("inputs", nargs="+", type=Path)
    gat.add_argument("--output", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    if args.cmd == "gather":
        scored = gather(args.inputs, args.output)
    else:
        scored = run_shard(args)
    n = max((s["n"] for s in scored), default=0)
    hist = [sum(1 for s in scored if s["correct"] == k) for k in range(n + 1)]
    log.info("%s: %d questions scored; correct-count histogram 0..%d: %s", args.output, len(scored), n, hist)


def run_shard(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = json.loads(args.params)
    rows = read_parquet(args.input)
    if args.only_failed is not None:
        failed = {r["id"] for r in read_parquet(args.only_failed) if r["correct"] == 0}
        rows = [r for r in rows if r["id"] in failed]
    rows = shard_rows(rows, args.shard, args.shards)
    params = SamplingParams(
        n=cfg["n"],
        temperature=cfg["temperature"],
        top_p=cfg["top_p"],
        max_new_tokens=cfg["max_new_tokens"],
        seed=args.seed,
    )
    scored: list[dict[str, Any]] = []
    if rows:
        backend = make_backend(
            cfg["backend"],
            args.model,
            device=pick_device(args.gpus),
            batch_size=cfg["batch_size"],
            tensor_parallel_size=min(cfg["tensor_parallel_size"], max(args.gpus, 1)),
            gpu_memory_utilization=cfg["gpu_memory_utilization"],
            max_model_len=cfg["max_model_len"],
            seed=args.seed,
            enforce_eager=cfg["enforce_eager"],
        )
        scored = run_filter(rows, backend, params, args.model_name, match=cfg["match"], work_dir=args.work_dir)
    write_parquet(scored, args.output, PASS_SCHEMA)
    return scored


if __name__ == "__main__":
    run(main)
