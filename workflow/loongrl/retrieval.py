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
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.cli import setup_logging
from loongrl.fill import example_rng
from loongrl.io import atomic_path, write_parquet
from loongrl.models import load_tokenizer
from loongrl.prompts import chat_token_counts, count_prompt_tokens, count_tokens_batch, messages, system_prompt

log = logging.getLogger(__name__)

RETRIEVAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("user_prompt", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("query_key", pa.string()),
        ("book", pa.string()),
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

_PG_START = re.compile(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG EBOOK[^\n]*\n", re.IGNORECASE)
_PG_END = re.compile(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG EBOOK", re.IGNORECASE)


def strip_gutenberg(text: str) -> str:
    """The book body between Project Gutenberg's START/END markers (the whole text if they are absent)."""
    start = _PG_START.search(text)
    end = _PG_END.search(text)
    return text[start.end() if start else 0 : end.start() if end else len(text)].strip()


def read_book(path: Path) -> str:
    """Book text as UTF-8, falling back to Windows-1252 (older Gutenberg files use it)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


class Haystack:
    """Paragraphs of several books with their token counts (computed once)."""

    def __init__(self, books: dict[str, str], tokenizer):
        self.books = {name: paragraphs(strip_gutenberg(text)) for name, text in sorted(books.items())}
        self.tokens = {name: count_tokens_batch(tokenizer, ps) for name, ps in self.books.items()}
        self.sep = count_tokens_batch(tokenizer, ["\n\n"])[0]

    def stretch(self, rng, budget: int) -> tuple[str, list[str]]:
        """A contiguous run of paragraphs of one random book within ``budget`` tokens (wrapping around)."""
        name = rng.choice(sorted(self.books))
        ps, ts = self.books[name], self.tokens[name]
        i = rng.randrange(len(ps))
        out, total = [], 0
        for step in range(len(ps)):
            j = (i + step) % len(ps)
            if total + ts[j] + self.sep > budget:
                break
            out.append(ps[j])
            total += ts[j] + self.sep
        return name, out


def seven_digit(rng) -> str:
    return str(rng.randrange(1_000_000, 10_000_000))


def insert_needles(paras: list[str], needles: list[str], rng) -> str:
    """Insert each needle after a random sentence end of the haystack (one join)."""
    text = "\n\n".join(paras)
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)] or [len(text)]
    cuts = sorted(rng.choices(ends, k=len(needles)))
    parts, prev = [], 0
    for cut, needle in zip(cuts, needles, strict=True):
        parts += [text[prev:cut], " " + needle]
        prev = cut
    parts.append(text[prev:])
    return "".join(parts)


def make_example(
    task: str,
    index: int,
    haystack: Haystack,
    tokenizer,
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
        values = []
        while len(values) < count:
            v = seven_digit(rng)
            if v not in values:
                values.append(v)
        needles = [NEEDLE.format(key=query, value=v) for v in values]
        answers = values
    question = QUESTION[task].format(key=query)
    overhead = count_prompt_tokens(tokenizer, messages(HEAD + "\n" + question, system))
    needle_tokens = sum(count_tokens_batch(tokenizer, [" " + n for n in needles]))
    book, paras = haystack.stretch(rng, length - reserve - overhead - needle_tokens)
    user = HEAD + insert_needles(paras, needles, rng) + "\n" + question
    return {
        "id": f"{task}-{length}-{index:06d}",
        "task": task,
        "user_prompt": user,
        "answers": answers,
        "query_key": query,
        "book": book,
        "length": length,
    }


def build(
    books: dict[str, str],
    tokenizer,
    length: int,
    reserve: int,
    multikey: dict[str, int],
    multivalue: dict[str, int],
    system: str | None,
    seed: int,
) -> list[dict[str, Any]]:
    hay = Haystack(books, tokenizer)
    rows = [
        make_example("multikey", i, hay, tokenizer, length, reserve, multikey["keys"], system, seed)
        for i in range(multikey["examples"])
    ] + [
        make_example("multivalue", i, hay, tokenizer, length, reserve, multivalue["values"], system, seed)
        for i in range(multivalue["examples"])
    ]
    for r, n in zip(
        rows, chat_token_counts(tokenizer, [messages(r["user_prompt"], system) for r in rows]), strict=True
    ):
        r["prompt_tokens"] = n
    return rows


def download_books(ids: list[int], out_dir: Path) -> None:
    """Fetch plain-text books from Project Gutenberg (download rule only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        with urllib.request.urlopen(f"https://www.gutenberg.org/cache/epub/{i}/pg{i}.txt", timeout=60) as r:
            data = r.read()
        with atomic_path(out_dir / f"pg{i}.txt") as tmp:
            tmp.write_bytes(data)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.retrieval", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download")
    d.add_argument("--ids", nargs="+", type=int, required=True)
    d.add_argument("--out-dir", type=Path, required=True)
    b = sub.add_parser("build")
    b.add_argument("--books-dir", type=Path, required=True)
    b.add_argument("--tokenizer", type=Path, required=True)
    b.add_argument("--length", type=int, required=True)
    b.add_argument("--reserve", type=int, default=128)
    b.add_argument("--params", required=True, help="JSON of the config's retrieval section")
    b.add_argument("--system-prompt", default="loongrl")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    if args.cmd == "download":
        download_books(args.ids, args.out_dir)
        return
    p = json.loads(args.params)
    books = {f.name: read_book(f) for f in sorted(args.books_dir.glob("*.txt"))}
    if not books:
        raise FileNotFoundError(f"no *.txt books in {args.books_dir}")
    rows = build(
        books,
        load_tokenizer(args.tokenizer),
        args.length,
        args.reserve,
        p["multikey"],
        p["multivalue"],
        system_prompt(args.system_prompt),
        args.seed,
    )
    write_parquet(rows, args.output, RETRIEVAL_SCHEMA)
    log.info("retrieval: %d rows -> %s", len(rows), args.output)


if __name__ == "__main__":
    main()
