"""Public-domain book haystacks: the long filler text of Book-RULER retrieval, NIAH and RULER.

Books are plain-text Project Gutenberg files. The training retrieval data (data half) and the synthetic eval
builders (eval half) cut contiguous stretches of paragraphs out of them and insert needles between sentences; the
IFEval scorer trains its offline Punkt sentence model on them.
"""

from __future__ import annotations

import re
from pathlib import Path

from loongrl.prompts import count_tokens_batch

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
        self.tokenizer = tokenizer
        self.books = {name: paragraphs(strip_gutenberg(text)) for name, text in sorted(books.items())}
        self.tokens = {name: count_tokens_batch(tokenizer, ps) for name, ps in self.books.items()}
        self.sep = count_tokens_batch(tokenizer, ["\n\n"])[0]

    def stretch(self, rng, budget: int) -> tuple[str, list[str]]:
        """Paragraphs filling ``budget`` tokens: from a random paragraph of a random book to its end, then the next
        books in turn, the whole collection again if it is still short (the eval haystacks).

        One book is often shorter than a 64K/128K cell (Alice in Wonderland, The Time Machine: 25-40K words), and
        the official generators never cut the haystack short: Kamradt's NIAH concatenates files until the length
        is met, RULER repeats its essays as many times as needed (scripts/data/synthetic/niah.py). Returns the first
        book's name.
        """
        names = sorted(self.books)
        first = rng.choice(names)
        b, i = names.index(first), rng.randrange(len(self.books[first]))
        out, total = [], 0
        while True:  # ends at the first paragraph that does not fit: every paragraph holds a token
            name = names[b % len(names)]
            ps, ts = self.books[name], self.tokens[name]
            for j in range(i, len(ps)):
                if total + ts[j] + self.sep > budget:
                    room = budget - total - self.sep
                    if room > 0:  # the next paragraph cut to what is left, so the haystack meets its budget
                        ids = self.tokenizer(ps[j], add_special_tokens=False)["input_ids"][:room]
                        out.append(self.tokenizer.decode(ids))
                    return first, out
                out.append(ps[j])
                total += ts[j] + self.sep
            b, i = b + 1, 0

    def span(self, rng, budget: int) -> tuple[str, int, list[str]]:
        """``stretch`` plus the index of its first paragraph (paragraph ``(start + k) % len(book)`` is the k-th)."""
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
        return name, i, out

    def paragraph_count(self, name: str) -> int:
        return len(self.books[name])


def seven_digit(rng) -> str:
    return str(rng.randrange(1_000_000, 10_000_000))


def distinct_seven_digit(rng, count: int) -> list[str]:
    """``count`` different 7-digit numbers, drawn in order (a repeat is drawn again)."""
    values: list[str] = []
    while len(values) < count:
        v = seven_digit(rng)
        if v not in values:
            values.append(v)
    return values


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


def load_books(folders: list[Path], only: list[str] | None = None) -> dict[str, str]:
    """Every ``*.txt`` book of the folders by file name; ``only``: just these files (all must be there)."""
    files = [f for d in folders for f in sorted(Path(d).glob("*.txt"))]
    if only is not None:
        missing = sorted(set(only) - {f.name for f in files})
        if missing:
            raise FileNotFoundError(f"books {missing} not in {[str(d) for d in folders]}")
        files = [f for f in files if f.name in set(only)]
    books = {f.name: read_book(f) for f in files}
    if not books:
        raise FileNotFoundError(f"no *.txt books in {[str(d) for d in folders]}")
    return books


GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/{id}/pg{id}.txt"


def download_books(
    ids: list[int],
    out_dir: Path,
    *,
    pins: dict[str, str] | None = None,
    pin_key: str | None = None,
    strict: bool = False,
) -> None:
    """Fetch plain-text books from Project Gutenberg (download rule only), each checked against its pin
    (``pins``: id -> sha256, the config's ``pin_key`` map; ``loongrl.download.check_pin``)."""
    from loongrl.download import DownloadError, check_pin, fetch

    out_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        dest = out_dir / f"pg{i}.txt"
        url = GUTENBERG_URL.format(id=i)
        digest = fetch(url, dest)
        try:
            check_pin(
                url,
                digest,
                pinned=(pins or {}).get(str(i)),
                pin_key=f"{pin_key}.{i}" if pin_key else None,
                strict=strict,
            )
        except DownloadError:
            dest.unlink()
            raise


def main(argv: list[str] | None = None) -> None:
    import argparse

    from loongrl.cli import setup_logging

    ap = argparse.ArgumentParser(prog="python -m loongrl.books", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="fetch Project Gutenberg books by id")
    d.add_argument("--ids", nargs="+", type=int, required=True)
    d.add_argument("--out-dir", type=Path, required=True)
    d.add_argument("--sha256", nargs="*", default=[], metavar="ID=HEX", help="pins, one per book id")
    d.add_argument("--pin-key", default=None, help="the config key of the pins (named in messages)")
    d.add_argument("--strict", action="store_true", help="an unpinned book is an error (strict_downloads)")
    args = ap.parse_args(argv)
    setup_logging()
    pins = dict(x.split("=", 1) for x in args.sha256)
    download_books(args.ids, args.out_dir, pins=pins, pin_key=args.pin_key, strict=args.strict)


if __name__ == "__main__":
    from loongrl.cli import run

    run(main)
