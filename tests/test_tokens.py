"""The tiktoken counter is exact for Qwen2.5, and the code that leans on it (additive fill counts, RULER's fit and
worker processes) gives what the slow path gives."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES
from loongrl.tokens import Counter, counter_for, hf_counter, is_qwen25, tiktoken_counter


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def sample_texts(path: Path) -> list[str]:
    """Every string of a shipped sample file (whole text for books and notes), cut to <= 50K characters."""
    if path.suffix == ".parquet":
        texts = _strings(pq.read_table(path).to_pylist())
    elif path.suffix == ".jsonl":
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        texts = _strings(lines)
    elif path.suffix == ".json":
        texts = _strings(json.loads(path.read_text(encoding="utf-8")))
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            texts = [cell for row in csv.reader(f) for cell in row]
    else:
        from loongrl.books import read_book

        texts = [read_book(path)]
    return [t[i : i + 50_000] for t in texts for i in range(0, len(t), 50_000)]


SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[str(p.relative_to(SAMPLES)) for p in SAMPLE_FILES])
def test_tiktoken_counts_equal_hf_on_every_shipped_sample(qwen_tokenizer, path):
    texts = sample_texts(path)
    assert texts, path
    assert tiktoken_counter(threads=2)(texts) == hf_counter(qwen_tokenizer)(texts)


def test_special_tokens_and_nfc_count_as_the_hf_tokenizer_does(qwen_tokenizer):
    texts = [
        "<|im_start|>system\nx<|im_end|>\n<|im_start|>assistant\n",
        "cafe\u0301 vs café",  # NFC composes e + U+0301
        "Å Å ﬁ",  # angstrom sign and A-ring compose to the same letter; the ligature is left alone (NFC, not NFKC)
        "",
    ]
    assert tiktoken_counter()(texts) == hf_counter(qwen_tokenizer)(texts)


def test_counter_for_picks_tiktoken_only_for_qwen25(qwen_tokenizer, tmp_path):
    assert is_qwen25(qwen_tokenizer)
    assert counter_for(qwen_tokenizer).splits_at_line_starts
    # The same vocabulary without NFC is a different tokenizer: it must not get the tiktoken path.
    from loongrl.models import load_tokenizer
    from tokenizers import normalizers

    qwen_tokenizer.save_pretrained(tmp_path)
    other = load_tokenizer(tmp_path)
    other.backend_tokenizer.normalizer = normalizers.Lowercase()
    assert not is_qwen25(other)
    counter = counter_for(other)
    assert isinstance(counter, Counter) and not counter.splits_at_line_starts
    assert counter(["Hello World"]) == [len(other("Hello World", add_special_tokens=False)["input_ids"])]


@pytest.mark.parametrize("length", [4096, 16384])
def test_additive_fill_counts_are_exact(qwen_tokenizer, raw_rows, length):
    """fill adds passage counts instead of tokenising prompts: each equals the real chat-templated count."""
    from loongrl.data.fill import fill_rows
    from loongrl.data.split import doc_text, filler_pool, with_token_counts
    from loongrl.prompts import LOONGRL_SYSTEM_PROMPT, chat_token_counts, plain_messages

    checked = 0
    for rows in raw_rows.values():
        pool = filler_pool(rows)
        counts = hf_counter(qwen_tokenizer)([doc_text(d) for d in pool])
        fillers = [{**d, "n_tokens": n} for d, n in zip(pool, counts, strict=True)]
        pool_rows = with_token_counts(qwen_tokenizer, rows[:12], {r["id"]: 0.5 for r in rows})
        filled, stats = fill_rows(
            pool_rows,
            fillers,
            qwen_tokenizer,
            length=length,
            reserve=128,
            budget_scope="prompt",
            placement="random",
            system=LOONGRL_SYSTEM_PROMPT,
            seed=3,
        )
        convs = [plain_messages(r["question"], r["context"], LOONGRL_SYSTEM_PROMPT) for r in filled]
        real = [len(ids) for ids in qwen_tokenizer.apply_chat_template(convs, add_generation_prompt=True)["input_ids"]]
        assert [r["prompt_tokens"] for r in filled] == real
        assert chat_token_counts(qwen_tokenizer, convs) == real
        assert max(real) <= length - 128 and stats["recounted"] == 0
        checked += len(filled)
    assert checked >= 30


def test_fit_finds_the_same_n_as_bisection():
    from loongrl.eval.synthetic import fit

    def bisect(render, room, ntok, high, low=0):
        best = render(low)
        while low < high:
            mid = (low + high + 1) // 2
            if ntok(render(mid)) <= room:
                low, best = mid, render(mid)
            else:
                high = mid - 1
        return best

    probes = []

    def ntok(text: str) -> int:
        probes.append(text)
        return len(text.split())

    def render(n: int) -> str:  # lengths grow unevenly with n, as real renderings do
        return " ".join("w" * (1 + i % 3) + (" x" if i % 7 == 0 else "") for i in range(n))

    for room in (0, 1, 5, 99, 1000, 12_345):
        for high in (3, 50, 20_000):
            probes.clear()
            assert fit(render, room, ntok, high) == bisect(render, room, lambda t: len(t.split()), high), (room, high)
    probes.clear()
    fit(render, 50_000, ntok, 100_000)
    assert len(probes) <= 8  # interpolation, not ~17 bisection steps


def test_ruler_rows_identical_with_worker_processes(qwen_tokenizer):
    from loongrl.eval.synthetic import build_ruler

    p = {"tasks": ["niah_single_1", "niah_multikey_2", "vt", "cwe", "fwe"], "samples": 3}
    books = [SAMPLES / "gutenberg"]
    one = build_ruler(books, qwen_tokenizer, p, length=4096, system=None, seed=5, threads=1)
    two = build_ruler(books, qwen_tokenizer, p, length=4096, system=None, seed=5, threads=2)
    assert one == two and len(one) == 15
