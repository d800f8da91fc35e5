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


def read_parquet(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a parquet file into a list of row dicts; a truncated or corrupt file is a DataError naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DataError(path, "-", "<file>", f"not a readable parquet file ({exc})") from exc


def read_rows(path: str | os.PathLike) -> list[Any]:
    """Read a JSON list or JSON-lines file; a broken line is reported with its line number."""
    text = Path(path).read_text(encoding="utf-8")
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
