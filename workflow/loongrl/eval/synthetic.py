"""Synthetic long-context benchmarks on public-domain book haystacks: needle-in-a-haystack and RULER.

* NIAH [gkamradt/LLMTest_NeedleInAHaystack]: Kamradt's San Francisco needle placed at each depth (0-100 %) of a
  book stretch at each context length, backed up to a sentence end as the original does; scored deterministically
  (``eval_metrics.needle_recall``) instead of by a GPT judge.
* RULER [NVIDIA/RULER ``scripts/data/synthetic``]: the 13 tasks (NIAH single/multi-key/multi-value/multi-query,
  variable tracking, common and frequent words, QA) with RULER's templates and answers. Differences, all forced by
  running offline: the essay haystack is Project Gutenberg books instead of Paul Graham essays, word keys and the
  common-words vocabulary come from those books instead of the ``wonderwords`` lists, and QA reads the official
  SQuAD / HotpotQA dev files given in the config. Reasoning-model setting [spec §4]: no answer-prefix suffix; the
  answer is read after ``</think>``.

Every example has its own RNG derived from (seed, task, length, index), so any cell rebuilds byte-identically.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import re
import string
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loongrl.books import Haystack, insert_needles, load_books, seven_digit
from loongrl.eval.rows import task_row
from loongrl.io import DataError, read_rows
from loongrl.prompts import count_prompt_tokens, count_tokens_batch, messages
from loongrl.rng import example_rng

NIAH_NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
NIAH_QUESTION = "What is the best thing to do in San Francisco?"
NIAH_ANSWER = "eat a sandwich and sit in Dolores Park on a sunny day"
NIAH_TEMPLATE = (
    "<context>\n{context}\n</context>\n\n{question} Don't give information outside the document or repeat your findings"
)

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
RULER_NEEDLE = "One of the special magic {type_v} for {key} is: {value}."
TEMPLATES = {
    "niah": "Some special magic {type_v} are hidden within the following text. Make sure to memorize it. I will "
    "quiz you about the {type_v} afterwards.\n{context}\nWhat are all the special magic {type_v} for {query} "
    "mentioned in the provided text?",
    "vt": "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above.",
    "cwe": "Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
    "ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?",
    "fwe": "Read the following coded text and track the frequency of each coded word. Find the three most "
    "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots "
    "'....'. What are the three most frequently appeared words in the above coded text?",
    "qa": "Answer the question based on the given documents. Only give me the answer and do not output any other "
    "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. "
    "Only give me the answer and do not output any other words.\n\nQuestion: {query}",
}
# RULER's synthetic.yaml: (haystack, key type, value type, needles, values per key, queries)
NIAH_TASKS = {
    "niah_single_1": ("noise", "words", "numbers", 1, 1, 1),
    "niah_single_2": ("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("essay", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": ("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": ("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("essay", "words", "numbers", 4, 1, 4),
}
RULER_TASKS = (*NIAH_TASKS, "vt", "cwe", "fwe", "qa_1", "qa_2")
_WORD = re.compile(r"\b[a-z]{4,10}\b")


def vocabulary(books: dict[str, str]) -> list[str]:
    """Sorted distinct lowercase words (4-10 letters) of the books: RULER's word lists, offline."""
    return sorted({w for text in books.values() for w in _WORD.findall(text.lower())})


def _insert_at_depth(text: str, needle: str, depth: float) -> str:
    """Put ``needle`` at ``depth`` percent of ``text``, backed up to the previous sentence end (Kamradt)."""
    pos = round(len(text) * depth / 100)
    if 0 < pos < len(text):
        end = text.rfind(". ", 0, pos)
        pos = end + 1 if end >= 0 else 0
    return f"{text[:pos]} {needle} {text[pos:]}".strip()


def build_niah(folders: list[Path], tokenizer, p: dict[str, Any], *, system: str | None, seed: int) -> list[dict]:
    hay = Haystack(load_books(folders), tokenizer)
    overhead = count_prompt_tokens(
        tokenizer, messages(NIAH_TEMPLATE.format(context=NIAH_NEEDLE, question=NIAH_QUESTION), system)
    )
    rows = []
    for length in p["lengths"]:
        rng = example_rng(seed, "niah", length)
        budget = length - overhead - p["reserve"] - 4  # the spaces around the inserted needle
        # Kamradt: take more book than needed, then cut the haystack to the exact token budget
        _, paras = hay.stretch(rng, 2 * budget)
        context = tokenizer.decode(tokenizer("\n\n".join(paras), add_special_tokens=False)["input_ids"][:budget])
        for depth in p["depths"]:
            user = NIAH_TEMPLATE.format(context=_insert_at_depth(context, NIAH_NEEDLE, depth), question=NIAH_QUESTION)
            rows.append(
                task_row(
                    id=f"niah-L{length}-D{depth:g}",
                    benchmark="niah",
                    task="niah",
                    user=user,
                    answers=[NIAH_ANSWER],
                    metric="niah",
                    system=system,
                    length=length,
                    meta={"depth": depth},
                )
            )
    return rows


class Ruler:
    """Builds RULER examples of one context length."""

    def __init__(self, books: dict[str, str], tokenizer, *, length: int, system: str | None, seed: int, qa: dict):
        self.tok, self.length, self.system, self.seed, self.qa_files = tokenizer, length, system, seed, qa
        self.hay = Haystack(books, tokenizer)
        self.words = vocabulary(books)
        self._qa_cache: dict[str, list[dict[str, Any]]] = {}

    def budget(self, kind: str, query: str, reserve: int = 0) -> int:
        """Context tokens left once the chat-templated question is paid for."""
        shell = TEMPLATES[kind].format(type_v="numbers", context="", query=query)
        return self.length - count_prompt_tokens(self.tok, messages(shell, self.system)) - reserve

    def ntok(self, text: str) -> int:
        return count_tokens_batch(self.tok, [text])[0]

    def noise(self, room: int) -> str:
        """RULER's noise haystack: the noise sentences repeated as often as ``room`` tokens hold (counted on the
        joined text: one sentence's count times n overestimates the join by ~4 %, leaving cells short)."""
        per = max(1, self.ntok(NOISE + " "))
        return fit(lambda n: " ".join([NOISE] * n), room, self.ntok, 2 * room // per + 1, low=1)

    # -- keys and values ---------------------------------------------------------------------------------
    def make(self, kind: str, rng) -> str:
        if kind == "numbers":
            return seven_digit(rng)
        if kind == "uuids":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return f"{rng.choice(self.words)}-{rng.choice(self.words)}"

    def distinct(self, kind: str, rng, n: int, avoid: set[str] = frozenset()) -> list[str]:
        out: list[str] = []
        seen = set(avoid)
        while len(out) < n:
            v = self.make(kind, rng)
            if v not in seen:
                seen.add(v)
                out.append(v)
        return out

    # -- tasks ---------------------------------------------------------------------------------------------
    def niah(self, task: str, rng) -> tuple[str, list[str], str]:
        haystack, key_t, val_t, n_keys, n_vals, n_query = NIAH_TASKS[task]
        keys = self.distinct(key_t, rng, n_keys)
        values = [self.distinct(val_t, rng, n_vals) for _ in keys]
        needles = [
            RULER_NEEDLE.format(type_v=val_t, key=k, value=v) for k, vs in zip(keys, values, strict=True) for v in vs
        ]
        rng.shuffle(needles)
        qkeys = keys[:n_query]
        query = qkeys[0] if n_query == 1 else ", ".join(qkeys[:-1]) + ", and " + qkeys[-1]
        answers = [v for vs in values[:n_query] for v in vs]
        room = self.budget("niah", query) - sum(self.ntok(" " + n) for n in needles)
        if haystack == "noise":
            context = insert_needles([self.noise(room)], needles, rng)
        elif haystack == "essay":
            context = insert_needles(self.hay.stretch(rng, room)[1], needles, rng)
        else:  # a haystack made of other needles with distinct keys
            line = RULER_NEEDLE.format(type_v=val_t, key=self.make(key_t, rng), value=self.make(val_t, rng))
            cap = 2 * max(1, room // self.ntok(line + "\n"))
            others = [
                RULER_NEEDLE.format(type_v=val_t, key=k, value=self.make(val_t, rng))
                for k in self.distinct(key_t, rng, cap, avoid=set(keys))
            ]
            at = rng.random()

            def render(n: int) -> str:
                lines = others[:n]
                lines.insert(round(at * n), needles[0])
                return "\n".join(lines)

            context = fit(render, room + self.ntok(needles[0]), self.ntok, cap)
        return TEMPLATES["niah"].format(type_v=val_t, context=context, query=query), answers, "ruler_all"

    def vt(self, rng) -> tuple[str, list[str], str]:
        names = []
        while len(names) < 5:  # RULER: one chain, 4 hops, 5-letter upper-case names
            n = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
            if n not in names:
                names.append(n)
        value = str(rng.randrange(10_000, 100_000))
        stmts = [f"VAR {names[0]} = {value}."] + [f"VAR {b} = VAR {a}." for a, b in itertools.pairwise(names)]
        room = self.budget("vt", value) - sum(self.ntok(" " + s) for s in stmts)
        context = insert_needles([self.noise(room)], stmts, rng)
        return TEMPLATES["vt"].format(context=context, query=value), names, "ruler_all"

    def cwe(self, rng) -> tuple[str, list[str], str]:
        # 10 common + enough rare words to fill the cell (3 entries of ~5 tokens each): 5,000 up to 30K, more beyond
        words = rng.sample(self.words, min(len(self.words), max(5000, self.length // 6)))
        common, rare = words[:10], words[10:]
        room = self.budget("cwe", "")
        # RULER: 10 common words x 30 and rare words x 3; short contexts cannot hold 300 common entries, so the
        # common frequency drops (never below 4, still above the rare words') until they take at most half the room.
        freq = 30
        while freq > 4 and self.ntok("\n".join(f"{i}. {common[i % 10]}" for i in range(10 * freq))) > room // 2:
            freq -= 2

        def render(n_rare: int) -> str:
            items = [w for w in common for _ in range(freq)] + [w for w in rare[:n_rare] for _ in range(3)]
            rng_local = example_rng(self.seed, "cwe-order", self.length, n_rare, common)
            rng_local.shuffle(items)
            return "\n".join(f"{i}. {w}" for i, w in enumerate(items, 1))

        return TEMPLATES["cwe"].format(context=fit(render, room, self.ntok, len(rare))), common, "ruler_all"

    def fwe(self, rng) -> tuple[str, list[str], str]:
        vocab = []
        while len(vocab) < 2000:
            w = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6)))
            if w not in vocab:
                vocab.append(w)
        room = self.budget("fwe", "")

        def render(top: int) -> str:  # Zipf (alpha 2) counts: top, top/4, top/9, ... so the top three are distinct
            items = [w for k, w in enumerate(vocab, 1) for _ in range(top // (k * k))]
            rng_local = example_rng(self.seed, "fwe-order", self.length, top, vocab[:3])
            rng_local.shuffle(items)
            return " .... ".join(" ".join(items[i : i + 10]) for i in range(0, len(items), 10))

        return TEMPLATES["fwe"].format(context=fit(render, room, self.ntok, 100_000, low=9)), vocab[:3], "ruler_all"

    def qa(self, task: str, rng) -> tuple[str, list[str], str]:
        pool = self.qa_rows(task)
        item = pool[rng.randrange(len(pool))]
        room = self.budget("qa", item["question"])
        docs = list(item["docs"])
        others = [d for r in pool if r is not item for d in r["docs"] if d not in docs]
        rng.shuffle(others)
        used = sum(self.ntok(f"Document {i}:\n{d}\n\n") for i, d in enumerate(docs, 1))
        for d in others:
            cost = self.ntok(f"Document {len(docs) + 1}:\n{d}\n\n")
            if used + cost > room:
                break
            docs.append(d)
            used += cost
        rng.shuffle(docs)
        context = "\n\n".join(f"Document {i}:\n{d}" for i, d in enumerate(docs, 1))
        return TEMPLATES["qa"].format(context=context, query=item["question"]), item["answers"], "ruler_part"

    def qa_rows(self, task: str) -> list[dict[str, Any]]:
        if task not in self._qa_cache:
            path = self.qa_files.get(task)
            if not path:
                raise ValueError(f"RULER {task} needs eval.ruler.qa_files.{task} (SQuAD for qa_1, HotpotQA for qa_2)")
            self._qa_cache[task] = load_squad(Path(path)) if task == "qa_1" else load_hotpot(Path(path))
        return self._qa_cache[task]

    def example(self, task: str, index: int) -> dict[str, Any]:
        rng = example_rng(self.seed, "ruler", task, self.length, index)
        if task in NIAH_TASKS:
            user, answers, metric = self.niah(task, rng)
        elif task in ("qa_1", "qa_2"):
            user, answers, metric = self.qa(task, rng)
        else:
            user, answers, metric = getattr(self, task)(rng)
        return task_row(
            id=f"ruler-{task}-L{self.length}-{index:05d}",
            benchmark="ruler",
            task=task,
            user=user,
            answers=answers,
            metric=metric,
            system=self.system,
            length=self.length,
        )


def fit(render: Callable[[int], str], room: int, ntok: Callable[[str], int], high: int, *, low: int = 0) -> str:
    """The longest ``render(n)`` (n in [low, high]) within ``room`` tokens.

    A bracketing search on n: the next probe interpolates between the bracket's token counts (lengths grow about
    linearly in n, so two or three probes usually land), falling back to the midpoint when interpolation stalls.
    The answer is the same as plain bisection's for any length that grows with n; it just tokenises 128K-token
    candidates 3-5 times instead of ~17.
    """
    best = render(low)
    lo_n, lo_t = low, ntok(best)
    hi_n, hi_t = high + 1, None  # high + 1 is never rendered: it is the bracket's open end
    slow = 0  # probes in a row that did not halve the bracket
    while lo_n < hi_n - 1:
        width = hi_n - lo_n
        if slow >= 2:
            guess, slow = (lo_n + hi_n) // 2, 0
        elif hi_t is None:  # no upper count yet: extrapolate from the origin through the lower point
            guess = lo_n + max(1, (room - lo_t) * max(lo_n, 1) // max(lo_t, 1))
        else:
            guess = lo_n + (room - lo_t) * (hi_n - lo_n) // max(hi_t - lo_t, 1)
        mid = min(max(guess, lo_n + 1), hi_n - 1)
        text = render(mid)
        t = ntok(text)
        if t <= room:
            lo_n, lo_t, best = mid, t, text
        else:
            hi_n, hi_t = mid, t
        slow = slow + 1 if hi_n - lo_n > width // 2 else 0
    return best


def load_squad(path: Path) -> list[dict[str, Any]]:
    """Answerable SQuAD (v1.1/v2.0 dev JSON) questions with their paragraph as the gold document."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(path, 0, "data", "not a SQuAD file (expected a JSON object with a 'data' list)")
    rows = []
    for art in data["data"]:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    continue
                rows.append(
                    {
                        "question": qa["question"],
                        "answers": sorted({a["text"] for a in qa["answers"]}),
                        "docs": [para["context"]],
                    }
                )
    if not rows:
        raise DataError(path, 0, "data", "no answerable SQuAD questions")
    return rows


def load_hotpot(path: Path) -> list[dict[str, Any]]:
    """HotpotQA dev (distractor) questions; the gold documents are the supporting-fact paragraphs."""
    rows = []
    for i, r in enumerate(read_rows(path)):
        for field in ("question", "answer", "context", "supporting_facts"):
            if field not in r:
                raise DataError(path, r.get("_id", i), field, "missing")
        gold = {t for t, _ in r["supporting_facts"]}
        docs = [f"{t}\n{''.join(s)}" for t, s in r["context"] if t in gold]
        rows.append({"question": r["question"], "answers": [r["answer"]], "docs": docs})
    return rows


_WORKER: Ruler | None = None


def _worker_example(item: tuple[str, int]) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.example(*item)


def build_ruler(
    inputs: list[Path],
    tokenizer,
    p: dict[str, Any],
    *,
    length: int,
    system: str | None,
    seed: int,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Every (task, index) example of one length; with ``threads`` > 1 spread over forked worker processes.

    Each example has its own RNG, so the rows are identical whatever the number of workers.
    """
    global _WORKER
    unknown = sorted(set(p["tasks"]) - set(RULER_TASKS))
    if unknown:
        raise ValueError(f"unknown RULER tasks {unknown}; known: {list(RULER_TASKS)}")
    ruler = Ruler(load_books(inputs), tokenizer, length=length, system=system, seed=seed, qa=p.get("qa_files") or {})
    items = [(t, i) for t in p["tasks"] for i in range(p["samples"])]
    if threads <= 1 or len(items) < 2 * threads:
        return [ruler.example(t, i) for t, i in items]
    for task in {t for t, _ in items if t in ("qa_1", "qa_2")}:
        ruler.qa_rows(task)  # load once, before the fork
    _WORKER = ruler
    try:
        with multiprocessing.get_context("fork").Pool(threads) as pool:
            return pool.map(_worker_example, items, chunksize=max(1, len(items) // (4 * threads)))
    finally:
        _WORKER = None
