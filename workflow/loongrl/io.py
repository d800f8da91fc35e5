"""Parquet/JSON I/O shared by every stage.

Writes go to a temporary file in the destination folder and are renamed into place, so a crashed or killed
stage never leaves a half-written output that Snakemake (or a user) could mistake for a finished one.
Parquet is written from plain Python rows with a fixed writer configuration so the same rows give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq


class DataError(ValueError):
    """Bad input data; the message names the file, the row and the field."""

    def __init__(self, path: str | os.PathLike, row: Any, field: str, problem: str) -> None:
        self.path, self.row, self.field = str(path), row, field
        super().__init__(f"{path}: row {row}: field '{field}': {problem}")


class StageError(RuntimeError):
    """An expected failure that is not about a row (a download that fails or does not match its pin): the stage
    CLIs end it in one line, like a DataError."""


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(rows: Sequence[dict[str, Any]], dest: str | os.PathLike, schema: pa.Schema | None = None) -> None:
    """Write rows atomically and deterministically (no pandas metadata, no timestamps)."""
    if schema is not None:
        table = pa.Table.from_pylist(list(rows), schema=schema)
    elif rows:
        table = pa.Table.from_pylist(list(rows))
    else:
        raise ValueError(f"refusing to write {dest}: no rows and no schema")
    table = table.replace_schema_metadata(None)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True, write_statistics=True)


def read_parquet(path: str | os.PathLike, schema: pa.Schema | None = None) -> list[dict[str, Any]]:
    """Read a parquet file into a list of row dicts; a truncated or corrupt file is a DataError naming it.

    With ``schema`` (the producing stage's), every column it names must be there with a type that casts to it
    without loss: a missing column or a string where a list is expected is a DataError naming the file and the
    column at read time, not a KeyError (or a list of characters) deep in the stage.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DataError(path, "-", "<file>", f"not a readable parquet file ({exc})") from exc
    if schema is not None:
        table = conform(table, schema, path)
    return table.to_pylist()


def conform(table: pa.Table, schema: pa.Schema, path: str | os.PathLike) -> pa.Table:
    """``table`` with ``schema``'s columns cast to its types (extra columns kept); a DataError names the first
    missing column or the first one whose values do not cast."""
    names = set(table.column_names)
    for f in schema:
        if f.name not in names:
            raise DataError(path, "-", f.name, f"missing column (the file has: {', '.join(table.column_names)})")
        col = table.column(f.name)
        if col.type == f.type:
            continue
        try:
            cast = col.cast(f.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise DataError(path, "-", f.name, f"type {col.type}, expected {f.type} ({exc})") from exc
        table = table.set_column(table.column_names.index(f.name), f.name, cast)
    return table


def check_qa_rows(
    rows: list[dict[str, Any]], path: str | os.PathLike, *, answers: bool = True, empty_ok: bool = False
) -> None:
    """The rows every QA stage relies on: a non-empty table (unless ``empty_ok``: a pool the config leaves empty),
    unique ``id``s and (``answers``) each row's ``answers`` a non-empty list of non-empty strings. A DataError names
    the file, the row and the field."""
    if not rows and not empty_ok:
        raise DataError(path, "-", "<table>", "no rows")
    seen: set[str] = set()
    for i, r in enumerate(rows):
        rid = r.get("id")
        if rid in seen:
            raise DataError(path, i, "id", f"duplicate id {rid!r}")
        seen.add(rid)
        if answers:
            a = r.get("answers")
            if not isinstance(a, list) or not a or not all(isinstance(x, str) and x.strip() for x in a):
                raise DataError(path, i, "answers", f"expected a non-empty list of non-empty strings, got {a!r}")


def read_rows(path: str | os.PathLike) -> list[Any]:
    """Read a JSON list or JSON-lines file; a broken line is reported with its line number."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"byte {exc.start}", "<file>", f"not UTF-8 text ({exc.reason})") from exc
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"char {exc.pos}", "<json>", f"invalid JSON: {exc.msg}") from exc
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(path, f"line {lineno}", "<json>", f"invalid JSON: {exc.msg}") from exc
    return rows


def write_json(obj: Any, dest: str | os.PathLike) -> None:
    """Write JSON atomically with sorted keys so equal content gives equal bytes."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_text(text: str, dest: str | os.PathLike) -> None:
    """Write a text file atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


T = TypeVar("T")


def shard_rows(rows: list[T], shard: int, shards: int) -> list[T]:
    """Block ``shard`` of ``shards`` contiguous, near-equal blocks; gathering the blocks in order restores ``rows``.

    The GPU stages that scatter over SLURM jobs (the difficulty filter, stage-II rollouts) split their input this way.
    """
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1} ({shards} shards)")
    n = len(rows)
    return rows[shard * n // shards : (shard + 1) * n // shards]


def gather_shards(paths: list[Path]) -> list[dict[str, Any]]:
    """The rows of shard files in shard order; a row id found in two shards is an error naming both files.

    The counterpart of ``shard_rows``: the difficulty filter and the stage-II rollouts gather their jobs with it.
    """
    rows: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        for r in read_parquet(path):
            if r["id"] in seen:
                raise ValueError(f"row {r['id']} is in both {seen[r['id']]} and {path}")
            seen[r["id"]] = path
            rows.append(r)
    return rows
