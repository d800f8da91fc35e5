"""Stage 5: KeyChain insertion.

Into each filled context go ``num_chains`` chains of ``chain_length`` random keys. A chain ``[k1..kL]`` becomes the
pairs ``{"k1": "k2"} ... {"kL": "<question>"}``; chain 0 ends at the row's true question, every other chain at a
distractor question drawn from another row of the same dataset. All pairs are shuffled and inserted after randomly
chosen insertion points, written as the official generator writes them (raw, not JSON-escaped, followed by ``.``),
and the prompt names the head of chain 0 as the start key.

Insertion points (``keychain.insert_at``): ``sentence_end`` (default) is ``.``, ``?`` or ``!`` followed by
whitespace, or a line end that does not close a ``Passage N:`` label, so a pair never splits a number (``4.02``)
or a passage's label from its title. ``any_stopper`` is the official generator's rule: after any ``.``, ``?`` or
newline.

Question sources: multi-hop QA rows (``build_keychain_rows``, the paper's), or Book-RULER needles
(``build_book_keychain_rows``): a book haystack holding one "special magic number" needle per chain, the true chain
ending at one needle's question and every distractor chain at another's, so a wrong chain yields a plausible wrong
number (the laptop model cannot answer multi-hop QA, but it can read a number: what is left to learn is the chain).
Pairs are written as the paper's JSON pairs or as sentences (``PAIR_FORMATS``).

Speed: insertion is one pass over the context (sorted cut points, one join); the finished prompts are tokenised once,
in a single batched call, to record their length.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.books import Haystack, distinct_seven_digit, insert_needles, load_books
from loongrl.cli import add_synthesis_args, run, setup_logging
from loongrl.data.retrieval import HEAD, NEEDLE, QUESTION, select_books
from loongrl.io import check_qa_rows, read_parquet, write_json, write_parquet
from loongrl.models import load_tokenizer
from loongrl.prompts import (
    KEYCHAIN_ANSWER_PREFIX,
    KEYCHAIN_ENDINGS,
    KEYCHAIN_TEMPLATE,
    chat_token_counts,
    messages,
    system_prompt,
    token_stats,
)
from loongrl.rng import example_rng
from loongrl.schemas import QA_FIELDS, QA_SCHEMA

log = logging.getLogger(__name__)

KEYCHAIN_SCHEMA = pa.schema(
    [
        *QA_FIELDS,
        ("user_prompt", pa.string()),
        ("start_key", pa.string()),
        ("chains", pa.list_(pa.list_(pa.string()))),
        ("distractor_questions", pa.list_(pa.string())),
        ("n_pairs", pa.int32()),
        ("length", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("pass_rate", pa.float64()),
    ]
)

# KeyChain over Book-RULER questions (``build_book_keychain_rows``): each row is both arms of Table 4 in miniature,
# the KeyChain prompt (``user_prompt``, answered after ``prefill`` when set) and the same haystack and needles with
# the true question asked directly (``direct_prompt``: the Book-RULER multi-key prompt, no pairs)
KEYCHAIN_BOOKS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("question", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("user_prompt", pa.string()),
        ("prefill", pa.string()),
        ("direct_prompt", pa.string()),
        ("start_key", pa.string()),
        ("chains", pa.list_(pa.list_(pa.string()))),
        ("distractor_questions", pa.list_(pa.string())),
        ("distractor_answers", pa.list_(pa.string())),
        ("n_pairs", pa.int32()),
        ("length", pa.int32()),
        ("book", pa.string()),
        ("passage_start", pa.int32()),
        ("passages", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("direct_prompt_tokens", pa.int32()),
    ]
)

STOPPERS = frozenset("\n.?")  # the official generator's insertion characters (insert_at: any_stopper)
INSERT_AT = ("sentence_end", "any_stopper")
_SENTENCE_END = re.compile(r"[.?!](?=\s)|\n")
_PASSAGE_LABEL = re.compile(r"Passage \d+:$")


def num_chains(length: int, chains_per_1k: int = 1) -> int:
    """16 chains at 16K with the paper-era default (``length // 1024``)."""
    return max(1, length // 1024 * chains_per_1k)


def make_key(rng, key_format: str) -> str:
    """A UUID4 from the example RNG (reproducible), full or as 8 hex characters."""
    u = uuid.UUID(int=rng.getrandbits(128), version=4)
    return str(u) if key_format == "uuid4" else u.hex[:8]


def make_chains(rng, n: int, length: int, key_format: str) -> list[list[str]]:
    seen: set[str] = set()
    chains = []
    for _ in range(n):
        chain = []
        while len(chain) < length:
            k = make_key(rng, key_format)
            if k not in seen:  # 8-hex keys can collide; a duplicate key would fork a chain
                seen.add(k)
                chain.append(k)
        chains.append(chain)
    return chains


PAIR_FORMATS = ("json", "sentence")
MAX_SPAN_DRAWS = 100


def pair_text(key: str, value: str, pair_format: str = "json") -> str:
    """The official pair format (``json``): an f-string, not JSON-escaped; or the same pair as a sentence."""
    if pair_format == "json":
        return '{"' + key + '": "' + value + '"}'
    if pair_format == "sentence":
        return f"The key {key} leads to: {value}"
    raise ValueError(f"keychain pair_format: {pair_format!r} is not one of {PAIR_FORMATS}")


def chain_pairs(chains: list[list[str]], questions: list[str], pair_format: str = "json") -> list[str]:
    pairs = []
    for chain, question in zip(chains, questions, strict=True):
        pairs += [pair_text(a, b, pair_format) for a, b in itertools.pairwise(chain)]
        pairs.append(pair_text(chain[-1], question, pair_format))
    return pairs


def insertion_points(context: str, insert_at: str = "sentence_end") -> list[int]:
    """Indices of the characters a pair may follow (see the module docstring)."""
    if insert_at == "any_stopper":
        return [i for i, ch in enumerate(context) if ch in STOPPERS]
    if insert_at != "sentence_end":
        raise ValueError(f"keychain.insert_at: {insert_at!r} is not one of {INSERT_AT}")
    points = []
    for m in _SENTENCE_END.finditer(context):
        i = m.start()
        if context[i] == "\n" and _PASSAGE_LABEL.search(context, context.rfind("\n", 0, i) + 1, i):
            continue
        points.append(i)
    return points


def insert_pairs(context: str, pairs: list[str], rng, insert_at: str = "sentence_end") -> str:
    """Insert each pair after a distinct, randomly chosen insertion point (one pass, one join)."""
    candidates = insertion_points(context, insert_at)
    if len(candidates) < len(pairs):
        raise ValueError(f"context has {len(candidates)} sentence/line ends but {len(pairs)} pairs must be inserted")
    positions = sorted(rng.sample(candidates, len(pairs)))
    pairs = list(pairs)
    rng.shuffle(pairs)
    parts, prev = [], 0
    for pos, pair in zip(positions, pairs, strict=True):
        parts.append(context[prev : pos + 1])
        parts.append(("" if context[pos] == "\n" else " ") + pair + ".")
        prev = pos + 1
    parts.append(context[prev:])
    return "".join(parts)


def pick_distractors(rng, question: str, pool: list[str], k: int) -> list[str]:
    """``k`` distinct questions of other rows, never equal to the row's own question.

    ``pool`` is the dataset's unique questions, sorted (built once, see ``distractor_pool``).
    """
    own = question.strip()
    if len(pool) - (1 if own in pool else 0) < k:
        raise ValueError(f"need {k} distractor questions but the dataset has only {len(pool)} questions")
    picked = rng.sample(pool, min(k + 1, len(pool)))
    return [q for q in picked if q.strip() != own][:k]


def distractor_pool(questions: list[str]) -> list[str]:
    """Unique, stripped questions in a fixed order, so sampling is reproducible."""
    return sorted({q.strip() for q in questions if q.strip()})


def keychain_prompt(context: str, start_key: str, quote: bool, ending: str = "paper") -> str:
    """The KeyChain prompt; ``ending`` names its last line (``prompts.KEYCHAIN_ENDINGS``; ``paper`` by default)."""
    text = KEYCHAIN_TEMPLATE.format(context=context, start_key=f'"{start_key}"' if quote else start_key)
    return text.removesuffix(KEYCHAIN_ENDINGS["paper"]) + KEYCHAIN_ENDINGS[ending]


def build_keychain_rows(
    rows: list[dict[str, Any]],
    questions: list[str],
    tokenizer,
    *,
    length: int,
    chain_length: int,
    chains_per_1k: int,
    key_format: str,
    quote_start_key: bool,
    system: str | None,
    seed: int,
    insert_at: str = "sentence_end",
) -> list[dict[str, Any]]:
    """KeyChain rows for every filled row; prompt token counts come from one batched tokenisation."""
    n_chains = num_chains(length, chains_per_1k)
    pool = distractor_pool(questions)
    out = []
    for row in rows:
        rng = example_rng(seed, "keychain", row["id"], length)
        chains = make_chains(rng, n_chains, chain_length, key_format)
        distractors = pick_distractors(rng, row["question"], pool, n_chains - 1)
        pairs = chain_pairs(chains, [row["question"], *distractors])
        try:
            context = insert_pairs(row["context"], pairs, rng, insert_at)
        except ValueError as exc:
            raise ValueError(f"KeyChain row {row['id']} (length {length}): {exc}") from exc
        out.append(
            {
                "id": row["id"],
                "dataset": row["dataset"],
                "question": row["question"],
                "answers": list(row["answers"]),
                "user_prompt": keychain_prompt(context, chains[0][0], quote_start_key),
                "start_key": chains[0][0],
                "chains": chains,
                "distractor_questions": distractors,
                "n_pairs": len(pairs),
                "length": length,
                "pass_rate": row.get("pass_rate"),
            }
        )
    for r, n in zip(out, chat_token_counts(tokenizer, [messages(r["user_prompt"], system) for r in out]), strict=True):
        r["prompt_tokens"] = n
    return out


def build_book_keychain_rows(
    haystack: Haystack,
    tokenizer,
    *,
    examples: int,
    length: int,
    hops: int,
    chains: int,
    pair_format: str = "json",
    quote_start_key: bool = True,
    system: str | None = None,
    seed: int,
    insert_at: str = "sentence_end",
    ending: str = "paper",
    prefill: str | None = None,
) -> list[dict[str, Any]]:
    """KeyChain over Book-RULER questions: ``chains`` needles ("One of the special magic numbers for <key> is:
    <number>.") in a stretch of book, ``chains`` chains of ``hops`` UUID keys, chain 0 ending at the question of
    needle 0, each other chain at another needle's question. The book text and its needles fill ``length`` tokens
    (as a Book-RULER multi-key row of that length); the pairs come on top, and ``prompt_tokens`` counts the whole.
    ``distractor_answers`` are the numbers a wrong chain leads to. ``prefill`` starts the model's reply to the
    KeyChain prompt (``prompts.KEYCHAIN_ANSWER_PREFIX``); ``direct_prompt`` asks the true question of the same
    haystack and needles, without pairs (Table 4's arm without KeyChain)."""
    if chains < 1 or hops < 1:
        raise ValueError(f"keychain over books needs hops >= 1 and chains >= 1 (got hops={hops}, chains={chains})")
    if ending not in KEYCHAIN_ENDINGS:
        raise ValueError(f"keychain over books: unknown prompt ending {ending!r} (one of {sorted(KEYCHAIN_ENDINGS)})")
    out = []
    for i in range(examples):
        rng = example_rng(seed, "keychain-books", i, length, hops, chains, pair_format)
        needle_keys = [make_key(rng, "uuid4") for _ in range(chains)]
        values = distinct_seven_digit(rng, chains)  # a distractor chain never leads to the true answer
        needles = [NEEDLE.format(key=k, value=v) for k, v in zip(needle_keys, values, strict=True)]
        questions = [QUESTION["multikey"].format(key=k) for k in needle_keys]
        # insert_needles keeps its list's order: shuffled, so the true needle's place in the text says nothing
        # (in list order it always came first, and the base model picks the later needle 71 % of the time)
        placed = rng.sample(needles, len(needles))
        keys = make_chains(rng, chains, hops, "uuid4")
        pairs = chain_pairs(keys, questions, pair_format)
        # a stretch with room for every pair (at short lengths one long paragraph can leave too few sentence ends)
        for _ in range(MAX_SPAN_DRAWS):
            book, start, paras = haystack.span(rng, length)
            hay = insert_needles(paras, placed, rng)
            if len(insertion_points(hay, insert_at)) >= len(pairs):
                break
        else:
            raise ValueError(
                f"keychain over books: no stretch of {length} tokens in {MAX_SPAN_DRAWS} draws has {len(pairs)} "
                "insertion points (raise the length or lower hops x chains)"
            )
        context = insert_pairs(hay, pairs, rng, insert_at)
        out.append(
            {
                "id": f"keychain-books-{length}-h{hops}-c{chains}-{pair_format}-{i:06d}",
                "dataset": "book_ruler",
                "question": questions[0],
                "answers": [values[0]],
                "user_prompt": keychain_prompt(context, keys[0][0], quote_start_key, ending),
                "prefill": prefill,
                "direct_prompt": HEAD + hay + "\n" + questions[0],
                "start_key": keys[0][0],
                "chains": keys,
                "distractor_questions": questions[1:],
                "distractor_answers": values[1:],
                "n_pairs": chains * hops,
                "length": length,
                "book": book,
                "passage_start": start,
                "passages": len(paras),
                "pass_rate": None,
            }
        )
    keychain = chat_token_counts(tokenizer, [messages(r["user_prompt"], system, prefill) for r in out])
    direct = chat_token_counts(tokenizer, [messages(r["direct_prompt"], system) for r in out])
    for r, n, d in zip(out, keychain, direct, strict=True):
        r["prompt_tokens"], r["direct_prompt_tokens"] = n, d
    return out


def books_main(argv: list[str]) -> None:
    """``python -m loongrl.data.keychain books``: KeyChain over Book-RULER questions from a books folder (the
    training books, or ``--only-books`` the held-out ones), with the config's ``keychain.books`` settings."""
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.keychain books", description=books_main.__doc__)
    ap.add_argument("--books-dir", required=True, type=Path)
    ap.add_argument("--examples", required=True, type=int)
    ap.add_argument("--exclude-books", nargs="*", default=[], help="book files left out (the held-out slice)")
    ap.add_argument("--only-books", nargs="*", default=None, help="only these book files (the held-out eval)")
    add_synthesis_args(ap, "JSON of the config's keychain.books section")
    args = ap.parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    tokenizer = load_tokenizer(args.tokenizer)
    books = select_books(load_books([args.books_dir]), exclude=args.exclude_books, only=args.only_books)
    rows = build_book_keychain_rows(
        Haystack(books, tokenizer),
        tokenizer,
        examples=args.examples,
        length=args.length,
        hops=p["hops"],
        chains=p["chains"],
        pair_format=p["pair_format"],
        quote_start_key=p["quote_start_key"],
        system=system_prompt(args.system_prompt),
        seed=args.seed,
        insert_at=p["insert_at"],
        ending=p["ending"],
        prefill=KEYCHAIN_ANSWER_PREFIX if p["answer_prefix"] else None,
    )
    write_parquet(rows, args.output, KEYCHAIN_BOOKS_SCHEMA)
    stats = {
        "length": args.length,
        "examples": len(rows),
        "books": sorted({r["book"] for r in rows}),
        **{k: p[k] for k in ("hops", "chains", "pair_format", "ending", "answer_prefix")},
        **token_stats([r["prompt_tokens"] for r in rows]),
        "direct": token_stats([r["direct_prompt_tokens"] for r in rows]),
    }
    write_json(stats, args.stats)
    log.info("keychain over books %s", stats)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["books"]:  # the Book-RULER question source; the rest is the paper's (multi-hop QA rows)
        return books_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.keychain", description=__doc__)
    ap.add_argument("--filled", required=True, type=Path, help="filled KeyChain-pool parquet")
    ap.add_argument("--raw", required=True, type=Path, help="normalised raw QA parquet (distractor questions)")
    add_synthesis_args(ap, "JSON of the config's keychain section")
    args = ap.parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    filled = read_parquet(args.filled, QA_SCHEMA)
    check_qa_rows(filled, args.filled, empty_ok=True)  # split.keychain_questions may be 0
    rows = build_keychain_rows(
        filled,
        [r["question"] for r in read_parquet(args.raw, QA_SCHEMA)],
        load_tokenizer(args.tokenizer),
        length=args.length,
        chain_length=p["chain_length"],
        chains_per_1k=p["chains_per_1k"],
        key_format=p["key_format"],
        quote_start_key=p["quote_start_key"],
        system=system_prompt(args.system_prompt),
        seed=args.seed,
        insert_at=p["insert_at"],
    )
    write_parquet(rows, args.output, KEYCHAIN_SCHEMA)
    toks = [r["prompt_tokens"] for r in rows]
    stats = {
        "length": args.length,
        "examples": len(rows),
        "num_chains": num_chains(args.length, p["chains_per_1k"]),
        "pairs_per_example": rows[0]["n_pairs"] if rows else 0,
        **token_stats(toks),
    }
    write_json(stats, args.stats)
    log.info("keychain %s", stats)


if __name__ == "__main__":
    run(main)
