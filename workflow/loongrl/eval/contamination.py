"""Contamination check: do LongBench test questions appear in the training sources?

LongBench's HotpotQA, 2WikiMultihopQA and MuSiQue rows come from those datasets' dev sets, and LoongRL trains on
their train sets, so overlap should be nil; this measures it rather than assuming it. Two tests per LongBench
question, against every normalised raw training question (before any filtering, so a leak anywhere upstream
counts): an exact match after SQuAD normalisation, and a shared word 13-gram (GPT-3's contamination test; shorter
questions compare whole).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from loongrl.answers import normalize_answer
from loongrl.cli import run, setup_logging
from loongrl.io import read_parquet, write_json

log = logging.getLogger(__name__)
NGRAM = 13


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    toks = text.split()
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def check(train: dict[str, list[str]], eval_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per LongBench task: questions, exact matches and 13-gram hits, with the first few examples named."""
    exact: dict[str, str] = {}
    grams: dict[tuple[str, ...], str] = {}
    for source, questions in sorted(train.items()):
        for q in questions:
            n = normalize_answer(q)
            exact.setdefault(n, source)
            for g in ngrams(n):
                grams.setdefault(g, source)
    out: dict[str, Any] = defaultdict(lambda: {"questions": 0, "exact": 0, "ngram": 0, "examples": []})
    for row in eval_rows:
        q = json.loads(row["meta"]).get("question", "")
        n = normalize_answer(q)
        cell = out[row["task"]]
        cell["questions"] += 1
        hit_exact = n in exact
        hit_gram = next((grams[g] for g in ngrams(n) if g in grams), None)
        cell["exact"] += hit_exact
        cell["ngram"] += hit_gram is not None
        if (hit_exact or hit_gram) and len(cell["examples"]) < 5:
            cell["examples"].append({"id": row["id"], "question": q, "source": exact.get(n) or hit_gram})
    return {
        "ngram": NGRAM,
        "train_questions": {k: len(v) for k, v in sorted(train.items())},
        "by_task": dict(sorted(out.items())),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.eval.contamination", description=__doc__)
    ap.add_argument("--train", type=Path, nargs="+", required=True, help="raw QA parquet files (results/raw_qa)")
    ap.add_argument("--longbench", type=Path, required=True, help="LongBench task parquet")
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    train = {p.stem: [r["question"] for r in read_parquet(p)] for p in args.train}
    report = check(train, read_parquet(args.longbench))
    write_json(report, args.output)
    log.info("contamination: %s", {t: (c["exact"], c["ngram"]) for t, c in report["by_task"].items()})


if __name__ == "__main__":
    run(main)
