"""Per-example random streams, so that every generated example is reproducible on its own.

Data synthesis (fill, KeyChain, retrieval) and the synthetic eval builders (NIAH, RULER) draw each example from its
own RNG seeded by the run seed and the example's stable identifiers. Rebuilding one file, or changing the number of
examples, leaves the other examples byte-identical, and nothing depends on Python's salted ``hash``.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any


def example_rng(seed: int, *parts: Any) -> random.Random:
    """A per-example RNG derived from the seed and stable identifiers (not from Python's salted hash)."""
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def prompt_seed(seed: int, *parts: Any) -> int:
    """A sampling seed (31 bits, valid for torch and vLLM) derived from the run seed and stable identifiers."""
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
