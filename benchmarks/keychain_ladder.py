"""The KeyChain ladder: how often the base laptop model follows a key chain to the right Book-RULER question.

Rows come from the project's KeyChain builder with Book-RULER questions as its question source
(``loongrl.data.keychain.build_book_keychain_rows``): one "special magic number" needle per chain in a stretch of a
shipped book, the true chain ending at one needle's question, each distractor chain at another's. So an answer is
one of three things: the true number (correct), a distractor chain's number (the model read a needle but followed
the wrong chain) or neither. That split is the point: KeyChain training can only teach the chain if the model
already reads needles, and it has signal only where the base model is right sometimes (GRPO groups with reward
variance).

Variants: pair format {json (the paper's), sentence} x hops {1, 2, 4} x chains {2, 4}, ``--rows`` rows each at
book length ``--length`` (pairs on top; each row's prompt tokens are recorded). Greedy decoding, one engine start
for every variant. Scored on the first 7-digit number of the answer. Also counted: the share of answers that name
every key of the true chain (the nano analogue of the paper's plan-retrieve-reason pattern).

    python benchmarks/keychain_ladder.py --model resources/models/smollm2-135m   # ~10 min on 2 CPU cores (vLLM)

Writes ``<out>/ladder.json`` and ``<out>/ladder.md`` and prints the table with the variant it picks: the one closest
to the paper's format (JSON pairs, then more hops, then more chains) whose base accuracy lies in [15 %, 60 %].
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from loongrl.books import Haystack, load_books  # noqa: E402
from loongrl.data.keychain import PAIR_FORMATS, build_book_keychain_rows  # noqa: E402
from loongrl.inference import SamplingParams, make_backend  # noqa: E402
from loongrl.models import load_tokenizer  # noqa: E402
from loongrl.prompts import KEYCHAIN_ANSWER_PREFIX, KEYCHAIN_ENDINGS, messages  # noqa: E402
from loongrl.report.tables import bootstrap_ci  # noqa: E402

NUMBER = re.compile(r"(?<!\d)\d{7}(?!\d)")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BAND = (0.15, 0.60)
SHARES = ("names_chain", "true_question", "distractor_question", "consistent")


def score(row: dict, text: str) -> dict[str, float]:
    """correct / distractor / other on the answer's first 7-digit number; names_chain: every true key named.

    Which question the answer names first (by its needle's key) splits following the chain from reading the
    needle: ``true_question`` / ``distractor_question``, and ``consistent``: the number is the needle of the named
    question (the model retrieved what it asked itself, right chain or not)."""
    found = NUMBER.findall(text)
    first = found[0] if found else None
    value = {
        UUID.search(q).group(0): v
        for q, v in zip(
            [row["question"], *row["distractor_questions"]], [*row["answers"], *row["distractor_answers"]], strict=True
        )
    }
    named = next((m.group(0) for m in UUID.finditer(text) if m.group(0) in value), None)
    true_key = UUID.search(row["question"]).group(0)
    return {
        "correct": float(first == row["answers"][0]),
        "distractor": float(first in row["distractor_answers"]),
        "names_chain": float(all(k in text for k in row["chains"][0])),
        "true_question": float(named == true_key),
        "distractor_question": float(named is not None and named != true_key),
        "consistent": float(named is not None and first == value[named]),
    }


def closeness(variant: dict) -> tuple:
    """How close a variant is to the paper's KeyChain: the paper's prompt ending, JSON pairs, then more hops, then
    more chains."""
    return (variant["ending"] == "paper", variant["pair_format"] == "json", variant["hops"], variant["chains"])


def pick(variants: list[dict]) -> dict | None:
    inside = [v for v in variants if BAND[0] <= v["accuracy"] <= BAND[1]]
    return max(inside, key=closeness) if inside else None


def table(variants: list[dict], chosen: dict | None) -> str:
    lines = [
        "| ending | pair format | hops | chains | rows | prompt tokens (mean) | accuracy [95 %] "
        "| distractor rate [95 %] | neither | names the true chain | names the true / a distractor question "
        "| number matches the named question |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        mark = " **(picked)**" if v is chosen else ""
        acc, dis = v["accuracy_ci"], v["distractor_ci"]
        lines.append(
            f"| {v['ending']} | {v['pair_format']}{mark} | {v['hops']} | {v['chains']} | {v['rows']} "
            f"| {v['prompt_tokens']:.0f} "
            f"| {100 * v['accuracy']:.1f} [{100 * acc[0]:.1f}, {100 * acc[1]:.1f}] "
            f"| {100 * v['distractor_rate']:.1f} [{100 * dis[0]:.1f}, {100 * dis[1]:.1f}] "
            f"| {100 * v['neither']:.1f} | {100 * v['names_chain']:.1f} "
            f"| {100 * v['true_question']:.1f} / {100 * v['distractor_question']:.1f} | {100 * v['consistent']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "resources/models/smollm2-135m")
    ap.add_argument("--books", type=Path, default=ROOT / "data/samples/gutenberg")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--length", type=int, default=384)
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--chains", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--formats", nargs="+", default=list(PAIR_FORMATS), choices=PAIR_FORMATS)
    ap.add_argument(
        "--endings", nargs="+", default=["paper"], choices=sorted(KEYCHAIN_ENDINGS), help="the prompt's last line"
    )
    ap.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    ap.add_argument(
        "--prefill",
        default=KEYCHAIN_ANSWER_PREFIX,
        help="the start of the model's reply (default: prompts.KEYCHAIN_ANSWER_PREFIX; '' for none)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results/keychain_ladder")
    args = ap.parse_args(argv)

    tokenizer = load_tokenizer(args.model)
    hay = Haystack(load_books([args.books]), tokenizer)
    grid = list(itertools.product(args.endings, args.formats, args.hops, args.chains))
    rows = {
        g: build_book_keychain_rows(
            hay,
            tokenizer,
            examples=args.rows,
            length=args.length,
            hops=g[2],
            chains=g[3],
            pair_format=g[1],
            seed=args.seed,
            ending=g[0],
        )
        for g in grid
    }
    flat = [r for g in grid for r in rows[g]]
    t0 = time.time()
    engine = {"gpu_memory_utilization": 0.2, "max_model_len": 4096, "enforce_eager": True}
    backend = make_backend(args.backend, args.model, seed=args.seed, **engine)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=args.max_new_tokens)
    texts = backend.generate([messages(r["user_prompt"], None, args.prefill or None) for r in flat], params)
    seconds = time.time() - t0
    answers = iter(t[0] for t in texts)
    variants, per_row = [], []
    for ending, fmt, hops, chains in grid:
        replies = [next(answers) for _ in rows[(ending, fmt, hops, chains)]]
        scored = [score(r, a) for r, a in zip(rows[(ending, fmt, hops, chains)], replies, strict=True)]
        per_row += [
            {"id": r["id"], "ending": ending, "answer": a, **sc}
            for r, a, sc in zip(rows[(ending, fmt, hops, chains)], replies, scored, strict=True)
        ]
        correct = [s["correct"] for s in scored]
        distractor = [s["distractor"] for s in scored]
        variants.append(
            {
                "ending": ending,
                "pair_format": fmt,
                "hops": hops,
                "chains": chains,
                "rows": len(scored),
                "prompt_tokens": sum(r["prompt_tokens"] for r in rows[(ending, fmt, hops, chains)]) / len(scored),
                "accuracy": sum(correct) / len(correct),
                "accuracy_ci": bootstrap_ci(correct),
                "distractor_rate": sum(distractor) / len(distractor),
                "distractor_ci": bootstrap_ci(distractor),
                "neither": 1 - (sum(correct) + sum(distractor)) / len(scored),
                **{k: sum(s[k] for s in scored) / len(scored) for k in SHARES},
            }
        )
    chosen = pick(variants)
    out = {
        "model": str(args.model),
        "backend": args.backend,
        "length": args.length,
        "seed": args.seed,
        "max_new_tokens": args.max_new_tokens,
        "prefill": args.prefill,
        "generation_seconds": round(seconds, 1),
        "band": BAND,
        "variants": variants,
        "picked": chosen and {k: chosen[k] for k in ("ending", "pair_format", "hops", "chains")},
        "examples": [{"prompt": flat[i]["user_prompt"], "answer": texts[i][0]} for i in (0, len(flat) - 1)],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ladder.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_row))
    md = table(variants, chosen)
    (args.out / "ladder.md").write_text(md)
    print(md)
    print("picked:", out["picked"], f"({seconds:.0f} s of generation for {len(flat)} rows)")


if __name__ == "__main__":
    main()
