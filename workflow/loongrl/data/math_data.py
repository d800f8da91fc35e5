"""Stage 7: math data for the training mixture.

* DAPO-Math-17k (verl RL format: ``prompt`` turns, ``reward_model.ground_truth``); the official release repeats each
  problem many times, so rows are de-duplicated by problem text.
* "Math Choice": MathQA multiple choice (``Problem``, ``options`` "a ) .. , b ) ..", ``correct`` letter) rendered as
  ``Question: ...\\nChoices:(A) ...\\n(B) ...`` with the option letter as the answer [LR data_preprocess].
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.cli import run, setup_logging
from loongrl.io import DataError, read_parquet, read_rows, write_parquet

log = logging.getLogger(__name__)

MATH_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("user_prompt", pa.string()),
        ("answers", pa.list_(pa.string())),
    ]
)

_OPTION = re.compile(r"(?:^|,)\s*([a-e])\s*\)\s*")


def dapo_rows(records: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """Normalise verl-format DAPO rows; duplicates of a problem keep the first."""
    out, seen = [], set()
    for i, r in enumerate(records):
        rid = (r.get("extra_info") or {}).get("index", i) if isinstance(r.get("extra_info"), dict) else i
        prompt = r.get("prompt")
        if not isinstance(prompt, list) or not prompt or not isinstance(prompt[-1], dict):
            raise DataError(path, rid, "prompt", "expected a non-empty list of {role, content} turns")
        content = prompt[-1].get("content")
        if not isinstance(content, str) or not content.strip():
            raise DataError(path, rid, "prompt[-1].content", "missing or empty")
        rm = r.get("reward_model")
        gt = rm.get("ground_truth") if isinstance(rm, dict) else None
        if not isinstance(gt, str) or not gt.strip():
            raise DataError(path, rid, "reward_model.ground_truth", "missing or empty")
        if content in seen:
            continue
        seen.add(content)
        out.append({"id": f"dapo-{len(out):06d}", "task": "dapo_math", "user_prompt": content, "answers": [gt]})
    return out


_MARK = re.compile(r"^\s*([a-e])\s*\)\s*")


def parse_options(options: str) -> list[str]:
    """MathQA options -> option texts, letters a, b, c... in order.

    Two layouts occur in the official files: ``"a ) 38 , b ) 27.675 , ..."`` and a Python list literal
    ``"['a ) a ) 4 inches', 'b ) b ) 6 inches', ...]"`` (with the letter mark sometimes doubled).
    """
    text = options.strip()
    if text.startswith("["):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"cannot parse options {options!r}") from exc
        out, letters = [], []
        for item in items:
            m = _MARK.match(str(item))
            if not m:
                raise ValueError(f"cannot parse options {options!r}")
            letters.append(m.group(1))
            rest = str(item)[m.end() :]
            again = _MARK.match(rest)
            out.append((rest[again.end() :] if again and again.group(1) == m.group(1) else rest).strip())
    else:
        marks = list(_OPTION.finditer(text))
        letters = [m.group(1) for m in marks]
        bounds = [m.start() for m in marks[1:]] + [len(text)]
        out = [text[m.end() : b].strip().rstrip(",").strip() for m, b in zip(marks, bounds, strict=True)]
    if not letters or letters != [chr(ord("a") + i) for i in range(len(letters))]:
        raise ValueError(f"cannot parse options {options!r}")
    return out


def mathqa_rows(records: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(records):
        for key in ("Problem", "options", "correct"):
            if not isinstance(r.get(key), str) or not r[key].strip():
                raise DataError(path, i, key, "missing or not a string")
        try:
            opts = parse_options(r["options"])
        except ValueError as exc:
            raise DataError(path, i, "options", str(exc)) from exc
        letter = r["correct"].strip().lower()
        if not "a" <= letter <= chr(ord("a") + len(opts) - 1):
            raise DataError(path, i, "correct", f"{r['correct']!r} is not one of the {len(opts)} options")
        choices = "\n".join(f"({chr(ord('A') + j)}) {o}" for j, o in enumerate(opts))
        out.append(
            {
                "id": f"mathqa-{i:06d}",
                "task": "math_choice",
                "user_prompt": f"Question: {r['Problem'].strip()}\nChoices:{choices}",
                "answers": [letter.upper()],
            }
        )
    return out


def load_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a math file: parquet, a JSON list or JSON lines (the pinned download or a local sample)."""
    return read_parquet(path) if path.suffix == ".parquet" else read_rows(path)


def count_records(path: Path) -> int:
    """Rows in a math file without normalising them (parquet metadata; JSON is parsed): for config checks."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return len(load_records(path))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.math_data", description=__doc__)
    ap.add_argument("--task", required=True, choices=["dapo_math", "math_choice"])
    ap.add_argument("--input", required=True, type=Path, help="the downloaded or local file")
    ap.add_argument("--output", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    records = load_records(args.input)
    where = str(args.input)
    rows = dapo_rows(records, where) if args.task == "dapo_math" else mathqa_rows(records, where)
    write_parquet(rows, args.output, MATH_SCHEMA)
    log.info("%s: %d rows from %s", args.task, len(rows), where)


if __name__ == "__main__":
    run(main)
