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
import math
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.answers import contains_match, extract_answer_is
from loongrl.cli import run, setup_logging
from loongrl.inference import InferenceBackend, SamplingParams, make_backend, pick_device
from loongrl.io import DataError, gather_shards, read_parquet, shard_rows, write_json, write_parquet
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


# ------------------------------------------------------------------------------ a filter sized to the need
def seeded_order(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The dataset's questions in a seeded random order (by a hash of seed and id, so file order does not matter):
    the sized filter takes its chunks from the front of it, so a random subset is filtered."""
    return sorted(rows, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).digest())


def chunk_of(rows: list[dict[str, Any]], chunk: int, size: int, seed: int) -> list[dict[str, Any]]:
    """Chunk ``chunk`` (``size`` questions) of the seeded order; empty past the end of the dataset."""
    return seeded_order(rows, seed)[chunk * size : (chunk + 1) * size]


def first_round(need: int, keep_rate: float, margin: float, chunk_size: int) -> int:
    """Chunks of the first round: enough questions to keep ``need`` at the expected keep rate, times the margin."""
    return max(1, math.ceil(need / keep_rate * margin / chunk_size))


def next_round(state: dict[str, Any], *, need: int, keep_rate: float, margin: float, chunk_size: int) -> dict[str, Any]:
    """After a round: done (need met, or the dataset exhausted), else the chunk end of the next round, sized from
    the keep rate observed so far (the configured one while nothing was kept)."""
    kept, scored, end = state["kept"], state["scored"], state["end"]
    exhausted = scored < end * chunk_size
    if kept >= need or exhausted:
        return {**state, "done": True, "exhausted": exhausted and kept < need}
    rate = kept / scored if kept else keep_rate
    more = math.ceil((need - kept) / rate * margin / chunk_size)
    return {**state, "done": False, "exhausted": False, "next_end": end + max(1, more)}


def round_state(passes: list[list[dict[str, Any]]], *, keep_min: int, keep_max: int, end: int) -> dict[str, Any]:
    """Questions scored and kept (pass count in the keep band) over the chunks of every round so far."""
    rows = [r for chunk in passes for r in chunk]
    kept = sum(keep_min <= r["correct"] <= keep_max for r in rows)
    return {"end": end, "scored": len(rows), "kept": kept}


def filter_round(
    chunk_files: list[Path], *, dataset: str, plan: dict[str, Any], round_no: int, output: Path
) -> dict[str, Any]:
    """The round job: count what the chunks so far keep, decide whether another round is needed, write the round's
    record. The dataset running out before the need is met is an error naming the dataset, the need and the kept
    count."""
    state = round_state(
        [read_parquet(f) for f in chunk_files],
        keep_min=plan["keep_min"],
        keep_max=plan["keep_max"],
        end=len(chunk_files),
    )
    state = next_round(
        state, need=plan["need"], keep_rate=plan["keep_rate"], margin=plan["margin"], chunk_size=plan["chunk_size"]
    )
    state.update(round=round_no, dataset=dataset, need=plan["need"])
    if state["exhausted"]:
        raise DataError(
            chunk_files[-1],
            "-",
            "correct",
            f"filter: {dataset}: the split needs {plan['need']} questions in the keep band "
            f"[{plan['keep_min']}, {plan['keep_max']}], but all {state['scored']} questions of the dataset kept "
            f"{state['kept']}: lower split.plain_questions / split.keychain_questions or widen the band",
        )
    write_json(state, output)
    log.info(
        "%s round %d: %d chunks, %d scored, %d kept of %d needed -> %s",
        dataset,
        round_no,
        state["end"],
        state["scored"],
        state["kept"],
        plan["need"],
        "done" if state["done"] else f"next round to chunk {state['next_end']}",
    )
    return state


def gather(inputs: list[Path], output: Path) -> list[dict[str, Any]]:
    """Concatenate shard outputs in shard order; a question scored twice is an error naming both files."""
    rows = gather_shards(inputs)
    write_parquet(rows, output, PASS_SCHEMA)
    return rows


def parser() -> argparse.ArgumentParser:
    """The job's command line (the engine check parses a planned job's arguments with it)."""
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
    run.add_argument("--chunk", type=int, default=None, help="sized filter: chunk of the seeded order (0-based)")
    run.add_argument("--chunk-size", type=int, default=None, help="sized filter: questions per chunk")
    run.add_argument("--work-dir", type=Path, default=None, help="chunk cache for resuming a killed run")
    run.add_argument("--gpus", type=int, default=0)
    run.add_argument("--output", required=True, type=Path)
    rnd = sub.add_parser("round", help="sized filter: count a round's keeps and decide on the next round")
    rnd.add_argument("chunks", nargs="+", type=Path, help="pass files of every chunk so far, in chunk order")
    rnd.add_argument("--dataset", required=True)
    rnd.add_argument("--round", type=int, required=True)
    rnd.add_argument("--plan", required=True, help="JSON: need, keep_rate, margin, chunk_size, keep_min, keep_max")
    rnd.add_argument("--output", required=True, type=Path)
    gat = sub.add_parser("gather", help="concatenate shard outputs in order")
    gat.add_argument("inputs", nargs="+", type=Path)
    gat.add_argument("--output", required=True, type=Path)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    if args.cmd == "round":
        filter_round(
            args.chunks, dataset=args.dataset, plan=json.loads(args.plan), round_no=args.round, output=args.output
        )
        return
    if args.cmd == "gather":
        scored = gather(args.inputs, args.output)
    else:
        scored = run_shard(args)
    n = max((s["n"] for s in scored), default=0)
    hist = [sum(1 for s in scored if s["correct"] == k) for k in range(n + 1)]
    log.info("%s: %d questions scored; correct-count histogram 0..%d: %s", args.output, len(scored), n, hist)


def engine_request(args: argparse.Namespace) -> dict[str, Any]:
    """The engine settings of a ``run`` job (``make_backend`` keywords but the device): tensor parallel
    ``filter.tensor_parallel_size``, at most the GPUs granted. ``loongrl.enginecheck`` validates the same dict."""
    cfg = json.loads(args.params)
    return {
        "batch_size": cfg["batch_size"],
        "tensor_parallel_size": min(cfg["tensor_parallel_size"], max(args.gpus, 1)),
        "gpu_memory_utilization": cfg["gpu_memory_utilization"],
        "max_model_len": cfg["max_model_len"],
        "seed": args.seed,
        "enforce_eager": cfg["enforce_eager"],
    }


def run_shard(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = json.loads(args.params)
    rows = read_parquet(args.input)
    if args.only_failed is not None:
        failed = {r["id"] for r in read_parquet(args.only_failed) if r["correct"] == 0}
        rows = [r for r in rows if r["id"] in failed]
    if args.chunk is not None:
        rows = chunk_of(rows, args.chunk, args.chunk_size, args.seed)
    else:
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
        backend = make_backend(cfg["backend"], args.model, device=pick_device(args.gpus), **engine_request(args))
        scored = run_filter(rows, backend, params, args.model_name, match=cfg["match"], work_dir=args.work_dir)
    write_parquet(scored, args.output, PASS_SCHEMA)
    return scored


if __name__ == "__main__":
    run(main)
