"""Stage 3: apply the keep band and split each dataset into disjoint question pools.

Questions whose pass count lies in the keep band (optionally rescued by a second filter model) are kept in file
order; the first ``plain_questions`` go to plain long QA, the next ``keychain_questions`` to KeyChain, as the
official 0-2500 / 2500-5000 ranges do. The filler document pool is built here too, with each document's token
count under the policy tokenizer, so filling at every length never re-tokenises a document.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.cli import run, setup_logging
from loongrl.io import check_qa_rows, read_parquet, write_json, write_parquet
from loongrl.models import load_tokenizer
from loongrl.prompts import count_tokens_batch
from loongrl.schemas import RAW_SCHEMA

log = logging.getLogger(__name__)

POOL_SCHEMA = RAW_SCHEMA.append(pa.field("doc_tokens", pa.list_(pa.int32()))).append(
    pa.field("pass_rate", pa.float64())
)
FILLER_SCHEMA = pa.schema([("title", pa.string()), ("text", pa.string()), ("n_tokens", pa.int32())])


def doc_text(doc: dict[str, str]) -> str:
    """The part of a passage whose length is counted once: ``title\\ntext`` and the ``\\n\\n`` that follows it.

    The separator is counted with the passage because a passage ending in punctuation shares a token with it
    (Qwen's ``.\\n\\n``); counted this way the pieces of a prompt add up exactly (see ``fill.PassageCost``).
    """
    return f"{doc['title']}\n{doc['text']}\n\n"


def keep_mask(
    passes: dict[str, dict[str, Any]],
    keep_min: int,
    keep_max: int,
    fallback: dict[str, dict[str, Any]] | None = None,
) -> dict[str, bool]:
    """Which question ids are kept: pass count in [keep_min, keep_max], or 0 correct rescued by the fallback model
    with a pass count strictly between 0 and its n (the official QwQ-32B re-run)."""
    kept = {}
    for qid, p in passes.items():
        ok = keep_min <= p["correct"] <= keep_max
        if not ok and fallback and p["correct"] == 0 and qid in fallback:
            f = fallback[qid]
            ok = 0 < f["correct"] < f["n"]
        kept[qid] = ok
    return kept


def split_pools(
    rows: list[dict[str, Any]], kept: dict[str, bool], *, plain_n: int, keychain_n: int, dataset: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(plain, keychain, filtered_out) in file order; raises when the band keeps too few questions."""
    missing = [r["id"] for r in rows if r["id"] not in kept]
    if missing:
        raise ValueError(f"{dataset}: {len(missing)} questions have no pass count (first: {missing[0]})")
    good = [r for r in rows if kept[r["id"]]]
    if len(good) < plain_n + keychain_n:
        raise ValueError(
            f"{dataset}: the keep band kept {len(good)} of {len(rows)} questions, but split.plain_questions + "
            f"split.keychain_questions = {plain_n + keychain_n}; widen the band or lower the counts"
        )
    return good[:plain_n], good[plain_n : plain_n + keychain_n], [r for r in rows if not kept[r["id"]]]


def filler_pool(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Unique documents (by title and text) in first-seen order."""
    seen: set[tuple[str, str]] = set()
    pool = []
    for r in rows:
        for d in r["documents"]:
            key = (d["title"], d["text"])
            if key not in seen:
                seen.add(key)
                pool.append({"title": d["title"], "text": d["text"]})
    return pool


def with_token_counts(tokenizer, rows: list[dict[str, Any]], pass_rate: dict[str, float]) -> list[dict[str, Any]]:
    flat = [doc_text(d) for r in rows for d in r["documents"]]
    counts = iter(count_tokens_batch(tokenizer, flat))
    return [{**r, "doc_tokens": [next(counts) for _ in r["documents"]], "pass_rate": pass_rate[r["id"]]} for r in rows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.split", description=__doc__)
    ap.add_argument("--raw", required=True, type=Path)
    ap.add_argument("--passes", required=True, type=Path)
    ap.add_argument("--fallback-passes", type=Path, default=None)
    ap.add_argument("--tokenizer", required=True, type=Path)
    ap.add_argument("--params", required=True, help="JSON: {keep_min, keep_max, plain_questions, ...}")
    ap.add_argument("--plain", required=True, type=Path)
    ap.add_argument("--keychain", required=True, type=Path)
    ap.add_argument("--fillers", required=True, type=Path)
    ap.add_argument("--stats", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    rows = read_parquet(args.raw, RAW_SCHEMA)
    check_qa_rows(rows, args.raw)
    dataset = rows[0]["dataset"]
    passes = {r["id"]: r for r in read_parquet(args.passes)}
    fallback = {r["id"]: r for r in read_parquet(args.fallback_passes)} if args.fallback_passes else None
    kept = keep_mask(passes, p["keep_min"], p["keep_max"], fallback)
    plain, keychain, dropped = split_pools(
        rows, kept, plain_n=p["plain_questions"], keychain_n=p["keychain_questions"], dataset=dataset
    )
    tok = load_tokenizer(args.tokenizer)
    rate = {q: v["pass_rate"] for q, v in passes.items()}
    write_parquet(with_token_counts(tok, plain, rate), args.plain, POOL_SCHEMA)
    write_parquet(with_token_counts(tok, keychain, rate), args.keychain, POOL_SCHEMA)
    pool = filler_pool(dropped if p["filler_pool"] == "filtered_out" else rows)
    if not pool:
        raise ValueError(f"{dataset}: filler pool '{p['filler_pool']}' is empty; set split.filler_pool: all")
    counts = count_tokens_batch(tok, [doc_text(d) for d in pool])
    write_parquet([{**d, "n_tokens": n} for d, n in zip(pool, counts, strict=True)], args.fillers, FILLER_SCHEMA)
    n = max((v["n"] for v in passes.values()), default=0)
    stats = {
        "dataset": dataset,
        "questions": len(rows),
        "kept": sum(kept.values()),
        "plain": len(plain),
        "keychain": len(keychain),
        "filler_docs": len(pool),
        "filler_pool": p["filler_pool"],
        "correct_histogram": [sum(1 for v in passes.values() if v["correct"] == k) for k in range(n + 1)],
    }
    write_json(stats, args.stats)
    log.info("split %s", stats)


if __name__ == "__main__":
    run(main)
