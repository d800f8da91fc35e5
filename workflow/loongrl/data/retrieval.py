"""Stage 6: "Book RULER" retrieval data on a public-domain book haystack.

Two RULER-style needle tasks at the training length [P Table 1]:

* multi-key: ``keys`` needles, each with its own key and one value; the question asks for one key's value.
* multi-value: one key with ``values`` needles; the question asks for every value.

Needles read "One of the special magic numbers for <key> is: <7-digit number>." and are inserted between sentences
of a contiguous stretch of one book, at uniformly random depths. Book paragraphs are tokenised once per run; the
finished prompts once, in a batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.books import Haystack, distinct_seven_digit, insert_needles, load_books, seven_digit
from loongrl.cli import run, setup_logging
from loongrl.io import write_parquet
from loongrl.models import load_tokenizer
from loongrl.prompts import chat_token_counts, count_prompt_tokens, count_tokens_batch, messages, system_prompt
from loongrl.rng import example_rng

log = logging.getLogger(__name__)

RETRIEVAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("user_prompt", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("query_key", pa.string()),
        ("book", pa.string()),
        ("passage_start", pa.int32()),  # the haystack: paragraphs start .. start + passages - 1 of book (wrapping)
        ("passages", pa.int32()),
        ("book_passages", pa.int32()),
        ("length", pa.int32()),
        ("prompt_tokens", pa.int32()),
    ]
)

HEAD = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize them. "
    "I will quiz you about the numbers afterwards.\n"
)
QUESTION = {
    "multikey": "What is the special magic number for {key} mentioned in the provided text?",
    "multivalue": "What are all the special magic numbers for {key} mentioned in the provided text?",
}
NEEDLE = "One of the special magic numbers for {key} is: {value}."


def make_example(
    task: str,
    index: int,
    haystack: Haystack,
    tokenizer,
    *,
    length: int,
    reserve: int,
    count: int,
    system: str | None,
    seed: int,
) -> dict[str, Any]:
    rng = example_rng(seed, "retrieval", task, index, length)
    if task == "multikey":
        keys = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]
        values = [seven_digit(rng) for _ in keys]
        needles = [NEEDLE.format(key=k, value=v) for k, v in zip(keys, values, strict=True)]
        qi = rng.randrange(count)
        query, answers = keys[qi], [values[qi]]
    else:
        query = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        values = distinct_seven_digit(rng, count)
        needles = [NEEDLE.format(key=query, value=v) for v in values]
        answers = values
    question = QUESTION[task].format(key=query)
    overhead = count_prompt_tokens(tokenizer, messages(HEAD + "\n" + question, system))
    needle_tokens = sum(count_tokens_batch(tokenizer, [" " + n for n in needles]))
    book, start, paras = haystack.span(rng, length - reserve - overhead - needle_tokens)
    user = HEAD + insert_needles(paras, needles, rng) + "\n" + question
    return {
        "id": f"{task}-{length}-{index:06d}",
        "task": task,
        "user_prompt": user,
        "answers": answers,
        "query_key": query,
        "book": book,
        "passage_start": start,
        "passages": len(paras),
        "book_passages": haystack.paragraph_count(book),
        "length": length,
    }


def build(
    books: dict[str, str],
    tokenizer,
    *,
    length: int,
    reserve: int,
    multikey: dict[str, int],
    multivalue: dict[str, int],
    system: str | None,
    seed: int,
) -> list[dict[str, Any]]:
    hay = Haystack(books, tokenizer)
    rows = [
        make_example(task, i, hay, tokenizer, length=length, reserve=reserve, count=n, system=system, seed=seed)
        for task, spec, n in (("multikey", multikey, multikey["keys"]), ("multivalue", multivalue, multivalue["values"]))
        for i in range(spec["examples"])
    ]
    for r, n in zip(
        rows, chat_token_counts(tokenizer, [messages(r["user_prompt"], system) for r in rows]), strict=True
    ):
        r["prompt_tokens"] = n
    return rows


def select_books(books: dict[str, str], *, exclude: list[str] = (), only: list[str] | None = None) -> dict[str, str]:
    """The training slice (every book but ``exclude``: ``retrieval.heldout_books``) or the held-out slice
    (``only`` those), so the held-out eval's haystacks and needles never occur in training."""
    missing = sorted((set(exclude) | set(only or [])) - set(books))
    if missing:
        raise FileNotFoundError(f"retrieval.heldout_books: {missing} not among the books {sorted(books)}")
    kept = {k: v for k, v in books.items() if k not in set(exclude) and (only is None or k in set(only))}
    if not kept:
        raise ValueError(f"no books left for retrieval (exclude {list(exclude)}, only {only})")
    return kept


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.retrieval", description=__doc__)
    b = ap
    b.add_argument("--books-dir", type=Path, required=True)
    b.add_argument("--tokenizer", type=Path, required=True)
    b.add_argument("--length", type=int, required=True)
    b.add_argument("--reserve", type=int, default=128)
    b.add_argument("--params", required=True, help="JSON of the config's retrieval section")
    b.add_argument("--system-prompt", default="loongrl")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--exclude-books", nargs="*", default=[], help="book files left out (the held-out slice)")
    b.add_argument("--only-books", nargs="*", default=None, help="only these book files (the held-out eval)")
    b.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    books = select_books(load_books([args.books_dir]), exclude=args.exclude_books, only=args.only_books)
    rows = build(
        books,
        load_tokenizer(args.tokenizer),
        length=args.length,
        reserve=args.reserve,
        multikey=p["multikey"],
        multivalue=p["multivalue"],
        system=system_prompt(args.system_prompt),
        seed=args.seed,
    )
    write_parquet(rows, args.output, RETRIEVAL_SCHEMA)
    log.info("retrieval: %d rows -> %s", len(rows), args.output)


if __name__ == "__main__":
    run(main)


def passage_stats(rows: list[dict[str, Any]]) -> dict[str, int | float]:
    """How many haystack paragraphs the examples use, and how many of those are distinct (book, paragraph) pairs.

    A low distinct share means many examples were cut from the same text: add books (``retrieval.gutenberg_ids``).
    """
    used: set[tuple[str, int]] = set()
    total = 0
    for r in rows:
        n = r["book_passages"]
        used.update((r["book"], (r["passage_start"] + k) % n) for k in range(r["passages"]))
        total += r["passages"]
    return {
        "examples": len(rows),
        "books": len({r["book"] for r in rows}),
        "passages_used": total,
        "distinct_passages": len(used),
        "distinct_share": round(len(used) / total, 4) if total else 0.0,
    }
