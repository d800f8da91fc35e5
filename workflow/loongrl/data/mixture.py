"""Stage 8: the training mixture of one GRPO stage, plus its data card; and the preflight length check.

Rows are ready for TRL's conversational format: ``prompt`` (system + user turns), ``answers``, ``data_source``
(which the verifiers dispatch on), ``id``, ``prompt_tokens``. Rows are taken in upstream order per source, then
the whole mixture is shuffled with the seed. Prompt lengths were measured upstream with the same tokenizer and
system prompt; only the short math prompts are counted here.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
from pathlib import Path
from typing import Any

from loongrl.cli import run, setup_logging
from loongrl.data.retrieval import passage_stats
from loongrl.io import check_qa_rows, read_parquet, write_json, write_parquet, write_text
from loongrl.models import load_tokenizer
from loongrl.prompts import chat_token_counts, messages, plain_messages, system_prompt
from loongrl.schemas import MIXTURE_SCHEMA, QA_SCHEMA

log = logging.getLogger(__name__)

# the one list of what a mixture can take (the schema's mixture.counts and stages.*.exclude name exactly these,
# tests/test_retrieval_math_mixture.py::test_the_schema_names_exactly_the_mixture_sources)
SOURCES = (
    "keychain",
    "plain_qa",
    "retrieval_multikey",
    "retrieval_multivalue",
    "dapo_math",
    "math_choice",
    "keychain_books",
    "direct_books",
)
# KeyChain over Book-RULER questions, the two arms of Table 4 in miniature: one row file, the KeyChain prompt
# (after its answer prefix, when the row has one) or the same haystack asked directly. Both are scored by the
# multi-key retrieval verifier (their data sources start with its prefix): one number, the true needle's.
BOOK_ARMS = {"keychain_books": "retrieval_multikey_keychain", "direct_books": "retrieval_multikey_direct"}


def take(rows: list[dict[str, Any]], n: int, what: str) -> list[dict[str, Any]]:
    if len(rows) < n:
        raise ValueError(f"mixture.counts.{what} asks for {n} rows but the upstream file has {len(rows)}")
    return rows[:n]


def qa_rows(rows: list[dict[str, Any]], kind: str, system: str | None) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        # our KeyChain rows and the authors' released rows carry the user prompt; our plain rows its parts
        msgs = (
            messages(r["user_prompt"], system)
            if r.get("user_prompt")
            else plain_messages(r["question"], r["context"], system)
        )
        out.append(
            {
                "id": f"{kind}-{r['dataset']}-{r['id']}",
                "data_source": f"{kind}_{r['dataset']}",
                "source": kind,
                "prompt": msgs,
                "answers": list(r["answers"]),
                "prompt_tokens": r["prompt_tokens"],
                "pass_rate": r.get("pass_rate"),
            }
        )
    return out


def simple_rows(rows: list[dict[str, Any]], source: str, system: str | None, tokenizer=None) -> list[dict[str, Any]]:
    out = [
        {
            "id": r["id"],
            "data_source": source,
            "source": source,
            "prompt": messages(r["user_prompt"], system),
            "answers": list(r["answers"]),
            "prompt_tokens": r.get("prompt_tokens"),
            "pass_rate": None,
        }
        for r in rows
    ]
    if tokenizer is not None:
        for o, n in zip(out, chat_token_counts(tokenizer, [o["prompt"] for o in out]), strict=True):
            o["prompt_tokens"] = n
    return out


def book_arm_rows(rows: list[dict[str, Any]], arm: str, system: str | None) -> list[dict[str, Any]]:
    """KeyChain-over-books rows as one arm (``BOOK_ARMS``): the KeyChain prompt with its prefill, or the direct
    question (no pairs, no prefill)."""
    keychain = arm == "keychain_books"
    return [
        {
            "id": f"{arm}-{r['id']}",
            "data_source": BOOK_ARMS[arm],
            "source": arm,
            "prompt": messages(r["user_prompt"], system, r["prefill"])
            if keychain
            else messages(r["direct_prompt"], system),
            "answers": list(r["answers"]),
            "prompt_tokens": r["prompt_tokens"] if keychain else r["direct_prompt_tokens"],
            "pass_rate": None,
        }
        for r in rows
    ]


def validation_rows(rows: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """Retrieval rows as a validation slice in the mixture schema (``eval.validation.source: retrieval``): every
    row, its data source named by its task, in the order given (the trainer evaluates all of them)."""
    return [r for t in ("multikey", "multivalue") for r in simple_rows(
        [x for x in rows if x["task"] == t], f"retrieval_{t}", system
    )]


def build_mixture(
    inputs: dict[str, Any], *, counts: dict[str, Any], exclude: list[str], system: str | None, tokenizer, seed: int
) -> list[dict[str, Any]]:
    """Assemble one stage's rows. ``inputs`` maps source -> rows (QA sources: dataset -> rows)."""
    rows: list[dict[str, Any]] = []
    for kind in ("keychain", "plain_qa"):
        if kind in exclude:
            continue
        for ds, n in sorted(counts[kind].items()):
            if n:
                rows += qa_rows(take(inputs[kind][ds], n, f"{kind}.{ds}"), kind, system)
    for src in ("retrieval_multikey", "retrieval_multivalue"):
        if src not in exclude and counts[src]:
            task = src.removeprefix("retrieval_")
            rows += simple_rows(
                take([r for r in inputs["retrieval"] if r["task"] == task], counts[src], src), src, system
            )
    for src in ("dapo_math", "math_choice"):
        if src not in exclude and counts[src]:
            rows += simple_rows(take(inputs[src], counts[src], src), src, system, tokenizer)
    for arm in BOOK_ARMS:
        if arm not in exclude and counts.get(arm):
            rows += book_arm_rows(take(inputs.get("keychain_books") or [], counts[arm], arm), arm, system)
    random.Random(seed).shuffle(rows)
    return rows


def data_card(rows: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """Counts, prompt-token spread per data source, and the pass-rate histogram of the QA rows."""
    by: dict[str, list[int]] = {}
    for r in rows:
        by.setdefault(r["data_source"], []).append(r["prompt_tokens"])
    rates = [r["pass_rate"] for r in rows if r["pass_rate"] is not None]
    bins = [round(i / 8, 3) for i in range(9)]
    hist = {str(b): sum(1 for x in rates if abs(x - b) < 1e-9) for b in bins}
    return {
        "stage": stage,
        "rows": len(rows),
        "sources": {
            src: {
                "count": len(t),
                "min_tokens": min(t),
                "median_tokens": int(statistics.median(t)),
                "max_tokens": max(t),
            }
            for src, t in sorted(by.items())
        },
        "pass_rate_histogram": hist,
    }


def card_markdown(card: dict[str, Any]) -> str:
    lines = [
        f"# Data card: {card['stage']}",
        "",
        f"{card['rows']} rows.",
        "",
        "| data_source | rows | min tokens | median tokens | max tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for src, s in card["sources"].items():
        lines.append(f"| {src} | {s['count']} | {s['min_tokens']} | {s['median_tokens']} | {s['max_tokens']} |")
    lines += ["", "Filter pass rate of the QA rows (correct / n):", "", "| pass rate | rows |", "|---:|---:|"]
    lines += [f"| {k} | {v} |" for k, v in card["pass_rate_histogram"].items()]
    hay = card.get("retrieval_haystack")
    if hay and hay["examples"]:
        lines += [
            "",
            f"Retrieval haystack: {hay['examples']} examples from {hay['books']} books use {hay['passages_used']} "
            f"paragraphs, {hay['distinct_passages']} distinct ({hay['distinct_share']:.1%}).",
        ]
    return "\n".join(lines) + "\n"


def preflight(paths: list[Path], max_tokens: int, show: int = 5) -> dict[str, Any]:
    """Raise if any prompt is longer than ``max_tokens`` (prompts are never truncated in training)."""
    rows = [(r["prompt_tokens"], r["id"], str(p)) for p in paths for r in read_parquet(p)]
    rows.sort(reverse=True)
    over = [r for r in rows if r[0] > max_tokens]
    if over:
        worst = "\n  ".join(f"{n} tokens: {rid} ({path})" for n, rid, path in over[:show])
        raise ValueError(
            f"{len(over)} prompts exceed mixture.max_prompt_tokens={max_tokens}; longest:\n  {worst}\n"
            "Raise mixture.max_prompt_tokens (and the trainer's max prompt length) or lower fill.train_length."
        )
    return {
        "max_prompt_tokens": max_tokens,
        "rows": len(rows),
        "longest": [{"tokens": n, "id": rid, "file": path} for n, rid, path in rows[:show]],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.mixture", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--stage", required=True)
    b.add_argument("--keychain", nargs="*", type=Path, default=[], help="<dataset>=<parquet> pairs")
    b.add_argument("--plain", nargs="*", type=Path, default=[], help="<dataset>=<parquet> pairs")
    b.add_argument("--retrieval", type=Path, required=True)
    b.add_argument("--dapo", type=Path, required=True)
    b.add_argument("--math-choice", type=Path, required=True)
    b.add_argument("--keychain-books", type=Path, default=None, help="KeyChain over Book-RULER rows (both arms)")
    b.add_argument("--tokenizer", type=Path, required=True)
    b.add_argument("--params", required=True, help="JSON: {counts, exclude, system_prompt}")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--output", type=Path, required=True)
    b.add_argument("--card-json", type=Path, required=True)
    b.add_argument("--card-md", type=Path, required=True)
    v = sub.add_parser("validation", help="retrieval rows as the validation slice (eval.validation.source)")
    v.add_argument("--retrieval", type=Path, required=True)
    v.add_argument("--system-prompt", default="loongrl")
    v.add_argument("--output", type=Path, required=True)
    c = sub.add_parser("preflight")
    c.add_argument("--inputs", nargs="+", type=Path, required=True)
    c.add_argument("--max-prompt-tokens", type=int, required=True)
    c.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    if args.cmd == "validation":
        rows = validation_rows(read_parquet(args.retrieval), system_prompt(args.system_prompt))
        if not rows:
            raise ValueError(f"{args.retrieval}: no retrieval rows for the validation slice")
        write_parquet(rows, args.output, MIXTURE_SCHEMA)
        log.info("validation slice: %d retrieval rows -> %s", len(rows), args.output)
        return
    if args.cmd == "preflight":
        report = preflight(args.inputs, args.max_prompt_tokens)
        write_json(report, args.output)
        log.info("preflight ok: %s", report)
        return
    p = json.loads(args.params)

    def by_dataset(pairs: list[Path]) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for item in pairs:
            ds, _, path = str(item).partition("=")
            out[ds] = read_parquet(path, QA_SCHEMA)
            check_qa_rows(out[ds], path)
        return out

    inputs = {
        "keychain": by_dataset(args.keychain),
        "plain_qa": by_dataset(args.plain),
        "retrieval": read_parquet(args.retrieval),
        "dapo_math": read_parquet(args.dapo),
        "math_choice": read_parquet(args.math_choice),
        "keychain_books": read_parquet(args.keychain_books) if args.keychain_books else [],
    }
    rows = build_mixture(
        inputs,
        counts=p["counts"],
        exclude=p["exclude"],
        system=system_prompt(p["system_prompt"]),
        tokenizer=load_tokenizer(args.tokenizer),
        seed=args.seed,
    )
    write_parquet(rows, args.output, MIXTURE_SCHEMA)
    card = data_card(rows, args.stage)
    taken = {r["id"] for r in rows}
    card["retrieval_haystack"] = passage_stats([r for r in inputs["retrieval"] if r["id"] in taken])
    write_json(card, args.card_json)
    write_text(card_markdown(card), args.card_md)
    log.info("mixture %s: %d rows", args.stage, len(rows))


if __name__ == "__main__":
    run(main)
