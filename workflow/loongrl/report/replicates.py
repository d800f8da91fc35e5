"""The effect pooled over replicates: several seeds x several held-out books, never one draw.

One laptop run is one draw of everything random (the seed's rows, rollouts and sampling; the held-out book). Issue
33's second draw of ``make effect`` turned +25 into -19, so a headline must come from several runs. Each replicate
is a whole run of the same profile (``loongrl.replicate``); this module reads their eval summaries and pools them.

The pooled gain of a cell is the mean over replicates of each replicate's paired gain (base and trained model on the
same held-out rows), every replicate weighted equally, whatever its row count. Its interval is a two-stage
bootstrap: resample the replicates with replacement, then the rows inside each picked replicate, so it carries the
spread between seeds and books as well as the rows' sampling error (with few replicates the first stage dominates,
which is the point: a gain that only one seed shows stays inside its interval). The seed spread (each replicate's
gain, their standard deviation, min and max, and how many replicates had a gain above 0 and an interval above 0) is
reported beside it.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

from loongrl.report.tables import BOOTSTRAP_RESAMPLES, _ci, _pct, effect_rows, load_summaries


def replicate_summaries(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """One replicate's ``{model: {cell: summary}}`` from its own ``results/eval``."""
    return load_summaries(sorted((run_dir / "results" / "eval").glob("*/*.summary.json")))


def training_diagnostics(run_dir: Path) -> dict[str, Any]:
    """What a replicate's training did, from its own logs: per GRPO stage the policy's entropy at the first and last
    step (a collapse shows as entropy near 0), the mean share of zero-variance groups (TRL's
    ``frac_reward_zero_std``: groups that carry no gradient) and the mean reward over the first and last quarter of
    the steps; and the stage-II selection (kept rows, solved-count histogram)."""
    out: dict[str, Any] = {}
    for path in sorted((run_dir / "results" / "train").glob("*/metrics.jsonl")):
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if not rows:
            continue
        q = max(1, len(rows) // 4)
        zero = [r["frac_reward_zero_std"] for r in rows if r.get("frac_reward_zero_std") is not None]
        out[path.parent.name] = {
            "steps": len(rows),
            "entropy_first": rows[0].get("entropy"),
            "entropy_last": rows[-1].get("entropy"),
            "zero_variance": statistics.fmean(zero) if zero else None,
            "reward_first": statistics.fmean(r["reward"] for r in rows[:q]),
            "reward_last": statistics.fmean(r["reward"] for r in rows[-q:]),
        }
    sel = run_dir / "results" / "mixture" / "stage2.stats.json"
    if sel.exists():
        s = json.loads(sel.read_text())
        out["stage2_selection"] = {k: s.get(k) for k in ("keep", "examples", "kept", "solved_histogram")}
    return out


def diagnostics_md(diagnostics: dict[str, dict[str, Any]]) -> str:
    """One row per replicate and stage: entropy first to last, zero-variance share, reward first to last quarter."""

    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = [
        "### Training, per replicate\n",
        "Entropy of the policy at the first and last step; zero-variance: the mean share of GRPO groups whose rewards "
        "were all equal (no gradient); reward: mean over the first and the last quarter of the steps. Stage-II "
        "selection: rows kept of the stage-I mixture and the solved-count histogram (0/n first).\n",
        "| replicate | stage | steps | entropy first → last | zero-variance | reward first → last quarter |",
        "|---|---|---|---|---|---|",
    ]
    for name, diag in diagnostics.items():
        for stage, d in diag.items():
            if stage == "stage2_selection":
                continue
            lines.append(
                f"| {name} | {stage} | {d['steps']} | {num(d['entropy_first'], '.3f')} → "
                f"{num(d['entropy_last'], '.3f')} | {num(d['zero_variance'], '.0%')} | "
                f"{d['reward_first']:.2f} → {d['reward_last']:.2f} |"
            )
    sel = [(n, d["stage2_selection"]) for n, d in diagnostics.items() if "stage2_selection" in d]
    if sel:
        lines += ["", "| replicate | stage-II rule | kept / rows | solved histogram |", "|---|---|---|---|"]
        lines += [f"| {n} | {s['keep']} | {s['kept']} / {s['examples']} | {s['solved_histogram']} |" for n, s in sel]
    return "\n".join(lines) + "\n"


def two_stage_ci(
    groups: list[list[float]], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of group means: groups resampled with replacement, then rows within each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(g, dtype=float) for g in groups]
    means = np.empty(resamples)
    for b in range(resamples):
        picked = rng.integers(0, len(arrays), size=len(arrays))
        means[b] = np.mean([arrays[i][rng.integers(0, arrays[i].size, size=arrays[i].size)].mean() for i in picked])
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _paired(base: dict[str, float], model: dict[str, float]) -> tuple[list[float], list[float]]:
    ids = sorted(set(base) & set(model))
    return [base[i] for i in ids], [model[i] for i in ids]


def pool_effects(runs: dict[str, dict[str, dict[str, dict[str, Any]]]], *, base: str = "base") -> dict[str, Any]:
    """Pool base-vs-model gains over replicates.

    ``runs`` maps a replicate's name to its ``{model: {cell: summary}}``. A (model, cell) is pooled over the
    replicates that evaluated it with per-row scores; ``replicates`` lists each one's own paired effect row.
    """
    per_run = {name: effect_rows(by_model, sorted(by_model), base) for name, by_model in runs.items()}
    keys = sorted({(r["model"], r["cell"]) for rows in per_run.values() for r in rows})
    pooled = []
    for model, cell in keys:
        bases, models, diffs, gains = [], [], [], []
        for name in runs:
            if not any(r["model"] == model and r["cell"] == cell for r in per_run[name]):
                continue
            b, m = _paired(runs[name][base][cell]["row_scores"], runs[name][model][cell]["row_scores"])
            bases.append(b)
            models.append(m)
            diffs.append([y - x for x, y in zip(b, m, strict=True)])
            gains.append(statistics.fmean(diffs[-1]))
        rep_rows = [r for name in runs for r in per_run[name] if r["model"] == model and r["cell"] == cell]
        pooled.append(
            {
                "model": model,
                "cell": cell,
                "replicates": len(diffs),
                "rows": sum(len(d) for d in diffs),
                "base": statistics.fmean(statistics.fmean(b) for b in bases),
                "base_ci": two_stage_ci(bases),
                "score": statistics.fmean(statistics.fmean(m) for m in models),
                "score_ci": two_stage_ci(models),
                "gain": statistics.fmean(gains),
                "gain_ci": two_stage_ci(diffs),
                "gain_sd": statistics.stdev(gains) if len(gains) > 1 else 0.0,
                "gain_min": min(gains),
                "gain_max": max(gains),
                "positive": sum(g > 0 for g in gains),
                "above_zero": sum(r["gain_ci"][0] > 0 for r in rep_rows),
            }
        )
    return {
        "replicates": sorted(runs),
        "pooled": pooled,
        "per_replicate": {name: rows for name, rows in sorted(per_run.items())},
    }


def pooled_md(
    result: dict[str, Any],
    *,
    plan: list[dict[str, Any]] | None = None,
    title: str = "The effect",
    columns: tuple[str, str, str] = ("base", "model", "gain"),
) -> str:
    """The pooled table first, then every replicate's own row: the headline and the runs behind it. ``title`` and
    the pooled table's ``columns`` (reference, model, difference) name a comparison other than base vs trained
    (Table 4's arm against arm)."""
    n = len(result["replicates"])
    ref, model, diff = columns
    lines = [
        f"## {title}, pooled over {n} replicates\n",
        "Scores in %. A cell's pooled score is the mean of the replicates' means (each replicate weighted equally); "
        "its 95 % interval is a two-stage bootstrap (replicates resampled, then rows inside each; "
        f"{BOOTSTRAP_RESAMPLES} resamples). Spread: the replicates' gains (sd, min to max); positive: replicates "
        "with a gain above 0; above 0: replicates whose own paired interval is above 0.\n",
        f"| model | cell | replicates | rows | {ref} | {model} | {diff} | spread (sd; min to max) | positive "
        "| above 0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["pooled"]:
        lines.append(
            f"| {r['model']} | {r['cell']} | {r['replicates']} | {r['rows']} | {_pct(r['base'])} {_ci(r['base_ci'])} "
            f"| {_pct(r['score'])} {_ci(r['score_ci'])} | **{100 * r['gain']:+.1f} {_ci(r['gain_ci'])}** "
            f"| {_pct(r['gain_sd'])}; {100 * r['gain_min']:+.1f} to {100 * r['gain_max']:+.1f} "
            f"| {r['positive']}/{r['replicates']} | {r['above_zero']}/{r['replicates']} |"
        )
    if plan:
        lines += ["", "### The replicates\n", "| replicate | seed | held-out book |", "|---|---|---|"]
        lines += [f"| {p['name']} | {p['seed']} | {p['heldout_book']} |" for p in plan]
    lines += ["", "### Each replicate's paired gain\n", "| replicate | model | cell | rows | base | model | gain |"]
    lines.append("|---|---|---|---|---|---|---|")
    for name, rows in result["per_replicate"].items():
        for r in rows:
            lines.append(
                f"| {name} | {r['model']} | {r['cell']} | {r['rows']} | {_pct(r['base'])} | {_pct(r['score'])} "
                f"| {100 * r['gain']:+.1f} {_ci(r['gain_ci'])} |"
            )
    return "\n".join(lines) + "\n"


PATTERN = ("accuracy", "distractor", "names_chain")  # metrics.keychain_pattern's scores


def keychain_patterns(runs: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per (model, cell) scored by the ``keychain`` metric: the mean over replicates of each replicate's share of
    answers that are right, that followed a distractor chain, and of completions naming every key of the true chain
    (issue 33's reasoning pattern: base vs each arm). Cells without those scores are left out."""
    found: dict[tuple[str, str], list[dict[str, float]]] = {}
    for by_model in runs.values():
        for model, cells in by_model.items():
            for cell, summary in cells.items():
                metrics = (summary.get("overall") or {}).get("metrics", {})
                if all(k in metrics for k in PATTERN):
                    found.setdefault((model, cell), []).append({k: metrics[k] for k in PATTERN})
    return [
        {"model": model, "cell": cell, "replicates": len(v), **{k: statistics.fmean(x[k] for x in v) for k in PATTERN}}
        for (model, cell), v in sorted(found.items())
    ]


def patterns_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        "## How the KeyChain answers came about\n",
        "Shares in %, the mean over replicates: right (the true chain's number), followed a distractor chain (its "
        "question's number), and completions that write out every key of the true chain, start key included "
        "(the nano analogue of the paper's plan-retrieve-reason pattern; `metrics.keychain_pattern`).\n",
        "| model | cell | replicates | right | followed a distractor chain | names the true chain |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['cell']} | {r['replicates']} | {_pct(r['accuracy'])} | {_pct(r['distractor'])} "
        f"| {_pct(r['names_chain'])} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def pooled_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            *("model", "cell", "replicates", "rows", "base", "base_lo", "base_hi", "score", "lo", "hi", "gain"),
            *("gain_lo", "gain_hi", "gain_sd", "gain_min", "gain_max", "positive", "above_zero"),
        ]
    )
    for r in result["pooled"]:
        values = (r["base"], *r["base_ci"], r["score"], *r["score_ci"], r["gain"], *r["gain_ci"], r["gain_sd"])
        w.writerow(
            [r["model"], r["cell"], r["replicates"], r["rows"]]
            + [round(100 * v, 2) for v in (*values, r["gain_min"], r["gain_max"])]
            + [r["positive"], r["above_zero"]]
        )
    return buf.getvalue()


def pooled_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True) + "\n"
