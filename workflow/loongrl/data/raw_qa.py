"""Stage 1: fetch the official multi-hop QA files and normalise them to one schema.

Normalised row (one per question): ``id, dataset, question, answers, documents [{title, text}], gold_titles``.
``documents`` holds *all* of the question's original paragraphs (gold and the dataset's own distractors), as the
official KeyChain code does: 10 for HotpotQA and 2Wiki, 20 for MuSiQue.

Downloads (``loongrl.download``) are retried, streamed to a temporary file, checksummed (enforced when ``sha256``
is pinned in the config) and recorded in a MANIFEST.json, so what was fetched is auditable later.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loongrl.answers import normalize_answer
from loongrl.cli import run, setup_logging
from loongrl.io import DataError, read_rows, write_json, write_parquet
from loongrl.schemas import RAW_SCHEMA

log = logging.getLogger(__name__)

DATASETS = ("hotpotqa", "musique", "2wikimqa")

# ------------------------------------------------------------------------------------------------ normalise
def _require(row: dict, key: str, kind: type | tuple[type, ...], path: Path, *, rid: Any) -> Any:
    if key not in row:
        raise DataError(path, rid, key, "missing")
    value = row[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(path, rid, key, f"expected {names}, got {type(value).__name__}")
    return value


def _nonempty_str(row: dict, key: str, path: Path, rid: Any) -> str:
    value = _require(row, key, str, path, rid=rid)
    if not value.strip():
        raise DataError(path, rid, key, "empty string")
    return value


def _gold_answer(row: dict, path: Path, qid: str) -> str:
    """The gold answer: a row whose answer is empty, or has no words after SQuAD normalisation, can never be
    rewarded (an empty prediction never matches), so it is an input error rather than a silent dead example."""
    answer = _nonempty_str(row, "answer", path, qid)
    if not normalize_answer(answer):
        raise DataError(path, qid, "answer", f"{answer!r} has no words after SQuAD normalisation")
    return answer


def normalise_hotpot_like(row: dict, dataset: str, path: Path, index: int) -> dict[str, Any]:
    """HotpotQA and 2WikiMultihopQA share the layout ``_id, question, answer, context=[[title, [sents]]]``."""
    rid = row.get("_id", f"#{index}") if isinstance(row, dict) else f"#{index}"
    if not isinstance(row, dict):
        raise DataError(path, rid, "<row>", f"expected an object, got {type(row).__name__}")
    qid = _nonempty_str(row, "_id", path, rid)
    question = _nonempty_str(row, "question", path, qid)
    answer = _gold_answer(row, path, qid)
    context = _require(row, "context", list, path, rid=qid)
    if not context:
        raise DataError(path, qid, "context", "no documents")
    docs = []
    for j, para in enumerate(context):
        if (
            not isinstance(para, list | tuple)
            or len(para) != 2
            or not isinstance(para[0], str)
            or not isinstance(para[1], list)
            or not all(isinstance(s, str) for s in para[1])
        ):
            raise DataError(path, qid, f"context[{j}]", "expected [title, [sentence, ...]]")
        docs.append({"title": para[0], "text": "".join(para[1])})
    gold = []
    for fact in row.get("supporting_facts") or []:
        if isinstance(fact, list | tuple) and fact and isinstance(fact[0], str) and fact[0] not in gold:
            gold.append(fact[0])
    return {
        "id": qid,
        "dataset": dataset,
        "question": question,
        "answers": [answer],
        "documents": docs,
        "gold_titles": gold,
    }


def normalise_musique(row: dict, path: Path, index: int) -> dict[str, Any] | None:
    """MuSiQue: ``id, question, answer, answer_aliases, answerable, paragraphs[{title, paragraph_text}]``.

    Unanswerable rows (MuSiQue-Full) return None: only answerable questions are used [spec §1.1].
    """
    rid = row.get("id", f"#{index}") if isinstance(row, dict) else f"#{index}"
    if not isinstance(row, dict):
        raise DataError(path, rid, "<row>", f"expected an object, got {type(row).__name__}")
    qid = _nonempty_str(row, "id", path, rid)
    if row.get("answerable", True) is False:
        return None
    question = _nonempty_str(row, "question", path, qid)
    answer = _gold_answer(row, path, qid)
    aliases = row.get("answer_aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DataError(path, qid, "answer_aliases", "expected a list of strings")
    paras = _require(row, "paragraphs", list, path, rid=qid)
    if not paras:
        raise DataError(path, qid, "paragraphs", "no documents")
    docs, gold = [], []
    for j, p in enumerate(paras):
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("title"), str)
            or not isinstance(p.get("paragraph_text"), str)
        ):
            raise DataError(path, qid, f"paragraphs[{j}]", "expected {title: str, paragraph_text: str}")
        docs.append({"title": p["title"], "text": p["paragraph_text"]})
        if p.get("is_supporting") and p["title"] not in gold:
            gold.append(p["title"])
    answers = [answer] + [a for a in aliases if a != answer and normalize_answer(a)]  # blank aliases add nothing
    return {
        "id": qid,
        "dataset": "musique",
        "question": question,
        "answers": answers,
        "documents": docs,
        "gold_titles": gold,
    }


def normalise_files(
    dataset: str, paths: Iterable[Path], max_questions: int | None = None, stats: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Normalise every row of the given official files (in file order).

    A repeated id with the same content is dropped (counted in ``stats["duplicates_dropped"]`` and logged); a
    repeated id whose content differs is a broken source, and a DataError names the file and both rows.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    out: list[dict[str, Any]] = []
    first: dict[str, tuple[Path, int, dict[str, Any]]] = {}
    dropped = 0
    for path in paths:
        for i, row in enumerate(read_rows(Path(path))):
            rec = (
                normalise_musique(row, path, i)
                if dataset == "musique"
                else normalise_hotpot_like(row, dataset, path, i)
            )
            if rec is None:
                continue
            if rec["id"] in first:
                where, j, seen = first[rec["id"]]
                if seen != rec:
                    raise DataError(
                        path,
                        i,
                        "id",
                        f"id {rec['id']!r} was already row {j} of {where} with different content "
                        f"({', '.join(k for k in rec if rec[k] != seen.get(k))} differ)",
                    )
                dropped += 1
                continue
            first[rec["id"]] = (Path(path), i, rec)
            out.append(rec)
            if max_questions and len(out) >= max_questions:
                break
        if max_questions and len(out) >= max_questions:
            break
    if not out:
        raise DataError(", ".join(map(str, paths)), "-", "<rows>", f"no usable {dataset} rows")
    if dropped:
        log.info("%s: %d repeated rows (same id, same content) dropped", dataset, dropped)
    if stats is not None:
        stats.update({"dataset": dataset, "questions": len(out), "duplicates_dropped": dropped})
    return out


def resolve_local_files(folder: Path, patterns: list[str]) -> list[Path]:
    """Files in ``folder`` matching any glob, sorted so the order (and the output) is reproducible."""
    found = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
    if not found:
        raise FileNotFoundError(f"no files matching {patterns} in {folder}")
    return found


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.raw_qa", description=__doc__)
    ap.add_argument("--dataset", required=True, choices=DATASETS)
    ap.add_argument("--inputs", nargs="+", type=Path, required=True, help="files, or folders searched with --patterns")
    ap.add_argument("--patterns", nargs="+", default=["*.json", "*.jsonl"])
    ap.add_argument("--max-questions", type=int, default=None)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--stats", type=Path, default=None, help="JSON: questions kept, repeated rows dropped")
    args = ap.parse_args(argv)
    setup_logging()
    inputs: list[Path] = []
    for p in args.inputs:
        inputs.extend(resolve_local_files(p, args.patterns) if p.is_dir() else [p])
    inputs = [p for p in inputs if p.name != "MANIFEST.json"]
    stats: dict[str, Any] = {}
    rows = normalise_files(args.dataset, inputs, args.max_questions, stats)
    write_parquet(rows, args.output, RAW_SCHEMA)
    if args.stats:
        write_json({**stats, "files": [str(p) for p in inputs]}, args.stats)
    log.info("%s: %d questions -> %s", args.dataset, len(rows), args.output)


if __name__ == "__main__":
    run(main)
