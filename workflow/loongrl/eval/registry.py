"""The one table of benchmarks. Rules, the config checks, the task builder CLI, evaluate and the report read it.

A benchmark is a name with: the eval config sections its builder reads (``settings``; only those become the
builder job's params, so adding a model reruns no builder), the input it is built from (``data``), its cells in the
matrix (``cells``: ``all``, one per context length, or one per length bucket), its builder, the metric families of
``loongrl.eval.metrics.METRICS`` its rows use, and its decoding (``decoding``: the shared ``eval.decoding`` with the
benchmark's own generation cap and overrides). Adding a benchmark means one builder module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loongrl.eval import longbench, longbench_v2, short, synthetic
from loongrl.eval.kinds import KINDS, ModelKind, kind_decoding
from loongrl.eval.rows import length_slack, task_row
from loongrl.io import read_parquet
from loongrl.prompts import FILTER_QA_TEMPLATE, PLAIN_QA_TEMPLATE


@dataclass(frozen=True)
class BuildRequest:
    """What a builder gets: its input files or folders, the tokenizer, its settings, the system prompt, the cell's
    context length (0 for benchmarks without length cells), the cell's name, the seed, the CPU threads it may use
    and the kind of model the rows are for (``loongrl.eval.kinds``)."""

    inputs: list[Path]
    tokenizer: Any
    settings: dict[str, Any]
    system: str | None
    length: int = 0
    cell: str = "all"
    seed: int = 42
    threads: int = 1
    kind: ModelKind = KINDS["reasoning"]


def one_cell(ev: dict[str, Any]) -> list[str]:
    return ["all"]


def shared_decoding(ev: dict[str, Any], kind: ModelKind) -> dict[str, Any]:
    return kind_decoding(ev["decoding"], kind)


@dataclass(frozen=True)
class Benchmark:
    name: str
    settings: tuple[str, ...]
    data: str  # "longbench" / "longbench_v2" (official files), "books" (+ RULER's QA files), "short" (one file)
    build: Callable[[BuildRequest], list[dict[str, Any]]]
    metrics: tuple[str, ...]
    cells: Callable[[dict[str, Any]], list[str]] = one_cell
    decoding: Callable[[dict[str, Any], ModelKind], dict[str, Any]] = shared_decoding
    # the longest prompt a cell's rows can have, from its settings and length (None: not known before the build);
    # the engine check sizes an evaluate job's window from it before the task file exists
    prompt_bound: Callable[[dict[str, Any], int], int | None] = lambda ev, length: None


def labelled_bound(reserve: Callable[[dict[str, Any]], int] = lambda ev: 0):
    """Cells labelled by context length: the prompt fills length - reserve, within ``length_slack`` (check_lengths)."""
    return lambda ev, length: length - reserve(ev) + length_slack(length)


def input_cap(name: str):
    """LongBench-style cells: the whole chat prompt is cut to ``<name>.max_input_tokens``."""
    return lambda ev, length: ev[name]["max_input_tokens"]


def length_cells(name: str) -> Callable[[dict[str, Any]], list[str]]:
    """One cell per configured context length, ``L<n>``."""
    return lambda ev: [f"L{n}" for n in ev[name]["lengths"]]


def own_cap(name: str) -> Callable[[dict[str, Any], ModelKind], dict[str, Any]]:
    """The shared decoding with the benchmark's own generation cap (NIAH, RULER: 8,192 new tokens [spec §4]).
    Rows may carry a smaller cap of their own (``meta.max_new_tokens``: RULER's per-task caps for the instruct
    kind), which ``evaluate`` honours."""
    return lambda ev, kind: {**shared_decoding(ev, kind), "max_new_tokens": ev[name]["max_new_tokens"]}


def longbench_v2_decoding(ev: dict[str, Any], kind: ModelKind) -> dict[str, Any]:
    """Avg@5 [spec §4]: reasoning models sample at T=0.6; non-reasoning models (``explicit_cot`` kinds) use the
    official CoT setting, sampled at T=0.1 with pred.py's 1,024-token CoT cap."""
    lb2 = ev["longbench_v2"]
    cap = lb2["cot_max_new_tokens"] if kind.explicit_cot else lb2["max_new_tokens"]
    dec = {**ev["decoding"], "n": lb2["n"], "max_new_tokens": cap, "greedy": False}
    dec["followup_max_new_tokens"] = lb2["answer_max_new_tokens"]
    dec["temperature"] = lb2["cot_temperature"] if kind.explicit_cot else lb2["temperature"]
    return dec


def _longbench(req: BuildRequest) -> list[dict[str, Any]]:
    lb, val = req.settings["longbench"], req.settings["validation"]
    data = longbench.load_dir(req.inputs[0], lb["tasks"])
    # The full set is the paper-comparable headline [P Table 2; the official scripts validate on LongBench itself];
    # with holdout the validation rows are marked so the report adds the held-out subset, labelled, beside it.
    # (a retrieval validation slice holds no LongBench row: nothing to mark)
    on_longbench = val.get("source", "longbench") == "longbench"
    held = longbench.validation_ids(data, val) if val["holdout"] and on_longbench else set()
    return longbench.build(
        data,
        req.tokenizer,
        max_input_tokens=lb["max_input_tokens"],
        system=req.system,
        exclude=set(),
        validation=held,
        max_rows=lb["max_rows"],
        template=FILTER_QA_TEMPLATE if req.kind.explicit_cot else PLAIN_QA_TEMPLATE,
    )


def _niah(req: BuildRequest) -> list[dict[str, Any]]:
    # one cell per length, so each runs under its own YaRN decision (64K/128K only) and engine window; the CLI
    # without --length builds every configured length into one file
    p = {**req.settings["niah"], "lengths": [req.length]} if req.length else req.settings["niah"]
    books = req.settings.get("haystack_books")
    return synthetic.build_niah(req.inputs, req.tokenizer, p, system=req.system, seed=req.seed, books=books)


def _ruler(req: BuildRequest) -> list[dict[str, Any]]:
    return synthetic.build_ruler(
        req.inputs,
        req.tokenizer,
        req.settings["ruler"],
        length=req.length,
        system=req.system,
        seed=req.seed,
        threads=req.threads,
        prefix=req.kind.answer_prefix,
        books=req.settings.get("haystack_books"),
    )


def _longbench_v2(req: BuildRequest) -> list[dict[str, Any]]:
    lb2 = req.settings["longbench_v2"]
    src = Path(req.inputs[0])
    return longbench_v2.build(
        longbench_v2.load(src / "data.json" if src.is_dir() else src),
        req.tokenizer,
        bucket=req.cell,
        max_input_tokens=lb2["max_input_tokens"],
        system=req.system,
        cot=req.kind.explicit_cot,
        compensated=lb2["compensated"],
        max_rows=lb2["max_rows"],
    )


def _heldout(req: BuildRequest) -> list[dict[str, Any]]:
    """Held-out examples of the training retrieval task at the cell's length: rows the data stage built from the
    books training never saw (``retrieval.heldout_books``; rule ``build_retrieval_heldout``), in the training
    prompt's words, scored by the training verifier on the answer the model's kind reads."""
    rows = []
    for r in read_parquet(req.inputs[0]):
        if r["task"] != "multikey":
            continue
        rows.append(
            task_row(
                id=f"heldout-{r['id']}",
                benchmark="heldout",
                task="retrieval_multikey",
                user=r["user_prompt"],
                answers=r["answers"],
                metric="retrieval_multikey",
                system=req.system,
                length=req.length,
                meta={"book": r["book"], "passage_start": r["passage_start"], "passages": r["passages"]},
            )
        )
    if not rows:
        raise ValueError(f"{req.inputs[0]}: no multi-key retrieval rows for the held-out cell")
    return rows


def _heldout_keychain(req: BuildRequest) -> list[dict[str, Any]]:
    """KeyChain over Book-RULER questions on the held-out books at the cell's length (rule
    ``build_keychain_books_heldout``): the KeyChain prompt after its answer prefix, scored by the multi-key
    verifier (the true chain's number, and no other number). The true chain and the distractor chains' numbers
    ride in meta, so the ``keychain`` metric also counts answers that followed another chain and completions that
    name every key of the true chain (the reasoning pattern, ``metrics.keychain_pattern``)."""
    rows = [
        task_row(
            id=f"heldout-{r['id']}",
            benchmark="heldout_keychain",
            task="keychain_books",
            user=r["user_prompt"],
            answers=r["answers"],
            metric="keychain",
            system=req.system,
            length=req.length,
            prefill=r["prefill"],
            meta={
                "book": r["book"],
                "hops": len(r["chains"][0]),
                "chains": len(r["chains"]),
                "chain": r["chains"][0],
                "distractor_answers": r["distractor_answers"],
            },
        )
        for r in read_parquet(req.inputs[0])
    ]
    if not rows:
        raise ValueError(f"{req.inputs[0]}: no KeyChain-over-books rows for the held-out cell")
    return rows


def _short(name: str) -> Callable[[BuildRequest], list[dict[str, Any]]]:
    def build(req: BuildRequest) -> list[dict[str, Any]]:
        return short.build(name, req.inputs, req.system, req.settings["short"]["max_rows"])

    return build


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "longbench",
            ("longbench", "validation"),
            "longbench",
            _longbench,
            ("longbench_qa",),
            prompt_bound=input_cap("longbench"),
        ),
        Benchmark(
            "longbench_v2",
            ("longbench_v2",),
            "longbench_v2",
            _longbench_v2,
            ("longbench_v2", "longbench_v2_compensated"),
            cells=lambda ev: list(ev["longbench_v2"]["buckets"]),
            decoding=longbench_v2_decoding,
            prompt_bound=input_cap("longbench_v2"),
        ),
        Benchmark(
            "niah",
            ("niah",),
            "books",
            _niah,
            ("niah",),
            cells=length_cells("niah"),
            decoding=own_cap("niah"),
            prompt_bound=labelled_bound(lambda ev: ev["niah"]["reserve"]),
        ),
        Benchmark(
            "ruler",
            ("ruler",),
            "books",
            _ruler,
            ("ruler_all", "ruler_part"),
            cells=length_cells("ruler"),
            decoding=own_cap("ruler"),
            prompt_bound=labelled_bound(),
        ),
        Benchmark(
            "heldout",
            ("heldout",),
            "heldout",
            _heldout,
            ("retrieval_multikey",),
            cells=length_cells("heldout"),
            decoding=own_cap("heldout"),
            prompt_bound=labelled_bound(),
        ),
        Benchmark(
            "heldout_keychain",
            ("heldout_keychain",),
            "heldout_keychain",
            _heldout_keychain,
            ("retrieval_multikey",),
            cells=length_cells("heldout_keychain"),
            decoding=own_cap("heldout"),
            # the book and its needles fill the length; the pairs and the KeyChain instructions come on top
        ),
        Benchmark("mmlu", ("short",), "short", _short("mmlu"), ("choice",)),
        Benchmark("math500", ("short",), "short", _short("math500"), ("math",)),
        Benchmark("ifeval", ("short",), "short", _short("ifeval"), ("ifeval",)),
    )
}
SHORT = [name for name, b in BENCHMARKS.items() if b.data == "short"]


def eval_cells(ev: dict[str, Any]) -> list[tuple[str, str]]:
    """(benchmark, cell) pairs of the eval matrix, in registry order; ``eval.benchmarks`` picks a subset (a short
    run such as ``make demo`` measures fewer benchmarks, in the same order and cells as the full matrix)."""
    chosen = ev.get("benchmarks") or BENCHMARKS
    return [(name, cell) for name, b in BENCHMARKS.items() if name in chosen for cell in b.cells(ev)]


def haystack_books(config: dict[str, Any]) -> list[str] | None:
    """The book files NIAH and RULER cut their haystacks from, within the eval books folder (None: all of them).

    Never the training books [issue 31; the paper trained on PG19 and evaluated RULER on essays]: with downloads
    the eval books are their own ids (``eval.haystack_ids``, ``resources/eval/books``); with local books in the
    training folder, the books training never sees (``retrieval.heldout_books``)."""
    r, ev = config.get("retrieval", {}), config["eval"]
    if r.get("source") == "download":
        return None
    if Path(ev["books_dir"]).resolve() == Path(r.get("books_dir", "")).resolve():
        return list(r.get("heldout_books") or [])
    return None


def haystack_errors(config: dict[str, Any]) -> list[str]:
    """Config messages when an eval haystack would be cut from a training book."""
    r, ev = config.get("retrieval", {}), config["eval"]
    if not any(BENCHMARKS[b].data == "books" for b, _ in eval_cells(ev)):
        return []
    if r.get("source") == "download":
        shared = sorted(set(ev.get("haystack_ids") or []) & set(r.get("gutenberg_ids") or []))
        if shared:
            return [f"config key 'eval.haystack_ids': {shared} are training books (retrieval.gutenberg_ids)"]
        if not ev.get("haystack_ids"):
            return ["config key 'eval.haystack_ids': NIAH / RULER need books that training never sees"]
        return []
    books = haystack_books(config)
    if books is not None:
        if not books:
            return [
                "config key 'retrieval.heldout_books': NIAH / RULER haystacks would be the training books "
                "(eval.books_dir is retrieval.books_dir); hold out books training never sees, or point "
                "eval.books_dir at other books"
            ]
        return []
    training = {f.name for f in Path(r.get("books_dir", "")).glob("*.txt")} - set(r.get("heldout_books") or [])
    shared = sorted(training & {f.name for f in Path(ev["books_dir"]).glob("*.txt")})
    if shared:
        return [f"config key 'eval.books_dir': {shared} are also training books (retrieval.books_dir)"]
    return []


def config_errors(config: dict[str, Any]) -> list[str]:
    """Cross-key checks of the ``eval`` section (the schema checks types and keys)."""
    ev = config.get("eval")
    if not ev:
        return []
    msgs = []
    train = config.get("train") or {}
    known = {"base", *train.get("stages", {})}
    for i, name in enumerate(ev.get("benchmarks") or []):
        if name not in BENCHMARKS:
            msgs.append(f"config key 'eval.benchmarks[{i}]': '{name}' is not one of {list(BENCHMARKS)}")
    for i, name in enumerate(ev["models"]):
        if name not in known:
            msgs.append(f"config key 'eval.models[{i}]': '{name}' is not base or a train.stages name")
    extra = ev["extra_models"] or {}
    for name in extra:
        if name in known:
            msgs.append(f"config key 'eval.extra_models.{name}': clashes with a model of eval.models")
    for label, kind in (ev.get("kinds") or {}).items():
        if label not in {*ev["models"], *extra}:
            msgs.append(f"config key 'eval.kinds.{label}': '{label}' is not in eval.models or eval.extra_models")
        if kind not in KINDS:
            msgs.append(f"config key 'eval.kinds.{label}': '{kind}' is not one of {sorted(KINDS)}")
    for table, rows in (ev["ablations"] or {}).items():
        for label, model in rows.items():
            if model not in {*ev["models"], *extra}:
                msgs.append(
                    f"config key 'eval.ablations.{table}.{label}': '{model}' is not in eval.models or eval.extra_models"
                )
    lb = ev["longbench"]
    if lb["source"] == "local" and "local_dir" not in lb:
        msgs.append("config key 'eval.longbench.local_dir': required when eval.longbench.source is 'local'")
    if lb["source"] == "download" and "url" not in lb:
        msgs.append("config key 'eval.longbench.url': required when eval.longbench.source is 'download'")
    for t in ev["validation"]["tasks"]:
        if t not in lb["tasks"]:
            msgs.append(f"config key 'eval.validation.tasks': '{t}' is not in eval.longbench.tasks")
    qa_key = "qa_downloads" if ev["ruler"]["qa_source"] == "download" else "qa_local"
    for t in ev["ruler"]["tasks"]:
        if t.startswith("qa_") and t not in ev["ruler"].get(qa_key, {}):
            msgs.append(f"config key 'eval.ruler.{qa_key}.{t}': RULER {t} needs its data file")
    short_key = "downloads" if ev["short"]["source"] == "download" else "local"
    for b in SHORT:
        if b not in ev["short"].get(short_key, {}):
            msgs.append(f"config key 'eval.short.{short_key}.{b}': missing for eval.short.source")
    lb2 = ev["longbench_v2"]
    if lb2["source"] == "download" and "url" not in lb2:
        msgs.append("config key 'eval.longbench_v2.url': required when eval.longbench_v2.source is 'download'")
    if lb2["source"] == "local" and "local_file" not in lb2:
        msgs.append("config key 'eval.longbench_v2.local_file': required when eval.longbench_v2.source is 'local'")
    msgs += haystack_errors(config)
    for held in ("heldout", "heldout_keychain"):
        if (ev.get(held) or {}).get("lengths") and not config.get("retrieval", {}).get("heldout_books"):
            msgs.append(f"config key 'retrieval.heldout_books': eval.{held} needs books that training never sees")
    room = ev["niah"]["reserve"] + 64
    for length in ev["niah"]["lengths"]:
        if length <= room:
            msgs.append(f"config key 'eval.niah.lengths': {length} leaves no room after eval.niah.reserve")
    return msgs
