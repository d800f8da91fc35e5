"""KeyChain synthesis throughput vs one tokenisation pass of the produced prompts.

    python benchmarks/keychain_throughput.py [--examples-16k 24] [--examples-128k 6]

Uses the shipped 2WikiMultihopQA rows (all of them as the filler pool) and the offline Qwen2.5 tokenizer. For each
length it times: filling (plain long QA; includes one exact count of each prompt), KeyChain insertion (includes one
exact count of each final prompt), and a single batched tokenisation of the final KeyChain prompts. The target is
synthesis within 2x of that single pass; the official scripts re-tokenise whole contexts inside their doc-count loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from loongrl.data.fill import fill_rows  # noqa: E402
from loongrl.data.keychain import build_keychain_rows  # noqa: E402
from loongrl.data.raw_qa import normalise_files  # noqa: E402
from loongrl.data.split import filler_pool, with_token_counts  # noqa: E402
from loongrl.models import build_qwen25_tokenizer  # noqa: E402
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT, count_tokens_batch, messages  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples-16k", type=int, default=24)
    ap.add_argument("--examples-128k", type=int, default=6)
    args = ap.parse_args()
    tok = build_qwen25_tokenizer(Path(tempfile.mkdtemp()) / "tok")
    rows = normalise_files("2wikimqa", sorted((ROOT / "data/samples/2wikimultihopqa").glob("*.json")))
    t0 = time.perf_counter()
    pool = filler_pool(rows)
    counts = count_tokens_batch(tok, [f"{d['title']}\n{d['text']}" for d in pool])
    fillers = [{**d, "n_tokens": n} for d, n in zip(pool, counts, strict=True)]
    t_pool = time.perf_counter() - t0
    print(f"filler pool: {len(fillers)} docs, {sum(counts):,} tokens, counted once in {t_pool:.2f} s")
    questions = [r["question"] for r in rows]
    print(
        f"{'length':>7} {'n':>3} {'fill ex/s':>10} {'keychain ex/s':>14} {'tokenise-once ex/s':>19} "
        f"{'keychain/tok':>13} {'(fill+kc)/tok':>14}"
    )
    for length, n in ((16384, args.examples_16k), (131072, args.examples_128k)):
        pool_rows = with_token_counts(tok, rows[:n], {r["id"]: 0.5 for r in rows[:n]})
        t0 = time.perf_counter()
        filled, _ = fill_rows(
            pool_rows,
            fillers,
            tok,
            length=length,
            reserve=128,
            budget_scope="prompt",
            placement="random",
            system=LOONGRL_SYSTEM_PROMPT,
            seed=42,
        )
        t_fill = time.perf_counter() - t0
        t0 = time.perf_counter()
        kc = build_keychain_rows(
            filled,
            questions,
            tok,
            length=length,
            chain_length=4,
            chains_per_1k=1,
            key_format="uuid4",
            quote_start_key=True,
            system=LOONGRL_SYSTEM_PROMPT,
            seed=42,
        )
        t_kc = time.perf_counter() - t0
        texts = [
            tok.apply_chat_template(
                messages(r["user_prompt"], LOONGRL_SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True
            )
            for r in kc
        ]
        t0 = time.perf_counter()
        count_tokens_batch(tok, texts)
        t_tok = time.perf_counter() - t0
        print(
            f"{length:>7} {len(kc):>3} {len(kc) / t_fill:>10.2f} {len(kc) / t_kc:>14.2f} {len(kc) / t_tok:>19.2f} "
            f"{t_kc / t_tok:>13.2f} {(t_fill + t_kc) / t_tok:>14.2f}"
        )


if __name__ == "__main__":
    main()
