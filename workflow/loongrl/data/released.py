"""The authors' released QA training data as a mixture source (``mixture.qa_source: released``).

``OldKingMeister/LoongRL-Train-Data`` holds six configs in verl's schema: filtered plain multi-hop QA
(``<dataset>_qwen_0_2500``) and KeyChain QA (``<dataset>_distractor_2500_5000``) for HotpotQA, MuSiQue and
2WikiMultiHopQA, about 2,500 rows each (released-data-and-anchors.md §1). Training on them skips the difficulty
filter and the synthesis for the QA part of the mixture (RULER and math rows still come from our own stages; they
are not in the release).

Each row is validated: ``prompt`` is one user message with the official template (no system message: the system
prompt is added here exactly as our own rows get it), ``reward_model.ground_truth`` a non-empty list of answers,
``data_source`` the official ``custom_longcontext_needle_qa_*`` (KeyChain) or ``custom_longcontextqa_*`` (plain)
prefix of the config's kind. The rows come out in the shape ``loongrl.data.mixture`` reads from our own KeyChain and
fill stages, with the reward family mapped from the kind (``keychain_<dataset>`` / ``plain_qa_<dataset>``).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.cli import run, setup_logging
from loongrl.answers import normalize_answer
from loongrl.io import DataError, read_parquet, write_parquet, write_text
from loongrl.models import load_tokenizer
from loongrl.prompts import KEYCHAIN_TEMPLATE, PLAIN_QA_TEMPLATE, chat_token_counts, messages, system_prompt

log = logging.getLogger(__name__)

# (kind, our dataset name) -> the release's config name
CONFIGS = {
    ("plain_qa", "hotpotqa"): "hotpotqa_qwen_0_2500",
    ("plain_qa", "musique"): "musique_qwen_0_2500",
    ("plain_qa", "2wikimqa"): "2wikipedia_qwen_0_2500",
    ("keychain", "hotpotqa"): "hotpotqa_distractor_2500_5000",
    ("keychain", "musique"): "musique_distractor_2500_5000",
    ("keychain", "2wikimqa"): "2wikipedia_distractor_2500_5000",
}
SOURCE_PREFIX = {"keychain": "custom_longcontext_needle_qa_", "plain_qa": "custom_longcontextqa_"}
# the official templates' opening words (loongrl.prompts holds the full texts)
TEMPLATE_HEAD = {"keychain": KEYCHAIN_TEMPLATE.split("{", 1)[0], "plain_qa": PLAIN_QA_TEMPLATE.split("{", 1)[0]}

RELEASED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("user_prompt", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("prompt_tokens", pa.int64()),
        ("pass_rate", pa.float64()),
        ("released_source", pa.string()),  # the row's official data_source
    ]
)


def validate_row(row: dict[str, Any], i: int, *, path: Path, kind: str) -> tuple[str, list[str], str]:
    """(user prompt, gold answers, official data_source) of one released row; a DataError names what is wrong."""
    src = row.get("data_source")
    if not isinstance(src, str) or not src.startswith(SOURCE_PREFIX[kind]):
        raise DataError(path, i, "data_source", f"{src!r} is not a {kind} source ({SOURCE_PREFIX[kind]}...)")
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or len(prompt) != 1 or not isinstance(prompt[0], dict):
        raise DataError(path, i, "prompt", "expected one message (the release has no system message)")
    if prompt[0].get("role") != "user" or not isinstance(prompt[0].get("content"), str):
        raise DataError(path, i, "prompt[0]", "expected {role: user, content: <string>}")
    content = prompt[0]["content"]
    if not content.startswith(TEMPLATE_HEAD[kind]):
        raise DataError(path, i, "prompt[0].content", f"does not start with the official {kind} template")
    gt = (row.get("reward_model") or {}).get("ground_truth")
    if isinstance(gt, str):
        gt = [gt]
    if not isinstance(gt, list) or not gt or not all(isinstance(a, str) and a.strip() for a in gt):
        raise DataError(path, i, "reward_model.ground_truth", f"expected a non-empty list of answers, got {gt!r}")
    return content, list(gt), src


def load_released(path: Path, *, kind: str, dataset: str, tokenizer, system: str | None) -> list[dict[str, Any]]:
    """Every row of one released config, validated, with prompt lengths under the policy tokenizer and the system
    prompt our own rows get."""
    rows = read_parquet(path)
    if not rows:
        raise DataError(path, "-", "<rows>", "no rows")
    out = []
    for i, row in enumerate(rows):
        content, answers, src = validate_row(row, i, path=path, kind=kind)
        index = (row.get("extra_info") or {}).get("index", i)
        out.append(
            {
                "id": f"released-{index}",
                "dataset": dataset,
                "user_prompt": content,
                "answers": answers,
                "prompt_tokens": 0,
                "pass_rate": None,
                "released_source": src,
            }
        )
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise DataError(path, dup, "extra_info.index", "repeated index")
    counts = chat_token_counts(tokenizer, [messages(r["user_prompt"], system) for r in out])
    for r, n in zip(out, counts, strict=True):
        r["prompt_tokens"] = n
    return out


# ---------------------------------------------------------------------------------- ours next to theirs
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PAIR = re.compile(rf'\{{"({_UUID})": "((?:[^"\\]|\\.)*)"\}}')
_START = re.compile(rf"starting from [\"']?({_UUID})")  # [P §3.1] quotes the start key; the release does not


def row_profile(user_prompt: str, answers: list[str], prompt_tokens: int) -> dict[str, Any]:
    """What the fidelity table compares per row: prompt tokens, KeyChain pairs and the hops from the start key to
    the question, gold answer length (words), and whether a gold answer appears in the context."""
    pairs = dict(_PAIR.findall(user_prompt))
    hops, key = 0, (_START.search(user_prompt) or [None, None])[1]
    while key in pairs and hops <= len(pairs):
        hops, key = hops + 1, pairs[key]
    context = normalize_answer(user_prompt)
    return {
        "prompt_tokens": prompt_tokens,
        "pairs": len(pairs),
        "hops": hops,
        "answer_words": len(normalize_answer(answers[0]).split()) if answers else 0,
        "answer_in_context": any(normalize_answer(a) and normalize_answer(a) in context for a in answers),
    }


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))] if v else float("nan")


def fidelity_table(groups: dict[tuple[str, str, str], list[dict[str, Any]]]) -> str:
    """Markdown: per (source, kind, dataset) the p5 / p50 / p95 prompt tokens, pairs and hops per prompt, gold
    answer words and the share of rows whose answer is in the context. ``groups`` maps (ours|released, kind,
    dataset) to rows with ``user_prompt``, ``answers`` and ``prompt_tokens``."""
    lines = [
        "| source | kind | dataset | rows | prompt tokens p5 / p50 / p95 | pairs p50 | hops p50 | answer words p50 "
        "| answer in context |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (src, kind, ds), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        prof = [row_profile(r["user_prompt"] or "", list(r["answers"]), r["prompt_tokens"]) for r in rows]
        tok = [p["prompt_tokens"] for p in prof]
        share = sum(p["answer_in_context"] for p in prof) / len(prof) if prof else float("nan")
        lines.append(
            f"| {src} | {kind} | {ds} | {len(rows)} | {_pct(tok, 0.05):.0f} / {_pct(tok, 0.5):.0f} / "
            f"{_pct(tok, 0.95):.0f} | {_pct([p['pairs'] for p in prof], 0.5):.0f} "
            f"| {_pct([p['hops'] for p in prof], 0.5):.0f} | {_pct([p['answer_words'] for p in prof], 0.5):.0f} "
            f"| {100 * share:.0f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fidelity"]:
        return fidelity_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.released", description=__doc__)
    ap.add_argument("--input", required=True, type=Path, help="one released config's parquet")
    ap.add_argument("--kind", required=True, choices=["keychain", "plain_qa"])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--tokenizer", required=True, type=Path)
    ap.add_argument("--system-prompt", default="loongrl")
    ap.add_argument("--output", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    rows = load_released(
        args.input,
        kind=args.kind,
        dataset=args.dataset,
        tokenizer=load_tokenizer(args.tokenizer),
        system=system_prompt(args.system_prompt),
    )
    write_parquet(rows, args.output, RELEASED_SCHEMA)
    log.info("released %s %s: %d rows -> %s", args.kind, args.dataset, len(rows), args.output)


def fidelity_main(argv: list[str]) -> None:
    """``fidelity --ours kind:dataset:file ... --theirs kind:dataset:file ... --output md``."""
    ap = argparse.ArgumentParser(prog="python -m loongrl.data.released fidelity")
    ap.add_argument("--ours", nargs="*", default=[], help="kind:dataset:parquet of our KeyChain / plain rows")
    ap.add_argument("--theirs", nargs="*", default=[], help="kind:dataset:parquet of released rows (released_qa)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="to count our plain rows' prompts")
    ap.add_argument("--system-prompt", default="loongrl")
    ap.add_argument("--output", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for src, specs in (("ours", args.ours), ("released", args.theirs)):
        for spec in specs:
            kind, ds, path = spec.split(":", 2)
            rows = read_parquet(Path(path))
            for r in rows:  # our plain rows keep question and context apart
                if not r.get("user_prompt"):
                    r["user_prompt"] = PLAIN_QA_TEMPLATE.format(context=r["context"], question=r["question"])
            groups[(src, kind, ds)] = rows
    body = "# Ours next to the authors' release\n\n" + fidelity_table(groups)
    write_text(body, args.output)
    log.info("fidelity table: %d groups -> %s", len(groups), args.output)


if __name__ == "__main__":
    run(main)
