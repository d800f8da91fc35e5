"""Report tables: our numbers beside the paper's, from the eval matrix summaries.

Tables (markdown in ``report.md`` and one CSV each for ``snakemake --report``):
Table 2 (LongBench five + average; MMLU / MATH-500 / IFEval + average), Table 3 (NarrativeQA by input length;
RULER 16K-128K), Table 7 (RULER by length), a scorer table (LongBench ``qa_f1`` and exact match on the same
completions as the two-way EM headline, Table 5's metrics applied at evaluation time), truncation accounting and the
contamination check. Every score cell carries the share of completions that hit the token cap.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

from loongrl.eval import evaluate, longbench, longbench_v2
from loongrl.eval.registry import SHORT

log = logging.getLogger(__name__)

LB_TASKS = list(longbench.TASKS)
BUCKETS = [label for _, hi, label in evaluate.BUCKETS if hi <= 65536]  # Table 3's NarrativeQA columns


def load_summaries(paths: list[Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {"<bench>.<cell>": summary}}`` from ``results/eval/<model>/<bench>.<cell>.summary.json``; a judged
    cell's summary (``<bench>.<cell>.judged.summary.json``, ``loongrl.eval.judge``) stands for the cell."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for p in paths:
        key = p.name.removesuffix(".summary.json").removesuffix(".judged")
        out.setdefault(p.parent.name, {})[key] = json.loads(p.read_text())
    return out


def judge_label(by_model: dict[str, dict[str, dict[str, Any]]]) -> str:
    """What Table 2's LongBench columns were scored with: the judge that ran (model, endpoint) or, without one, the
    rule's lower bound. Cells judged by different judges are named apart."""
    judges = sorted(
        {
            f"LLM judge {j['model']}" + (f" at {j['url']}" if j.get("url") else " (our inference backend)")
            for cells in by_model.values()
            if (j := (cells.get("longbench.all") or {}).get("judge"))
        }
    )
    unjudged = any("longbench.all" in c and not c["longbench.all"].get("judge") for c in by_model.values())
    parts = judges + (["no judge: lower bound"] if unjudged or not judges else [])
    return "; ".join(parts)


class Cell:
    """A score (0-1) with its cap-hit share, printed as the papers do (x100)."""

    def __init__(self, score: float | None, cap: float | None = None):
        self.score, self.cap = score, cap

    def text(self) -> str:
        if self.score is None:
            return "–"
        s = f"{100 * self.score:.1f}"
        return f"{s} (cap {100 * self.cap:.0f}%)" if self.cap else s


def _avg(cells: list[Cell]) -> Cell:
    if not cells or any(c.score is None for c in cells):
        return Cell(None)
    return Cell(statistics.fmean(c.score for c in cells), statistics.fmean(c.cap or 0.0 for c in cells))


def _get(stats: dict[str, Any] | None, metric: str | None = None) -> Cell:
    if not stats:
        return Cell(None)
    value = stats["score"] if metric is None else stats["metrics"].get(metric)
    return Cell(value, stats["hit_cap_share"])


def heldout_summaries(s: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
    """The LongBench cell restricted to the rows outside the validation slice (``by_task_heldout``'s
    ``<task>@test`` groups), shaped as table2 reads it; None when the cell marks no slice."""
    groups = s.get("longbench.all", {}).get("by_task_heldout")
    if not groups:
        return None
    by_task = {k.split("@")[0]: v for k, v in groups.items() if k.endswith("@test")}
    return {**s, "longbench.all": {"by_task": by_task}}


def table2(s: dict[str, dict[str, Any]], metric: str | None = None) -> dict[str, Cell]:
    lb = s.get("longbench.all", {}).get("by_task", {})
    row = {t: _get(lb.get(t), metric) for t in LB_TASKS}
    row["lc_avg"] = _avg([row[t] for t in LB_TASKS])
    for b in SHORT:
        row[b] = _get((s.get(f"{b}.all") or {}).get("overall"))
    row["short_avg"] = _avg([row[b] for b in SHORT])
    return row


T6_COLUMNS = ["overall", *longbench_v2.DIFFICULTIES, *longbench_v2.LENGTHS, *longbench_v2.TASK_TYPES.values()]


def pooled(stats: list[dict[str, Any] | None]) -> Cell:
    """Stats of several cells as one: means weighted by samples (Avg@n over every row of every cell)."""
    stats = [x for x in stats if x]
    if not stats:
        return Cell(None)
    n = sum(x["samples"] for x in stats)
    score = sum(x["score"] * x["samples"] for x in stats) / n
    return Cell(score, sum(x["hit_cap_share"] * x["samples"] for x in stats) / n)


def table6(s: dict[str, dict[str, Any]]) -> dict[str, Cell]:
    """LongBench v2 (Avg@n): overall, by difficulty, by length bucket and by task type, pooled over the cells."""
    cells = [summ for key, summ in s.items() if key.startswith("longbench_v2.")]
    row = {"overall": pooled([c["overall"] for c in cells])}
    for kind, cols in (
        ("difficulty", longbench_v2.DIFFICULTIES),
        ("length_bucket", longbench_v2.LENGTHS),
        ("task", longbench_v2.TASK_TYPES.values()),
    ):
        for col in cols:
            row[col] = pooled([c.get(f"by_{kind}", {}).get(col) for c in cells])
    return row


def ruler_lengths(s: dict[str, dict[str, Any]]) -> dict[int, Cell]:
    out = {}
    for key, summ in s.items():
        if key.startswith("ruler.L"):
            out[int(key.removeprefix("ruler.L"))] = _get(summ["overall"])
    return dict(sorted(out.items()))


def table3(s: dict[str, dict[str, Any]], ruler_cols: list[int]) -> dict[str, Cell]:
    buckets = s.get("longbench.all", {}).get("by_task_bucket", {})
    row = {f"narrativeqa@{b}": _get(buckets.get(f"narrativeqa@{b}")) for b in BUCKETS}
    rl = ruler_lengths(s)
    row.update({f"ruler@{n}": rl.get(n, Cell(None)) for n in ruler_cols})
    return row


def table7(s: dict[str, dict[str, Any]], cols: list[int]) -> dict[str, Cell]:
    rl = ruler_lengths(s)
    row = {f"ruler@{n}": rl.get(n, Cell(None)) for n in cols}
    row["ruler_avg"] = _avg(list(row.values()))
    return row


def markdown_table(title: str, columns: list[str], ours: dict[str, dict[str, Cell]], paper: dict | None) -> str:
    head = f"### {title}\n\n| model | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1) + "\n"
    lines = [f"| **ours: {m}** | " + " | ".join(r[c].text() for c in columns) + " |" for m, r in ours.items()]
    if paper:
        idx = {c: i for i, c in enumerate(paper["columns"])}
        for name, vals in paper["rows"].items():
            lines.append(
                f"| paper: {name} | " + " | ".join(f"{vals[idx[c]]:.1f}" if c in idx else "–" for c in columns) + " |"
            )
    cite = f"\n\nPaper rows: {paper['cite']}." if paper else ""
    if paper and paper.get("note"):
        cite += f" {paper['note']}"
    if paper and paper.get("differs"):
        cite += "\n\nSettings that still differ from the paper's:\n" + "".join(f"\n- {d}" for d in paper["differs"])
    return head + "\n".join(lines) + cite + "\n"


def csv_table(columns: list[str], ours: dict[str, dict[str, Cell]], paper: dict | None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", *columns, *[f"{c}_cap_share" for c in columns]])
    for m, r in ours.items():
        w.writerow(
            [f"ours:{m}"]
            + [None if r[c].score is None else round(100 * r[c].score, 2) for c in columns]
            + [None if r[c].cap is None else round(r[c].cap, 4) for c in columns]
        )
    if paper:
        idx = {c: i for i, c in enumerate(paper["columns"])}
        for name, vals in paper["rows"].items():
            w.writerow(
                [f"paper:{name}"] + [vals[idx[c]] if c in idx else None for c in columns] + [None] * len(columns)
            )
    return buf.getvalue()


def window_label(summary: dict[str, Any]) -> str:
    """How a cell fit the engine's positions (evaluate.plan_cell): native, YaRN, vLLM's long-length override past
    the positions the rope covers, or generation clipped to the window."""
    w = summary.get("window")
    if not w:
        return "–"
    parts = [f"YaRN x{summary['yarn']['factor']:g}" if summary.get("yarn") else "native"]
    if w["past_native"] and summary.get("yarn"):
        parts.append("past native")
    if w["extended_past_limit"]:
        parts.append(f"+{w['extended_past_limit']} past the rope (override)")
    if w["rows_generation_clipped"]:
        parts.append(f"{w['rows_generation_clipped']} rows' generation clipped")
    return ", ".join(parts)


def truncation_md(by_model: dict[str, dict[str, Any]], order: list[str]) -> str:
    lines = [
        "### Truncation accounting\n",
        "Window: how the cell's prompts + generation fit the model's positions (`eval.past_native`).\n",
        "| model | kind | cell | rows | samples | score | cap-hit share | no-`</think>` share | input truncated share "
        "| mean completion tokens | window |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in order:
        for cell, s in sorted(by_model[m].items()):
            o = s["overall"]
            lines.append(
                f"| {m} | {s.get('kind', '–')} | {cell} | {o['rows']} | {o['samples']} | {100 * o['score']:.1f} "
                f"| {o['hit_cap_share']:.2f} | {o.get('no_think_share', 0.0):.2f} | {o['input_truncated_share']:.2f} "
                f"| {o['completion_tokens_mean']:.0f} | {window_label(s)} |"
            )
    return "\n".join(lines) + "\n"


def contamination_md(c: dict[str, Any]) -> str:
    lines = [
        "### Contamination check (LongBench questions vs raw training questions)\n",
        f"Training questions: {c['train_questions']}. Match = identical after SQuAD normalisation; "
        f"n-gram = a shared word {c['ngram']}-gram.\n",
        "| LongBench task | questions | exact | n-gram |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t} | {v['questions']} | {v['exact']} | {v['ngram']} |" for t, v in c["by_task"].items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the effect
BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(
    values: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: rows (examples) resampled with replacement, seeded."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_gain(base: dict[str, float], model: dict[str, float], *, seed: int = 0) -> dict[str, Any] | None:
    """Mean score of both models on the rows they share, and the gain with a paired bootstrap interval (the same
    resampled rows for both, so row difficulty cancels)."""
    ids = sorted(set(base) & set(model))
    if not ids:
        return None
    b = [base[i] for i in ids]
    m = [model[i] for i in ids]
    d = [y - x for x, y in zip(b, m, strict=True)]
    return {
        "rows": len(ids),
        "base": sum(b) / len(b),
        "base_ci": bootstrap_ci(b, seed=seed),
        "score": sum(m) / len(m),
        "score_ci": bootstrap_ci(m, seed=seed),
        "gain": sum(d) / len(d),
        "gain_ci": bootstrap_ci(d, seed=seed),
    }


def effect_rows(by_model: dict[str, dict[str, Any]], order: list[str], base: str = "base") -> list[dict[str, Any]]:
    """Base vs each other model, per cell (benchmark and length) both were evaluated on."""
    if base not in by_model:
        return []
    out = []
    for m in order:
        if m == base:
            continue
        for cell in sorted(by_model[m]):
            b, s = by_model[base].get(cell), by_model[m][cell]
            if not b or "row_scores" not in b or "row_scores" not in s:
                continue
            g = paired_gain(b["row_scores"], s["row_scores"])
            if g:
                out.append({"model": m, "cell": cell, **g})
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def effect_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        "## The effect: base vs trained\n",
        "Scores in %, the mean over a cell's rows (each row's samples averaged), with 95 % bootstrap intervals "
        f"({BOOTSTRAP_RESAMPLES} resamples of the rows); the gain's interval resamples the rows both models share, "
        "paired.\n",
        "| model | cell | rows | base | model | gain |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['cell']} | {r['rows']} | {_pct(r['base'])} {_ci(r['base_ci'])} "
            f"| {_pct(r['score'])} {_ci(r['score_ci'])} | {100 * r['gain']:+.1f} {_ci(r['gain_ci'])} |"
        )
    return "\n".join(lines) + "\n"


def effect_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["model", "cell", "rows", "base", "base_lo", "base_hi", "score", "lo", "hi", "gain", "gain_lo", "gain_hi"]
    )
    for r in rows:
        w.writerow(
            [r["model"], r["cell"], r["rows"]]
            + [
                round(100 * v, 2)
                for v in (r["base"], *r["base_ci"], r["score"], *r["score_ci"], r["gain"], *r["gain_ci"])
            ]
        )
    return buf.getvalue()
