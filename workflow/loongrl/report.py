"""The final report: our numbers beside the paper's tables, and the plots, from the eval matrix outputs.

Tables (markdown in ``report.md`` and one CSV each for ``snakemake --report``):
Table 2 (LongBench five + average; MMLU / MATH-500 / IFEval + average), Table 3 (NarrativeQA by input length;
RULER 16K-128K), Table 7 (RULER by length), a scorer table (LongBench ``qa_f1`` and exact match on the same
completions as the two-way EM headline, Table 5's metrics applied at evaluation time), truncation accounting and the
contamination check. Every score cell carries the share of completions that hit the token cap. Figures: NIAH heatmap
per model, RULER vs length, training reward and response length vs step, prompt-length histograms of the training
mixtures. Each figure is labelled with the model, the config hash and the date.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import yaml

from loongrl import bench_longbench, evaluate
from loongrl.cli import setup_logging
from loongrl.io import atomic_path, read_parquet, write_text

log = logging.getLogger(__name__)

LB_TASKS = list(bench_longbench.TASKS)
SHORT = ["mmlu", "math500", "ifeval"]
BUCKETS = [label for _, hi, label in evaluate.BUCKETS if hi <= 65536]  # Table 3's NarrativeQA columns


def load_summaries(paths: list[Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {"<bench>.<cell>": summary}}`` from ``results/eval/<model>/<bench>.<cell>.summary.json``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for p in paths:
        out.setdefault(p.parent.name, {})[p.name.removesuffix(".summary.json")] = json.loads(p.read_text())
    return out


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


def table2(s: dict[str, dict[str, Any]], metric: str | None = None) -> dict[str, Cell]:
    lb = s.get("longbench.all", {}).get("by_task", {})
    row = {t: _get(lb.get(t), metric) for t in LB_TASKS}
    row["lc_avg"] = _avg([row[t] for t in LB_TASKS])
    for b in SHORT:
        row[b] = _get((s.get(f"{b}.all") or {}).get("overall"))
    row["short_avg"] = _avg([row[b] for b in SHORT])
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


# ----------------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "svg.hashsalt": "loongrl"})
    return plt


def _save(fig, path: Path, label: str) -> None:
    fig.text(0.99, 0.005, label, ha="right", va="bottom", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)


def _klabel(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def niah_heatmap(model: str, summ: dict[str, Any], path: Path, label: str) -> None:
    plt = _plt()
    cells = summ["by_length_depth"]
    lengths = sorted({int(k.split("@")[0]) for k in cells})
    depths = sorted({float(k.split("@")[1]) for k in cells})
    grid = [[100 * cells[f"{n}@{d:g}"]["score"] for n in lengths] for d in depths]
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(lengths), 1 + 0.35 * len(depths)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(lengths)), [_klabel(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(f"Needle in a haystack: {model}")
    fig.colorbar(im, ax=ax, label="score (needle recall, %)")
    _save(fig, path, label)


def ruler_plot(models: dict[str, dict[int, Cell]], paper: dict, path: Path, label: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m, rl in models.items():
        if rl:
            ax.plot(list(rl), [100 * c.score for c in rl.values()], marker="o", label=f"ours: {m}")
    idx = paper["columns"]
    for name in ("Qwen2.5-7B-Instruct", "LoongRL-7B"):
        vals = paper["rows"][name]
        xs = [int(c.split("@")[1]) for c in idx if c.startswith("ruler@")]
        ax.plot(xs, vals[: len(xs)], linestyle="--", marker="x", label=f"paper: {name}")
    ax.set_xscale("log", base=2)
    ticks = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
    ax.set_xticks(ticks, [_klabel(int(t)) for t in ticks])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("RULER score (%)")
    ax.set_title("RULER vs context length")
    ax.legend(fontsize=7)
    _save(fig, path, label)


def training_plot(metrics: dict[str, list[dict[str, Any]]], path: Path, label: str) -> None:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    offset = 0
    for stage, rows in metrics.items():
        steps = [offset + r["step"] for r in rows]
        a.plot(steps, [r.get("reward") for r in rows], marker=".", label=stage)
        b.plot(steps, [r.get("completions/mean_length") for r in rows], marker=".", label=stage)
        offset = steps[-1] if steps else offset
    a.set(xlabel="step (stages concatenated)", ylabel="mean reward", title="Training reward")
    b.set(xlabel="step (stages concatenated)", ylabel="tokens", title="Mean response length")
    a.legend(fontsize=7)
    _save(fig, path, label)


def lengths_plot(mixtures: dict[str, list[dict[str, Any]]], path: Path, label: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(mixtures), figsize=(4 * len(mixtures), 3.2), squeeze=False)
    for ax, (stage, rows) in zip(axes[0], mixtures.items(), strict=True):
        by: dict[str, list[int]] = {}
        for r in rows:
            by.setdefault(r["source"], []).append(r["prompt_tokens"])
        ax.hist(list(by.values()), bins=30, stacked=True, label=list(by))
        ax.set(xlabel="prompt tokens", ylabel="examples", title=f"Mixture '{stage}' prompt lengths")
        ax.legend(fontsize=6)
    _save(fig, path, label)


# ---------------------------------------------------------------------------------------------------- assemble
def build_report(
    summaries: list[Path],
    paper_file: Path,
    out_dir: Path,
    config_hash: str,
    policy: str,
    date: str,
    train_metrics: list[Path] = (),
    mixtures: list[Path] = (),
    contamination: Path | None = None,
    ablations: dict[str, dict[str, str]] | None = None,
) -> dict[str, Path]:
    paper = yaml.safe_load(paper_file.read_text())
    by_model = load_summaries(summaries)
    order = sorted(by_model, key=lambda m: (m != "base", m))
    tables_dir, fig_dir = out_dir / "tables", out_dir / "figures"
    written: dict[str, Path] = {}

    ruler_cols = sorted({n for m in order for n in ruler_lengths(by_model[m])})
    t2_cols = ["lc_avg", *LB_TASKS, "short_avg", *SHORT]
    t3_cols = [f"narrativeqa@{b}" for b in BUCKETS] + [f"ruler@{n}" for n in ruler_cols if n >= 16384]
    t7_cols = [f"ruler@{n}" for n in ruler_cols] + ["ruler_avg"]
    sc_cols = [*LB_TASKS, "lc_avg"]
    specs = {
        "table2": (
            "Table 2: LongBench v1 QA (two-way substring EM) and short-context",
            t2_cols,
            {m: table2(by_model[m]) for m in order},
            paper["table2"],
        ),
        "table3": (
            "Table 3: NarrativeQA by input length and RULER beyond 16K",
            t3_cols,
            {m: table3(by_model[m], ruler_cols) for m in order},
            paper["table3"],
        ),
        "table7": (
            "Table 7: RULER by context length",
            t7_cols,
            {m: table7(by_model[m], ruler_cols) for m in order},
            paper["table7"],
        ),
        "scorers": (
            "Scorers on the same LongBench completions (LongBench qa_f1 / exact match / two-way EM)",
            sc_cols,
            {
                f"{m} [{name}]": table2(by_model[m], metric)
                for m in order
                for name, metric in (("qa_f1", "qa_f1"), ("EM", "exact_match"), ("sub-EM", "sub_em"))
            },
            paper["table5"],
        ),
    }
    titles = {"table4": "Table 4: KeyChain ablation (LongBench v1 QA)", "table5": "Table 5: verifier ablation"}
    for table, rows in sorted((ablations or {}).items()):
        ours = {f"{label} ({model})": table2(by_model.get(model, {})) for label, model in rows.items()}
        specs[table] = (titles[table], sc_cols, ours, paper[table])
    md = [
        "# LoongRL reproduction report\n",
        f"Policy model `{policy}`, config hash `{config_hash}`, generated {date}. Scores are percentages; "
        "`(cap x%)` is the share of completions that hit the generation cap. `–`: not evaluated in this config "
        "(a task missing from the data, or an average over an incomplete row).\n",
    ]
    for name, (title, cols, ours, ref) in specs.items():
        md.append(markdown_table(title, cols, ours, ref))
        p = tables_dir / f"{name}.csv"
        write_text(csv_table(cols, ours, ref), p)
        written[name] = p
    md.append(truncation_md(by_model, order))
    if contamination and contamination.exists():
        md.append(contamination_md(json.loads(contamination.read_text())))

    md.append("## Figures\n")
    label = f"{policy} · config {config_hash} · {date}"
    for m in order:
        if "niah.all" in by_model[m]:
            p = fig_dir / f"niah_{m}.png"
            niah_heatmap(m, by_model[m]["niah.all"], p, label)
            written[f"niah_{m}"] = p
    p = fig_dir / "ruler_vs_length.png"
    ruler_plot({m: ruler_lengths(by_model[m]) for m in order}, paper["table7"], p, label)
    written["ruler_vs_length"] = p
    if train_metrics:
        rows = {
            Path(t).parent.name: [json.loads(x) for x in Path(t).read_text().splitlines() if x] for t in train_metrics
        }
        p = fig_dir / "training_curves.png"
        training_plot(rows, p, label)
        written["training_curves"] = p
    if mixtures:
        p = fig_dir / "data_lengths.png"
        lengths_plot({Path(x).stem: read_parquet(x) for x in mixtures}, p, label)
        written["data_lengths"] = p
    md += [f"![{k}](figures/{v.name})\n" for k, v in written.items() if v.suffix == ".png"]
    p = out_dir / "report.md"
    write_text("\n".join(md), p)
    written["report"] = p
    return written


def truncation_md(by_model: dict[str, dict[str, Any]], order: list[str]) -> str:
    lines = [
        "### Truncation accounting\n",
        "| model | cell | rows | samples | score | cap-hit share | input truncated share | mean completion tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in order:
        for cell, s in sorted(by_model[m].items()):
            o = s["overall"]
            lines.append(
                f"| {m} | {cell} | {o['rows']} | {o['samples']} | {100 * o['score']:.1f} | {o['hit_cap_share']:.2f} "
                f"| {o['input_truncated_share']:.2f} | {o['completion_tokens_mean']:.0f} |"
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.report", description=__doc__)
    ap.add_argument("--summaries", type=Path, nargs="+", required=True)
    ap.add_argument("--paper", type=Path, required=True, help="paper_tables.yaml")
    ap.add_argument("--train-metrics", type=Path, nargs="*", default=[])
    ap.add_argument("--mixtures", type=Path, nargs="*", default=[])
    ap.add_argument("--contamination", type=Path, default=None)
    ap.add_argument("--ablations", default="{}", help="JSON: {table4|table5: {row label: eval model}}")
    ap.add_argument("--config-hash", default="unknown")
    ap.add_argument("--policy", default="unknown")
    ap.add_argument("--date", default=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    written = build_report(
        args.summaries,
        args.paper,
        args.out_dir,
        args.config_hash,
        args.policy,
        args.date,
        args.train_metrics,
        args.mixtures,
        args.contamination,
    )
    log.info("report: %s", {k: str(v) for k, v in written.items()})


if __name__ == "__main__":
    main()
