"""Fail before the GPUs start: every count that does not depend on the difficulty filter, checked up front.

Two layers:

* ``config_errors`` runs at config load (the Snakefile validates the config with it). A ``local`` source whose
  file holds fewer rows than the config asks of it is an error naming the key: the row count of a local file is
  cheap to read, and without this check the shortfall surfaces only in ``build_mixture``, after the filter.
* ``check_inputs`` is a DAG step between the downloads and the first GPU job (the difficulty filter waits for its
  report). It reads what was actually downloaded and normalised (raw QA, math, books), checks the same counts on
  the real rows, and prints the filter's projected work (questions x samples x max tokens, per shard).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from loongrl.books import Haystack, load_books
from loongrl.data.filter_source import first_round
from loongrl.cli import run, setup_logging
from loongrl.data.math_data import count_records
from loongrl.io import read_parquet, read_rows, write_json

log = logging.getLogger(__name__)

MATH_KEYS = {"dapo_math": "dapo", "math_choice": "math_choice"}


def _local_rows(files: list[Path]) -> int:
    return sum(len(read_rows(f)) for f in files)


# A file name that marks an evaluation split (hotpot_dev_distractor_v1.json, musique_ans_v1.0_dev.jsonl, dev.json,
# validation.parquet, test.json): raw-QA local files must not be one unless raw_qa.allow_eval_splits says so.
EVAL_SPLIT = re.compile(r"(?:^|[_.\-])(?:dev|val|valid|validation|test)(?:[_.\-]|$)", re.IGNORECASE)


def config_errors(config: dict[str, Any]) -> list[str]:
    """Sources that cannot supply what the mixture asks of them: the retrieval rows the config builds, and local
    files (paths relative to the working directory). Config-only, so a bad overlay fails before any job runs."""
    msgs: list[str] = []
    counts = config["mixture"]["counts"]
    # the retrieval stage builds exactly retrieval.<task>.examples rows: a larger count can never be met
    for task, key in (("multikey", "retrieval_multikey"), ("multivalue", "retrieval_multivalue")):
        have = config["retrieval"][task]["examples"]
        if counts[key] > have:
            msgs.append(f"config key 'mixture.counts.{key}': {counts[key]} rows, but retrieval.{task}.examples = {have}")
    if config["math"]["source"] == "local":
        for task, key in MATH_KEYS.items():
            path = Path(config["math"][key]["local_file"])
            if not path.is_file():
                msgs.append(f"config key 'math.{key}.local_file': {path} does not exist")
                continue
            have = count_records(path)
            if counts[task] > have:
                msgs.append(
                    f"config key 'math.{key}.local_file': {path} holds {have} rows but mixture.counts.{task} "
                    f"asks for {counts[task]} (lower the count, or set math.source: download)"
                )
    raw = config["raw_qa"]
    if raw["source"] == "local":
        need = config["split"]["plain_questions"] + config["split"]["keychain_questions"]
        for ds in raw["datasets"]:
            spec = raw["local_files"].get(ds)
            if spec is None:
                continue  # reported by the core checks
            folder = Path(raw["local_dir"]) / spec["folder"]
            files = sorted({p for pat in spec["files"] for p in folder.glob(pat)})
            if not files:
                msgs.append(f"config key 'raw_qa.local_files.{ds}': no file matches {spec['files']} in {folder}")
                continue
            held = [p.name for p in files if EVAL_SPLIT.search(p.name)]
            if held and not raw.get("allow_eval_splits"):
                msgs.append(
                    f"config key 'raw_qa.local_files.{ds}': {spec['files']} match the evaluation split file(s) "
                    f"{held} in {folder}: training questions come from train splits (set raw_qa.allow_eval_splits: "
                    "true to train on them anyway)"
                )
                continue
            have = _local_rows(files)
            if raw["max_questions"] is not None:
                have = min(have, raw["max_questions"])
            if need > have:
                msgs.append(
                    f"config key 'split.plain_questions': {ds} has {have} questions in {folder} (after "
                    f"raw_qa.max_questions) but split.plain_questions + split.keychain_questions = {need}"
                )
    return msgs


def filter_work(questions: dict[str, int], cfg: dict[str, Any], need: int | None = None) -> dict[str, Any]:
    """The difficulty filter's projected work: samples and the generated-token ceiling, per dataset and in total.

    ``budget: all`` samples every question (``shards`` jobs per dataset). ``budget: auto`` samples round 1 of the
    sized filter: ``need / keep rate x margin`` questions in chunks (capped at the dataset); a round that keeps too
    few adds chunks, so the expected total is round 1 and the ceiling is the whole dataset.
    """
    sized = cfg.get("budget", "all") == "auto" and need is not None
    per_ds = {}
    for ds, n in sorted(questions.items()):
        if sized:
            size = cfg["chunk_questions"]
            rate = cfg.get("keep_rates", {}).get(ds, cfg.get("default_keep_rate", 0.25))
            chunks = min(first_round(need, rate, cfg["margin"], size), -(-n // size))
            q = min(n, chunks * size)
            per_ds[ds] = {"questions": q, "of_questions": n, "round1_jobs": chunks, "keep_rate": rate, "need": need}
        else:
            per_ds[ds] = {"questions": n, "questions_per_shard": -(-n // cfg["shards"])}
        per_ds[ds]["samples"] = per_ds[ds]["questions"] * cfg["n"]
        per_ds[ds]["max_generated_tokens"] = per_ds[ds]["samples"] * cfg["max_new_tokens"]
    total_q = sum(d["questions"] for d in per_ds.values())
    return {
        "budget": "auto" if sized else "all",
        "jobs": sum(d["round1_jobs"] for d in per_ds.values()) if sized else cfg["shards"] * len(questions),
        "questions": total_q,
        "samples": total_q * cfg["n"],
        "max_generated_tokens": total_q * cfg["n"] * cfg["max_new_tokens"],
        "by_dataset": per_ds,
    }


def check_inputs(
    *,
    raw: dict[str, Path],
    math: dict[str, Path],
    books_dir: Path | None,
    tokenizer,
    config: dict[str, Any],
) -> dict[str, Any]:
    """Verify the filter-independent counts on the real inputs; return the report (raises listing every problem)."""
    problems: list[str] = []
    split = config["split"]
    need = split["plain_questions"] + split["keychain_questions"]
    questions = {ds: len(read_parquet(p)) for ds, p in raw.items()}
    for ds, n in questions.items():
        if n < need:
            problems.append(
                f"{raw[ds]}: {n} questions, but split.plain_questions + split.keychain_questions = {need} "
                "(the filter can only lower that)"
            )
    counts = config["mixture"]["counts"]
    math_rows = {task: len(read_parquet(p)) for task, p in math.items()}
    for task, n in math_rows.items():
        if counts[task] > n:
            problems.append(f"{math[task]}: {n} rows after de-duplication, but mixture.counts.{task} = {counts[task]}")
    ret = config["retrieval"]
    haystack: dict[str, Any] = {}
    if books_dir is not None:
        hay = Haystack(load_books([books_dir]), tokenizer)
        tokens = sum(sum(t) for t in hay.tokens.values())
        examples = ret["multikey"]["examples"] + ret["multivalue"]["examples"]
        length = ret.get("length") or config["fill"]["train_length"]
        wanted = examples * length
        haystack = {
            "books": len(hay.books),
            "paragraphs": sum(len(p) for p in hay.books.values()),
            "tokens": tokens,
            "retrieval_tokens_wanted": wanted,
            "coverage": round(tokens / wanted, 3) if wanted else None,
        }
        if tokens < length:
            problems.append(f"{books_dir}: the books hold {tokens} tokens, less than one {length}-token haystack")
    report = {
        "questions": questions,
        "math_rows": math_rows,
        "haystack": haystack,
        "filter_work": filter_work(
            questions,
            config["filter"],
            need=config["split"]["plain_questions"] + config["split"]["keychain_questions"],
        ),
    }
    if problems:
        raise ValueError("input check failed:\n  " + "\n  ".join(problems))
    return report


def main(argv: list[str] | None = None) -> None:
    from loongrl.models import load_tokenizer

    ap = argparse.ArgumentParser(prog="python -m loongrl.data.check_inputs", description=__doc__)
    ap.add_argument("--raw", nargs="+", required=True, help="dataset=normalised raw QA parquet")
    ap.add_argument("--math", nargs="+", required=True, help="task=normalised math parquet")
    ap.add_argument("--books-dir", type=Path, default=None)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--config", required=True, help="JSON of the resolved config")
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()

    def pairs(items: list[str]) -> dict[str, Path]:
        return {k: Path(v) for k, _, v in (i.partition("=") for i in items)}

    report = check_inputs(
        raw=pairs(args.raw),
        math=pairs(args.math),
        books_dir=args.books_dir,
        tokenizer=load_tokenizer(args.tokenizer),
        config=json.loads(args.config),
    )
    write_json(report, args.output)
    work = report["filter_work"]
    log.info(
        "inputs ok. Difficulty filter (budget %s): %d questions x %d samples = %d samples, at most %.3g generated "
        "tokens, over %d jobs%s",
        work["budget"],
        work["questions"],
        json.loads(args.config)["filter"]["n"],
        work["samples"],
        work["max_generated_tokens"],
        work["jobs"],
        " in round 1 (the expected total; a short round adds chunks)" if work["budget"] == "auto" else "",
    )
    for ds, w in work["by_dataset"].items():
        if work["budget"] == "auto":
            log.info(
                "  %s: round 1 = %d jobs, %d of %d questions (need %d at keep rate %.2f), %d samples",
                ds,
                w["round1_jobs"],
                w["questions"],
                w["of_questions"],
                w["need"],
                w["keep_rate"],
                w["samples"],
            )
        else:
            log.info("  %s: %d questions, %d per shard", ds, w["questions"], w["questions_per_shard"])


if __name__ == "__main__":
    run(main)
