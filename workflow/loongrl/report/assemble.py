"""The final report: every table and figure, and ``report.md`` tying them together (``python -m loongrl.report``).

Tables (markdown in ``report.md`` and one CSV each for ``snakemake --report``): Table 2, Table 3, Table 6, Table 7, the
scorer table, Tables 4 and 5 when ``eval.ablations`` defines them, truncation accounting and the contamination
check. Figures: see ``loongrl.report.figures``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from loongrl.answers import HEDGE_KINDS
from loongrl.cli import run, setup_logging
from loongrl.io import read_parquet, write_text
from loongrl.report.figures import effect_plot, lengths_plot, niah_heatmap, ruler_plot, training_plot
from loongrl.report.tables import (
    BUCKETS,
    LB_TASKS,
    SHORT,
    T6_COLUMNS,
    contamination_md,
    csv_table,
    effect_csv,
    effect_md,
    effect_rows,
    heldout_summaries,
    judge_label,
    load_summaries,
    markdown_table,
    ruler_lengths,
    table2,
    table3,
    table6,
    table7,
    truncation_md,
)
from loongrl.verifiers import HEDGE_METRIC
from loongrl.verifiers import SUSPECT_METRIC as SUSPECT

log = logging.getLogger(__name__)


def merged_niah(cells: dict[str, Any]) -> dict[str, Any] | None:
    """One NIAH grid from the per-length cells (``niah.L<n>``; an older single ``niah.all`` cell works too)."""
    niah = [s for cell, s in cells.items() if cell.startswith("niah.")]
    grid = {k: v for s in niah for k, v in s["by_length_depth"].items()}
    if not grid:
        return None
    metrics = {m for s in niah for m in (s.get("overall") or {}).get("metrics", {})}
    needle = "MInference needle, number in answer" if "number_in_answer" in metrics else "Kamradt needle, word recall"
    return {"by_length_depth": grid, "needle": needle}


def landing_rst(
    *,
    policy: str,
    config_hash: str,
    preset: str,
    date: str,
    by_model: dict[str, dict[str, Any]],
    effect: list[dict[str, Any]],
    train_metrics: dict[str, list[dict[str, Any]]],
    mixtures: dict[str, list[dict[str, Any]]],
    max_cells: int = 8,
) -> str:
    """The HTML report's landing text (``snakemake --report``): what this run did, read from its own outputs (the
    stages that trained and their steps, each mixture's sources, the models and benchmarks evaluated), and its
    headline, the final trained model against the base per cell with paired intervals. A static description
    would claim a KeyChain mixture and staged training for runs that did neither."""
    lines = [
        "This run",
        "========",
        "",
        f"LoongRL reproduction (arXiv 2510.19363). Policy ``{policy}``, config hash ``{config_hash}``, preset "
        f"``{preset}``, report generated {date}.",
        "",
    ]
    if train_metrics:
        steps = {s: max((r.get("step", 0) for r in rows), default=0) for s, rows in train_metrics.items()}
        stages = ", ".join(f"{s} ({n} steps)" for s, n in steps.items())
        lines.append(f"**Trained:** {stages}, GRPO.")
    else:
        lines.append("**Trained:** nothing (evaluation only).")
    lines.append("")
    for stage, rows in mixtures.items():
        counts = Counter(r["data_source"] for r in rows)
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines += [f"- mixture ``{stage}``: {len(rows)} rows ({parts or 'empty'})"]
    benchmarks = sorted({cell.split(".")[0] for cells in by_model.values() for cell in cells})
    lines += ["", f"**Evaluated:** {', '.join(by_model)} on {', '.join(benchmarks)}.", ""]
    final = next((m for m in reversed(list(by_model)) if any(r["model"] == m for r in effect)), None)
    if final is None:
        lines.append("**Headline:** no trained model was evaluated beside the base: no effect to report.")
        return "\n".join(lines) + "\n"
    rows = [r for r in effect if r["model"] == final]
    up = sum(r["gain_ci"][0] > 0 for r in rows)
    down = sum(r["gain_ci"][1] < 0 for r in rows)
    lines += [
        f"**Headline:** ``{final}`` against ``base`` on {len(rows)} cells: the gain's paired 95 % interval lies above "
        f"0 in {up}, below 0 in {down}, and spans 0 in {len(rows) - up - down}.",
        "",
    ]
    for r in rows[:max_cells]:
        lines.append(
            f"- {r['cell']} ({r['rows']} rows): {100 * r['base']:.1f} → {100 * r['score']:.1f}, gain "
            f"{100 * r['gain']:+.1f} [{100 * r['gain_ci'][0]:.1f}, {100 * r['gain_ci'][1]:.1f}]"
        )
    if len(rows) > max_cells:
        lines.append(f"- … {len(rows) - max_cells} more cells in the effect table below")
    return "\n".join(lines) + "\n"


def build_report(
    *,
    summaries: list[Path],
    paper_file: Path,
    out_dir: Path,
    config_hash: str,
    policy: str,
    date: str,
    preset: str = "none",
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
            "Table 2: LongBench v1 QA (the authors' rule: boxed two-way match over any gold, or direct exact match, "
            f"or an LLM judge; {judge_label(by_model)}) and short-context",
            t2_cols,
            {
                **{m: table2(by_model[m]) for m in order},
                # the same completions without the validation slice's rows (stage I's checkpoint was chosen on them)
                **{
                    f"{m} [held-out subset]": table2(h)
                    for m in order
                    if (h := heldout_summaries(by_model[m])) is not None
                },
            },
            paper["table2"],
        ),
        "table3": (
            "Table 3: NarrativeQA by input length and RULER beyond 16K",
            t3_cols,
            {m: table3(by_model[m], ruler_cols) for m in order},
            paper["table3"],
        ),
        "table6": (
            "Table 6: LongBench v2 (Avg@n; accuracy)",
            T6_COLUMNS,
            {m: table6(by_model[m]) for m in order},
            paper["table6"],
        ),
        "table7": (
            "Table 7: RULER by context length",
            t7_cols,
            {m: table7(by_model[m], ruler_cols) for m in order},
            paper["table7"],
        ),
        "scorers": (
            "Scorers on the same LongBench completions: the authors' rule (the headline) and its parts (boxed two-way "
            "match over any gold, direct exact match, the LLM judge), QwenLong-L1's max(two-way EM against the first "
            "gold, judge) and that EM alone, LongBench qa_f1, exact match, two-way EM against any gold, word-level EM; "
            "then the shares of completions that state no answer (scored 0) and of empty answers the authors' rule "
            f"scores 1 (inside every gold). {judge_label(by_model)}",
            sc_cols,
            {
                f"{m} [{name}]": table2(by_model[m], metric)
                for m in order
                for name, metric in (
                    ("authors' rule", "authors"),
                    ("authors: boxed any gold", "authors_boxed"),
                    ("authors: direct EM", "authors_direct"),
                    ("LLM judge", "judge"),
                    ("QwenLong-L1 max(sub-EM, judge)", "qwenlong_l1"),
                    ("sub-EM first gold", "sub_em"),
                    ("qa_f1", "qa_f1"),
                    ("EM", "exact_match"),
                    ("sub-EM any gold", "sub_em_any"),
                    ("word-EM", "word_em"),
                    ("share: no answer stated", "authors_no_answer"),
                    ("share: instruct reply states nothing (sub-EM 0)", "whole_reply"),
                    ("share: empty answer scored", "authors_empty"),
                )
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
        f"Policy model `{policy}`, config hash `{config_hash}`, preset `{preset}` (config.yaml's `preset` key: "
        "`paper-exact` is the paper's settings, presets/paper-exact.yaml), "
        f"generated {date}. Scores are percentages; "
        "`(cap x%)` is the share of completions that hit the generation cap. `–`: not evaluated in this config "
        "(a task missing from the data, or an average over an incomplete row).\n",
    ]
    # the headline: what training changed, per benchmark and length, with intervals
    effect = effect_rows(by_model, order)
    if effect:
        # then the curves: score against length with intervals, and the training reward
        md.append(effect_md(effect))
        md.append("![effect_vs_length](figures/effect_vs_length.png)\n")
        if train_metrics:
            md.append("![training_curves](figures/training_curves.png)\n")
    headline = {"effect_vs_length", "training_curves"} if effect else set()
    p = tables_dir / "effect.csv"
    write_text(effect_csv(effect), p)
    written["effect"] = p
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
    p = fig_dir / "effect_vs_length.png"
    effect_plot(effect, p, label)
    written["effect_vs_length"] = p
    for m in order:
        niah = merged_niah(by_model[m])
        if niah:
            p = fig_dir / f"niah_{m}.png"
            niah_heatmap(m, niah, p, label)
            written[f"niah_{m}"] = p
    p = fig_dir / "ruler_vs_length.png"
    ruler_plot({m: ruler_lengths(by_model[m]) for m in order}, paper["table7"], p, label)
    written["ruler_vs_length"] = p
    train_rows = {
        Path(t).parent.name: [json.loads(x) for x in Path(t).read_text().splitlines() if x] for t in train_metrics
    }
    mixture_rows = {Path(x).stem: read_parquet(x) for x in mixtures}
    p = out_dir / "landing.rst"
    write_text(
        landing_rst(
            policy=policy,
            config_hash=config_hash,
            preset=preset,
            date=date,
            by_model={m: by_model[m] for m in order},
            effect=effect,
            train_metrics=train_rows,
            mixtures=mixture_rows,
        ),
        p,
    )
    written["landing"] = p
    if train_metrics:
        rows = train_rows
        p = fig_dir / "training_curves.png"
        training_plot(rows, p, label)
        written["training_curves"] = p
        md.append(monitor_md(rows))
    if mixtures:
        p = fig_dir / "data_lengths.png"
        lengths_plot(mixture_rows, p, label)
        written["data_lengths"] = p
    md += [f"![{k}](figures/{v.name})\n" for k, v in written.items() if v.suffix == ".png" and k not in headline]
    p = out_dir / "report.md"
    write_text("\n".join(md), p)
    written["report"] = p
    return written


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
    ap.add_argument("--preset", default="none", help="the config's preset label (presets/*.yaml)")
    ap.add_argument("--date", default=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    written = build_report(
        summaries=args.summaries,
        paper_file=args.paper,
        out_dir=args.out_dir,
        config_hash=args.config_hash,
        policy=args.policy,
        date=args.date,
        preset=args.preset,
        train_metrics=args.train_metrics,
        mixtures=args.mixtures,
        contamination=args.contamination,
        ablations=json.loads(args.ablations),
    )
    log.info("report: %s", {k: str(v) for k, v in written.items()})


if __name__ == "__main__":
    run(main)


def monitor_md(metrics: dict[str, list[dict[str, Any]]]) -> str:
    """Per stage: mean reward and the hack monitor's suspect share at the first and last logged steps."""

    def share(row: dict[str, Any]) -> str:
        v = row.get(SUSPECT)
        return "–" if v is None else f"{100 * v:.0f}%"

    kinds = [k for k in HEDGE_KINDS if any(HEDGE_METRIC.format(k) in r for rows in metrics.values() for r in rows)]

    def hedges(row: dict[str, Any], kind: str) -> str:
        v = row.get(HEDGE_METRIC.format(kind))
        return "–" if v is None else str(int(v))

    lines = [
        "### Reward monitor\n",
        "Suspect = a rewarded QA answer that the strict rule (word-level match, hedges rejected) would reject, or a "
        "fragment of the gold. A rising share is the first sign of reward hacking. The hedge columns count the QA "
        "completions of a step that the hedge rules scored 0, by kind: a rising kind is the hedge the policy tries.\n",
        "| stage | steps | reward first → last | suspect first → last |"
        + "".join(f" {k} first → last |" for k in kinds),
        "|---|---|---|---|" + "---|" * len(kinds),
    ]
    for stage, rows in metrics.items():
        if rows:
            first, last = rows[0], rows[-1]
            lines.append(
                f"| {stage} | {len(rows)} | {first.get('reward', 0):.3f} → {last.get('reward', 0):.3f} "
                f"| {share(first)} → {share(last)} |"
                + "".join(f" {hedges(first, k)} → {hedges(last, k)} |" for k in kinds)
            )
    return "\n".join(lines) + "\n"
