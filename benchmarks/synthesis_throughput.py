"""Synthesis and eval-builder throughput against the tokenizer floor, on one core.

    python benchmarks/synthesis_throughput.py [--examples-16k 48] [--examples-128k 8] [--ruler-samples 4]

Data: the shipped 2WikiMultihopQA rows (all of them as the filler pool), the shipped Gutenberg books and HotpotQA dev
sample; tokenizer: the offline Qwen2.5 tokenizer. Everything runs on one thread (OMP/RAYON/tiktoken), so the
numbers are per core.

Synthesis, per length: doc counting (the filler pool, once), fill (plain long QA), KeyChain insertion, and the
floor: one raw tiktoken pass (no NFC, no Python around it) over the KeyChain prompts produced. The target is fill +
KeyChain within 2.5x of that floor. The HF fast tokenizer's pass over the same prompts is printed for comparison.

Builders: NIAH and every RULER task but qa_1 (no SQuAD file is shipped) at 4K and 128K, examples/s including
the final exact prompt count.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from loongrl.books import load_books  # noqa: E402
from loongrl.data.fill import fill_rows  # noqa: E402
from loongrl.data.keychain import build_keychain_rows  # noqa: E402
from loongrl.data.raw_qa import normalise_files  # noqa: E402
from loongrl.data.split import doc_text, filler_pool, with_token_counts  # noqa: E402
from loongrl.eval.rows import finish  # noqa: E402
from loongrl.eval.synthetic import RULER_TASKS, Ruler, build_niah  # noqa: E402
from loongrl.models import build_qwen25_tokenizer  # noqa: E402
from loongrl.prompts import LOONGRL_SYSTEM_PROMPT, count_tokens_batch, messages  # noqa: E402
from loongrl.tokens import counter_for, qwen25_encoding  # noqa: E402

HOTPOT = ROOT / "data/samples/hotpotqa/hotpot_dev_distractor_v1.sample.json"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def synthesis(tok, n_16k: int, n_128k: int) -> None:
    rows = normalise_files("2wikimqa", sorted((ROOT / "data/samples/2wikimultihopqa").glob("*.json")))
    pool = filler_pool(rows)
    counts, t_pool = timed(lambda: count_tokens_batch(tok, [doc_text(d) for d in pool]))
    fillers = [{**d, "n_tokens": n} for d, n in zip(pool, counts, strict=True)]
    print(f"doc counting: {len(fillers)} filler docs, {sum(counts):,} tokens in {t_pool:.2f} s")
    enc = qwen25_encoding()
    questions = [r["question"] for r in rows]
    print(
        f"\n{'length':>7} {'n':>3} {'fill s':>7} {'keychain s':>10} {'floor s':>8} {'HF tok s':>8} "
        f"{'fill/floor':>10} {'kc/floor':>9} {'(fill+kc)/floor':>16}"
    )
    for length, n in ((16384, n_16k), (131072, n_128k)):
        pool_rows = with_token_counts(tok, rows[:n], {r["id"]: 0.5 for r in rows[:n]})
        filled, t_fill = timed(
            lambda pool_rows=pool_rows, length=length: fill_rows(
                pool_rows,
                fillers,
                tok,
                length=length,
                reserve=128,
                budget_scope="prompt",
                placement="random",
                system=LOONGRL_SYSTEM_PROMPT,
                seed=42,
            )[0]
        )
        kc, t_kc = timed(
            lambda filled=filled, length=length: build_keychain_rows(
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
        )
        texts = [
            tok.apply_chat_template(
                messages(r["user_prompt"], LOONGRL_SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True
            )
            for r in kc
        ]
        _, t_floor = timed(lambda texts=texts: [enc.encode(t, allowed_special="all") for t in texts])
        _, t_hf = timed(lambda texts=texts: tok(texts, add_special_tokens=False))
        print(
            f"{length:>7} {len(kc):>3} {t_fill:>7.2f} {t_kc:>10.2f} {t_floor:>8.2f} {t_hf:>8.2f} "
            f"{t_fill / t_floor:>10.2f} {t_kc / t_floor:>9.2f} {(t_fill + t_kc) / t_floor:>16.2f}"
        )


def builders(tok, samples: int) -> None:
    books = load_books([ROOT / "data/samples/gutenberg"])
    print(f"\n{'builder':<18} {'4K ex/s':>9} {'128K ex/s':>10} {'128K s/ex':>10}")
    for name in ("niah", *(t for t in RULER_TASKS if t != "qa_1")):  # qa_1 reads SQuAD: none is shipped
        rates = []
        for length in (4096, 131072):
            if name == "niah":
                p = {"lengths": [length], "depths": [0, 25, 50, 75, 100], "reserve": 0}
                out, t = timed(
                    lambda p=p: finish(build_niah([ROOT / "data/samples/gutenberg"], tok, p, system=None, seed=1), tok)
                )
            else:
                ruler = Ruler(books, tok, length=length, system=LOONGRL_SYSTEM_PROMPT, seed=1, qa={"qa_2": HOTPOT})
                if name.startswith("qa"):
                    ruler.qa_rows(name)
                out, t = timed(
                    lambda ruler=ruler, name=name: finish([ruler.example(name, i) for i in range(samples)], tok)
                )
            rates.append(len(out) / t)
        print(f"{name:<18} {rates[0]:>9.1f} {rates[1]:>10.2f} {1 / rates[1]:>10.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples-16k", type=int, default=48)
    ap.add_argument("--examples-128k", type=int, default=8)
    ap.add_argument("--ruler-samples", type=int, default=4)
    args = ap.parse_args()
    tok = build_qwen25_tokenizer(Path(tempfile.mkdtemp()) / "tok")
    counter = counter_for(tok)
    print(f"token counter: {'tiktoken (Qwen2.5 verified)' if counter.splits_at_line_starts else 'HF tokenizer'}")
    synthesis(tok, args.examples_16k, args.examples_128k)
    builders(tok, args.ruler_samples)


if __name__ == "__main__":
    main()
