"""Stage 4: long-context filling at one target length.

Each question keeps all of its own documents and is padded with filler documents from the same dataset until the
token budget is reached; passages are rendered in the official ``Passage i:`` format. Gold positions are random per
example (the official fixed-seed shuffle is available as ``placement: fixed_shuffle``).

Speed: every document's token count was computed once (by ``split``), so filling only adds integers. For the Qwen2.5
vocabulary those sums are the exact prompt length (``PassageCost``), and no prompt is tokenised at all; for other
tokenizers the assembled prompts are tokenised once (one batched call) and an example is re-counted only in the
rare case that the additive estimate overshot the budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.cli import add_synthesis_args, run, setup_logging
from loongrl.io import check_qa_rows, read_parquet, write_json, write_parquet
from loongrl.models import load_tokenizer
from loongrl.prompts import (
    chat_token_counts,
    count_prompt_tokens,
    count_tokens_batch,
    join_passages,
    plain_messages,
    system_prompt,
    token_stats,
)
from loongrl.rng import example_rng
from loongrl.schemas import QA_FIELDS, QA_SCHEMA
from loongrl.tokens import counter_for

log = logging.getLogger(__name__)

FILLED_SCHEMA = pa.schema(
    [
        *QA_FIELDS,
        ("context", pa.string()),
        ("n_passages", pa.int32()),
        ("gold_positions", pa.list_(pa.int32())),
        ("length", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("pass_rate", pa.float64()),
    ]
)


class PassageCost:
    """Token cost of passage ``index``: its ``Passage i:\\n`` header plus the counted ``title\\ntext\\n\\n``.

    For the Qwen2.5 vocabulary the pieces add up exactly (``tokens.Counter.splits_at_line_starts``: each piece
    starts with a letter right after a newline), so a prompt's length is known without tokenising it. Other
    tokenizers get an estimate that fill checks with one real count.
    """

    BLOCK = 1024  # headers are counted in blocks of indices, on first use

    def __init__(self, tokenizer):
        # Counted per index, not per digit count: only some tokenizers (Qwen's) split every digit, others (GPT-2
        # style BPE) merge digit runs, so "Passage 10:" and "Passage 99:" can differ in length.
        self.counter = counter_for(tokenizer)
        self.header: list[int] = [0]  # index 0 is unused

    def __call__(self, index: int, doc_tokens: int) -> int:
        while index >= len(self.header):
            start = len(self.header)
            self.header += self.counter([f"Passage {i}:\n" for i in range(start, start + self.BLOCK)])
        return doc_tokens + self.header[index]


def additive_title(title: str) -> bool:
    """A title that starts a new pre-token after ``Passage i:\\n`` (not empty, not a line break)."""
    return bool(title) and title[0] not in "\r\n"


@dataclass(frozen=True)
class PromptFrame:
    """The plain-QA prompt around its context, for exact additive counts: ``prefix + passages + tail``.

    ``prefix`` is the chat template up to the first passage; the tail starts at ``Question:``, the ``\\n\\n``
    before it being counted with the last passage.
    """

    prefix: int
    tails: dict[str, int]

    @classmethod
    def build(cls, tokenizer, rows: list[dict[str, Any]], system: str | None) -> PromptFrame | None:
        counter = counter_for(tokenizer)
        if not counter.splits_at_line_starts:
            return None
        mark = "\x00context\x00"
        texts = [
            tokenizer.apply_chat_template(
                plain_messages(r["question"], mark, system), tokenize=False, add_generation_prompt=True
            )
            for r in rows
        ]
        heads, tails = zip(*(t.split(mark) for t in texts), strict=True) if texts else ((), ())
        if any(
            not h.endswith("\n") or not t.startswith("\n\n") or not t[2:3].isalpha()
            for h, t in zip(heads, tails, strict=True)
        ):
            return None  # a template that does not put the context on its own lines: count prompts for real
        counts = counter([heads[0], *(t[2:] for t in tails)]) if texts else [0]
        return cls(counts[0], dict(zip([r["id"] for r in rows], counts[1:], strict=True)))


def fill_example(
    row: dict[str, Any],
    fillers: list[dict[str, Any]],
    budget: int,
    cost: PassageCost,
    *,
    rng: random.Random,
    placement: str,
    seed: int,
) -> tuple[list[dict[str, Any]], list[bool]] | None:
    """Choose and order the passages of one example; returns (docs, is_own) or None if its own docs do not fit.

    Fillers are drawn uniformly without replacement, skipping the question's own documents.
    """
    own = [
        {**d, "n_tokens": n, "gold": d["title"] in row["gold_titles"]}
        for d, n in zip(row["documents"], row["doc_tokens"], strict=True)
    ]
    total = sum(cost(i, d["n_tokens"]) for i, d in enumerate(own, 1))
    if total > budget:
        # Drop the question's own non-gold paragraphs (its original distractors) before giving up.
        own = [d for d in own if d["gold"]] or own
        total = sum(cost(i, d["n_tokens"]) for i, d in enumerate(own, 1))
        if total > budget:
            return None
    own_keys = {(d["title"], d["text"]) for d in row["documents"]}
    chosen: list[dict[str, Any]] = []
    n_pool = len(fillers)
    order = rng.sample(range(n_pool), n_pool) if n_pool <= 4096 else None
    tried: set[int] = set()
    misses = 0
    while misses < 64 and len(tried) < n_pool:
        if order is not None:
            if not order:
                break
            j = order.pop()
        else:
            j = rng.randrange(n_pool)
            if j in tried:
                continue
        tried.add(j)
        f = fillers[j]
        if (f["title"], f["text"]) in own_keys:
            continue
        c = cost(len(own) + len(chosen) + 1, f["n_tokens"])
        if total + c > budget:
            misses += 1  # a shorter filler may still fit; stop after a run of misses
            continue
        chosen.append({**f, "gold": False})
        total += c
    docs = [{**d, "own": True} for d in own] + [{**d, "own": False} for d in chosen]
    if placement == "fixed_shuffle":
        random.Random(seed).shuffle(docs)  # [KC qa_filter_data.py]: same seed for every example
    else:
        rng.shuffle(docs)
    return docs, [d["own"] for d in docs]


def fill_rows(
    rows: list[dict[str, Any]],
    fillers: list[dict[str, Any]],
    tokenizer,
    *,
    length: int,
    reserve: int,
    budget_scope: str,
    placement: str,
    system: str | None,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fill every row to ``length``; returns the filled rows and stats (skips, budget, token range)."""
    cost = PassageCost(tokenizer)
    limit = length - reserve
    frame = PromptFrame.build(tokenizer, rows, system) if budget_scope == "prompt" else None
    overhead = count_prompt_tokens(tokenizer, plain_messages("", "", system)) if budget_scope == "prompt" else 0
    question_tokens = dict(
        zip([r["id"] for r in rows], count_tokens_batch(tokenizer, [r["question"] for r in rows]), strict=True)
    )
    out, skipped, built = [], [], []
    for row in rows:
        if frame is not None:
            budget = limit - frame.prefix - frame.tails[row["id"]]
        else:
            budget = limit - overhead - (question_tokens[row["id"]] if budget_scope == "prompt" else 0)
        picked = fill_example(
            row, fillers, budget, cost, rng=example_rng(seed, row["id"], length), placement=placement, seed=seed
        )
        if picked is None:
            skipped.append(row["id"])
            continue
        built.append((row, picked[0]))
    contexts = [join_passages(docs) for _, docs in built]
    if frame is not None:  # exact by construction; examples with an odd title are counted for real
        counts = [
            frame.prefix + frame.tails[r["id"]] + sum(cost(i, d["n_tokens"]) for i, d in enumerate(docs, 1))
            if all(additive_title(d["title"]) for d in docs)
            else None
            for r, docs in built
        ]
        odd = [k for k, n in enumerate(counts) if n is None]
        convs = [plain_messages(built[k][0]["question"], contexts[k], system) for k in odd]
        for k, n in zip(odd, chat_token_counts(tokenizer, convs), strict=True):
            counts[k] = n
    elif budget_scope == "prompt":
        convs = [plain_messages(r["question"], c, system) for (r, _), c in zip(built, contexts, strict=True)]
        counts = chat_token_counts(tokenizer, convs)
    else:
        counts = count_tokens_batch(tokenizer, contexts)
    recounted = 0
    for (row, docs), context, n in zip(built, contexts, counts, strict=True):
        while n > limit:  # the additive estimate overshot: drop one filler and count again
            recounted += 1
            drop = max(i for i, d in enumerate(docs) if not d["own"])
            docs = docs[:drop] + docs[drop + 1 :]
            context = join_passages(docs)
            text = plain_messages(row["question"], context, system) if budget_scope == "prompt" else None
            n = count_prompt_tokens(tokenizer, text) if text else count_tokens_batch(tokenizer, [context])[0]
        prompt_tokens = (
            n
            if budget_scope == "prompt"
            else count_prompt_tokens(tokenizer, plain_messages(row["question"], context, system))
        )
        out.append(
            {
                "id": row["id"],
                "dataset": row["dataset"],
                "question": row["question"],
                "answers": list(row["answers"]),
                "context": context,
                "n_passages": len(docs),
                "gold_positions": [i for i, d in enumerate(docs, 1) if d["gold"]],
                "length": length,
                "prompt_tokens": prompt_tokens,
                "pass_rate": row.get("pass_rate"),
            }
        )
    toks = [r["prompt_tokens"] for r in out]
    stats = {
        "length": length,
        "examples": len(out),
        "skipped_own_docs_too_long": skipped,
        "recounted": recounted,
        **token_stats(toks),
        "budget_scope": budget_scope,
        "placement": placement,
    }
    return out, stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.fill", description=__doc__)
    ap.add_argument("--pool", required=True, type=Path, help="question pool parquet from split")
    ap.add_argument("--fillers", required=True, type=Path)
    add_synthesis_args(ap, "JSON: {generation_reserve, budget_scope, placement}")
    args = ap.parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    tok = load_tokenizer(args.tokenizer)
    pool = read_parquet(args.pool, QA_SCHEMA)
    check_qa_rows(pool, args.pool, empty_ok=True)  # split.*_questions may be 0
    rows, stats = fill_rows(
        pool,
        read_parquet(args.fillers),
        tok,
        length=args.length,
        reserve=p["generation_reserve"],
        budget_scope=p["budget_scope"],
        placement=p["placement"],
        system=system_prompt(args.system_prompt),
        seed=args.seed,
    )
    if not rows:
        raise ValueError(f"{args.pool}: no example fits length {args.length}")
    write_parquet(rows, args.output, FILLED_SCHEMA)
    write_json(stats, args.stats)
    log.info("filled %s at %d: %s", args.pool, args.length, stats)


if __name__ == "__main__":
    run(main)
