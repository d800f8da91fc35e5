"""Synthetic long-context benchmarks on public-domain book haystacks: needle-in-a-haystack and RULER.

* NIAH [gkamradt/LLMTest_NeedleInAHaystack]: Kamradt's San Francisco needle placed at each depth (0-100 %) of a
  book stretch at each context length, backed up to a sentence end as the original does; scored deterministically
  (``eval_metrics.needle_recall``) instead of by a GPT judge.
* RULER [NVIDIA/RULER ``scripts/data/synthetic``; the facts checked against lm-evaluation-harness's port,
  ``lm_eval/tasks/ruler/*_utils.py``]: the 13 tasks (NIAH single/multi-key/multi-value/multi-query,
  variable tracking, common and frequent words, QA) with RULER's templates and answers. Differences, all forced by
  running offline: the essay haystack is Project Gutenberg books instead of Paul Graham essays, word keys and the
  common-words vocabulary come from those books instead of the ``wonderwords`` lists, and QA reads the official
  SQuAD / HotpotQA dev files given in the config. Reasoning models [spec §4]: no answer-prefix suffix (the answer
  is read after ``</think>``); the instruct kind (``prefix``) gets RULER's answer prefix as an assistant prefill
  and RULER's per-task generation caps.

Every example has its own RNG derived from (seed, task, length, index), so any cell rebuilds byte-identically.
"""

from __future__ import annotations

import itertools
import json
import math
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
# MInference's NIAH, the harness of the paper's NIAH figure (the authors' plotting notebook is its needle_viz;
# released-data-and-anchors §4) [MInference experiments/needle_in_a_haystack/needle_tools.py: the needle ~149, the
# question ~131, a random 7-digit number ~133 and ~243-246, correct when the number is in the output ~364]. The
# cities are ours; the prompt around it is the Kamradt template below (MInference's own differs: ⚠ stated).
MAGIC_NEEDLE = "The special magic {city} number is: {number}."
MAGIC_QUESTION = "What is the special magic {city} number?"
MAGIC_CITIES = (
    "Lisbon", "Nairobi", "Montevideo", "Oslo", "Hanoi", "Lima", "Tbilisi", "Accra",
    "Wellington", "Reykjavik", "Quito", "Manila", "Dublin", "Kampala", "Tallinn", "Havana",
)  # fmt: skip
NIAH_NEEDLES = ("minference", "kamradt")


def niah_needle(variant: str, rng) -> tuple[str, str, str, str]:
    """(needle, question, answer, metric) of a NIAH row: ``minference`` (the paper's figure; a city and a 7-digit
    number drawn per row, scored by the number's presence) or ``kamradt`` (the San Francisco sentence, scored by
    the recall of its answer's words)."""
    if variant == "kamradt":
        return NIAH_NEEDLE, NIAH_QUESTION, NIAH_ANSWER, "niah"
    if variant != "minference":
        raise ValueError(f"eval.niah.needle: unknown needle {variant!r}; known: {list(NIAH_NEEDLES)}")
    city, number = rng.choice(MAGIC_CITIES), seven_digit(rng)
    return MAGIC_NEEDLE.format(city=city, number=number), MAGIC_QUESTION.format(city=city), number, "niah_number"


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


def build_niah(
    folders: list[Path],
    tokenizer,
    p: dict[str, Any],
    *,
    system: str | None,
    seed: int,
    books: list[str] | None = None,
) -> list[dict]:
    """NIAH rows; ``books``: the haystack's file names in ``folders`` (None: every book there)."""
    hay = Haystack(load_books(folders, books), tokenizer)
    variant = p.get("needle", "minference")
    longest = (
        niah_needle("kamradt", None)
        if variant == "kamradt"
        else (
            MAGIC_NEEDLE.format(city=max(MAGIC_CITIES, key=len), number="9999999"),
            MAGIC_QUESTION.format(city=max(MAGIC_CITIES, key=len)),
        )
    )
    overhead = count_prompt_tokens(
        tokenizer, messages(NIAH_TEMPLATE.format(context=longest[0], question=longest[1]), system)
    )
    rows = []
    for length in p["lengths"]:
        rng = example_rng(seed, "niah", length)
        budget = length - overhead - p["reserve"] - 4  # the spaces around the inserted needle
        # Kamradt: take more book than needed, then cut the haystack to the exact token budget
        _, paras = hay.stretch(rng, 2 * budget)
        context = tokenizer.decode(tokenizer("\n\n".join(paras), add_special_tokens=False)["input_ids"][:budget])
        for depth in p["depths"]:
            needle, question, answer, metric = niah_needle(variant, example_rng(seed, "niah-needle", length, depth))
            rows.append(
                task_row(
                    id=f"niah-L{length}-D{depth:g}",
                    benchmark="niah",
                    task="niah",
                    user=NIAH_TEMPLATE.format(context=_insert_at_depth(context, needle, depth), question=question),
                    answers=[answer],
                    metric=metric,
                    system=system,
                    length=length,
                    meta={"depth": depth, "needle": variant},
                )
            )
    return rows


# RULER ``scripts/eval/synthetic/constants.py``: the completion suffix non-reasoning models get (here an assistant
# prefill; lm-evaluation-harness's port passes the same text as ``gen_prefix``, lm_eval/tasks/ruler/*_utils.py) and
# the generation cap per task family ("assgined" as the official text spells it).
ANSWER_PREFIX = {
    "niah": "The special magic {type_v} for {query} mentioned in the provided text {verb}",
    "vt": "Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
    "assgined the value {query}, they are:",
    "cwe": "Answer: The top 10 words that appear most often in the list are:",
    "fwe": "Answer: According to the coded text above, the three most frequently appeared words are:",
    "qa": "Answer:",
}
GEN_TOKENS = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}
VT_HOPS = 4  # [RULER synthetic.yaml] variable_tracking: 1 chain, 4 hops
ICL_TOKENS = 500  # [RULER variable_tracking.py] the one-shot example is built for a 500-token context


def niah_template(single: bool) -> str:
    """RULER's NIAH question, in the singular when one value is asked for (``niah.py``: "Some" -> "A", "are all" ->
    "is", "are" -> "is", "answers" -> "answer", value type without its "s"); 6 of the 8 NIAH tasks ask for one."""
    t = TEMPLATES["niah"]
    if single:
        for a, b in (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer")):
            t = t.replace(a, b)
    return t


def insert_lines(lines: list[str], items: list[str], rng) -> list[str]:
    """RULER's line haystacks: each item inserted before a distinct random line (last index first)."""
    out = list(lines)
    for at, item in zip(sorted(rng.sample(range(len(out)), len(items)), reverse=True), items, strict=True):
        out.insert(at, item)
    return out


class Ruler:
    """Builds RULER examples of one context length; ``prefix`` adds RULER's answer prefix as an assistant prefill
    and RULER's per-task generation cap (the instruct kind, ``loongrl.eval.kinds``)."""

    def __init__(
        self,
        books: dict[str, str],
        tokenizer,
        *,
        length: int,
        system: str | None,
        seed: int,
        qa: dict,
        prefix: bool = False,
    ):
        self.tok, self.length, self.system, self.seed, self.qa_files = tokenizer, length, system, seed, qa
        self.prefix = prefix
        self.hay = Haystack(books, tokenizer)
        self.words = vocabulary(books)
        self._qa_cache: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}

    def budget(self, kind: str, query: str, prefill: str | None = None, reserve: int = 0) -> int:
        """Context tokens left once the chat-templated question (and any prefill) is paid for."""
        shell = TEMPLATES[kind].format(type_v="numbers", context="", query=query)
        msgs = messages(shell, self.system, prefill if self.prefix else None)
        return self.length - count_prompt_tokens(self.tok, msgs) - reserve

    def ntok(self, text: str) -> int:
        return count_tokens_batch(self.tok, [text])[0]

    def noise(self, room: int, *, sep: str = " ", unit: str = NOISE) -> list[str]:
        """RULER's noise haystack: ``unit`` repeated as often as ``room`` tokens hold once joined with ``sep``
        (counted on the joined text: one unit's count times n overestimates the join by ~4 %, leaving cells short)."""
        per = max(1, self.ntok(unit + sep))
        n = len(fit(lambda k: sep.join([unit] * k), room, self.ntok, 2 * room // per + 1, low=1).split(unit)) - 1
        return [unit] * max(1, n)

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

    # -- tasks: each returns (user, answers, metric, prefill) ------------------------------------------------
    def niah(self, task: str, rng) -> tuple[str, list[str], str, str]:
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
        single = n_query * n_vals == 1
        type_v = val_t[:-1] if single else val_t
        prefill = ANSWER_PREFIX["niah"].format(type_v=type_v, query=query, verb="is" if single else "are")
        room = self.budget("niah", query, prefill) - sum(self.ntok(" " + n) for n in needles)
        if haystack == "noise":  # RULER "repeat": the noise sentences one per line, needles as lines of their own
            lines = self.noise(room, sep="\n")
            context = "\n".join(insert_lines(lines, needles, rng))
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
        user = niah_template(single).format(type_v=type_v, context=context, query=query)
        return user, answers, "ruler_all", prefill

    def vt_chain(self, rng, letters: int) -> tuple[list[str], str]:
        """A chain's variable names (``letters`` upper-case letters, 4 hops) and its value [RULER]."""
        names: list[str] = []
        while len(names) < VT_HOPS + 1:
            n = "".join(rng.choice(string.ascii_uppercase) for _ in range(letters))
            if n not in names:
                names.append(n)
        return names, str(rng.randrange(10_000, 99_999))

    def vt_context(self, names: list[str], value: str, tokens: int) -> str:
        """[RULER ``variable_tracking.py``] the chain ``VAR A = 12345``, ``VAR B = VAR A `` ... inserted at sorted
        random positions between noise blocks (the noise sentences and a newline each), joined by spaces, as many
        blocks as ``tokens`` hold."""
        chain = [f"VAR {names[0]} = {value}"] + [f"VAR {b} = VAR {a} " for a, b in itertools.pairwise(names)]

        def render(n_noise: int) -> str:
            sentences = [NOISE + "\n"] * n_noise
            at = example_rng(self.seed, "vt-positions", self.length, value, names, n_noise)
            for j, pos in enumerate(sorted(at.sample(range(n_noise), min(n_noise, len(chain))))):
                sentences.insert(pos + j, chain[j])
            sentences += chain[n_noise:]  # (only when not even one block per statement fits)
            return " ".join(sentences).replace(". \n", ".\n")

        per = max(1, self.ntok(NOISE + "\n "))
        return fit(render, tokens, self.ntok, 2 * max(tokens, 0) // per + len(chain), low=len(chain))

    def vt(self, rng) -> tuple[str, list[str], str, str]:
        # RULER's one-shot example before the question: 3-letter names, a 500-token prompt, then its answer
        shot_names, shot_value = self.vt_chain(rng, 3)
        shot_prefix = ANSWER_PREFIX["vt"].format(num_v=VT_HOPS + 1, query=shot_value)
        shell = TEMPLATES["vt"].format(context="", query=shot_value) + f" {shot_prefix} {' '.join(shot_names)}"
        shot_room = ICL_TOKENS - GEN_TOKENS["vt"] - self.ntok(shell)
        shot = TEMPLATES["vt"].format(context=self.vt_context(shot_names, shot_value, shot_room), query=shot_value)
        example = f"{shot} {shot_prefix} {' '.join(shot_names)}\n\n"
        names, value = self.vt_chain(rng, 5)
        prefill = ANSWER_PREFIX["vt"].format(num_v=VT_HOPS + 1, query=value)
        room = self.budget("vt", value, prefill) - self.ntok(example)
        question = TEMPLATES["vt"].format(context=self.vt_context(names, value, room), query=value)
        return example + question, names, "ruler_all", prefill

    def cwe(self, rng) -> tuple[str, list[str], str, str]:
        """[RULER ``common_words_extraction.py``] a space-joined numbered list ``1. w 2. w ...``: 10 common words x
        30 and the rest x 3 (x 6 and x 1 below 4,096 tokens), after a one-shot example of 40 words (10 x 10, 30 x 3;
        20 words, 10 x 3 and 10 x 1 below 4,096) with its answer. Words come from the books (RULER: wonderwords)."""
        short = self.length < 4096
        f_common, f_rare = (6, 1) if short else (30, 3)
        ex_n, ex_common, ex_rare = (20, 3, 1) if short else (40, 10, 3)
        # enough distinct words to fill the cell (entries of ~5 tokens): 5,000 up to 30K, more beyond
        words = rng.sample(self.words, min(len(self.words), max(5000, self.length // 6) + ex_n))
        shot, words = words[:ex_n], words[ex_n:]
        common, rare = words[:10], words[10:]
        order = example_rng(self.seed, "cwe-order", self.length, common)

        def numbered(items: list[str]) -> str:
            return " ".join(f"{i}. {w}" for i, w in enumerate(items, 1))

        shot_items = shot[:10] * ex_common + shot[10:] * ex_rare
        order.shuffle(shot_items)
        example = (
            TEMPLATES["cwe"].format(context=numbered(shot_items))
            + " "
            + ANSWER_PREFIX["cwe"]
            + " "
            + numbered(shot[:10])
            + "\n"
        )
        prefill = ANSWER_PREFIX["cwe"]
        room = self.budget("cwe", "", prefill) - self.ntok(example)

        def render(n_rare: int) -> str:
            items = common * f_common + rare[:n_rare] * f_rare
            example_rng(self.seed, "cwe-order", self.length, n_rare, common).shuffle(items)
            return numbered(items)

        user = example + TEMPLATES["cwe"].format(context=fit(render, room, self.ntok, len(rare)))
        return user, common, "ruler_all", prefill

    def fwe(self, rng) -> tuple[str, list[str], str, str]:
        """[RULER ``freq_words_extraction.py``] ``length // 50`` random 6-letter coded words, the top-ranked one
        replaced by ``...`` (noise); word k appears ``int(n k^-2 / zeta(2))`` times (Zipf, alpha 2), space-joined in
        random order; the answer is the next three ranks."""
        size = max(4, self.length // 50)
        vocab: list[str] = []
        while len(vocab) < size:
            w = "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
            if w not in vocab:
                vocab.append(w)
        vocab[0] = "..."
        zeta2 = math.pi**2 / 6
        prefill = ANSWER_PREFIX["fwe"]
        room = self.budget("fwe", "", prefill)

        def render(n_words: int) -> str:
            items = [w for k, w in enumerate(vocab, 1) for _ in range(int(n_words * k**-2 / zeta2))]
            example_rng(self.seed, "fwe-order", self.length, n_words, vocab[1:4]).shuffle(items)
            return " ".join(items)

        context = fit(render, room, self.ntok, 4 * room, low=10)
        return TEMPLATES["fwe"].format(context=context), vocab[1:4], "ruler_all", prefill

    def qa(self, task: str, rng) -> tuple[str, list[str], str, str]:
        """[RULER ``qa.py``] the question's own documents first (SQuAD: its paragraph, then the other paragraphs of
        the same article; HotpotQA: its supporting paragraphs, then its other paragraphs, the hard distractors),
        then random documents of the de-duplicated pool until the cell is full; shuffled, numbered ``Document i:``."""
        qas, pool = self.qa_rows(task)
        item = qas[rng.randrange(len(qas))]
        prefill = ANSWER_PREFIX["qa"]
        room = self.budget("qa", item["question"], prefill)
        more = list(item["more"])
        rng.shuffle(more)
        chosen = list(item["docs"])
        used = sum(self.ntok(f"Document {i}:\n{pool[d]}\n\n") for i, d in enumerate(chosen, 1))
        taken = set(chosen)

        def candidates():
            yield from more
            order = list(range(len(pool)))
            rng.shuffle(order)
            yield from order

        misses = 0  # a document too long for what is left is skipped; 64 in a row end the fill
        for d in candidates():
            if d in taken:
                continue
            cost = self.ntok(f"Document {len(chosen) + 1}:\n{pool[d]}\n\n")
            if used + cost > room:
                misses += 1
                if misses >= 64:
                    break
                continue
            misses = 0
            chosen.append(d)
            taken.add(d)
            used += cost
        rng.shuffle(chosen)
        context = "\n\n".join(f"Document {i}:\n{pool[d]}" for i, d in enumerate(chosen, 1))
        return TEMPLATES["qa"].format(context=context, query=item["question"]), item["answers"], "ruler_part", prefill

    def qa_rows(self, task: str) -> tuple[list[dict[str, Any]], list[str]]:
        """(questions, document pool) of a RULER QA task; questions name their documents by pool index."""
        if task not in self._qa_cache:
            path = self.qa_files.get(task)
            if not path:
                raise ValueError(f"RULER {task} needs eval.ruler.qa_files.{task} (SQuAD for qa_1, HotpotQA for qa_2)")
            self._qa_cache[task] = load_squad(Path(path)) if task == "qa_1" else load_hotpot(Path(path))
        return self._qa_cache[task]

    def example(self, task: str, index: int) -> dict[str, Any]:
        rng = example_rng(self.seed, "ruler", task, self.length, index)
        if task in NIAH_TASKS:
            family = "niah"
            user, answers, metric, prefill = self.niah(task, rng)
        elif task in ("qa_1", "qa_2"):
            family = "qa"
            user, answers, metric, prefill = self.qa(task, rng)
        else:
            family = task
            user, answers, metric, prefill = getattr(self, task)(rng)
        return task_row(
            id=f"ruler-{task}-L{self.length}-{index:05d}",
            benchmark="ruler",
            task=task,
            user=user,
            answers=answers,
            metric=metric,
            system=self.system,
            length=self.length,
            prefill=prefill if self.prefix else None,
            meta={"max_new_tokens": GEN_TOKENS[family]} if self.prefix else None,
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


def load_squad(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Answerable SQuAD (v1.1/v2.0 dev JSON) questions and the de-duplicated paragraph pool [RULER ``qa.py``]:
    each question's document is its paragraph, ``more`` the other paragraphs of its article."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(path, 0, "data", "not a SQuAD file (expected a JSON object with a 'data' list)")
    pool = sorted({p["context"] for art in data["data"] for p in art["paragraphs"]})
    index = {c: i for i, c in enumerate(pool)}
    rows = []
    for art in data["data"]:
        article = [index[p["context"]] for p in art["paragraphs"]]
        for para in art["paragraphs"]:
            own = index[para["context"]]
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    continue
                rows.append(
                    {
                        "question": qa["question"],
                        "answers": sorted({a["text"] for a in qa["answers"]}),
                        "docs": [own],
                        "more": [i for i in dict.fromkeys(article) if i != own],
                    }
                )
    if not rows:
        raise DataError(path, 0, "data", "no answerable SQuAD questions")
    return rows, pool


def load_hotpot(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """HotpotQA dev (distractor) questions and the de-duplicated paragraph pool [RULER ``qa.py``]: all of a
    question's paragraphs (``title\\n`` + sentences) go in, hard distractors included: the supporting ones as
    ``docs`` (always), the others as ``more`` (next, before the pool; only a cell too short for all ten drops some)."""
    raw = []
    for i, r in enumerate(read_rows(path)):
        for field in ("question", "answer", "context", "supporting_facts"):
            if field not in r:
                raise DataError(path, r.get("_id", i), field, "missing")
        gold = {t for t, _ in r["supporting_facts"]}
        paras = [(t in gold, f"{t}\n{''.join(s)}") for t, s in r["context"]]
        raw.append((r["question"], r["answer"], paras))
    pool = sorted({d for _, _, paras in raw for _, d in paras})
    index = {c: i for i, c in enumerate(pool)}
    rows = []
    for q, a, paras in raw:
        docs = list(dict.fromkeys(index[d] for g, d in paras if g))
        more = [i for i in dict.fromkeys(index[d] for g, d in paras if not g) if i not in docs]
        rows.append({"question": q, "answers": [a], "docs": docs, "more": more})
    return rows, pool


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
    prefix: bool = False,
    books: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every (task, index) example of one length; with ``threads`` > 1 spread over forked worker processes;
    ``prefix``: RULER's answer prefixes and per-task caps (the instruct kind); ``books``: the haystack's file names
    (None: every book of the folders).

    Each example has its own RNG, so the rows are identical whatever the number of workers.
    """
    global _WORKER
    unknown = sorted(set(p["tasks"]) - set(RULER_TASKS))
    if unknown:
        raise ValueError(f"unknown RULER tasks {unknown}; known: {list(RULER_TASKS)}")
    ruler = Ruler(
        load_books(inputs, books),
        tokenizer,
        length=length,
        system=system,
        seed=seed,
        qa=p.get("qa_files") or {},
        prefix=prefix,
    )
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
