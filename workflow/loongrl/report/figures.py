"""Report figures: the effect (base vs trained score against context length, with intervals), NIAH heatmap per
model, RULER vs context length (ours and the paper's), training reward and response length per step, and the
training mixtures' prompt-length histograms. Each PNG is labelled with the policy, the config hash and the date,
and written without a timestamp so reruns are byte-identical.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loongrl.io import atomic_path
from loongrl.report.tables import Cell
from loongrl.verifiers import SUSPECT_METRIC as SUSPECT


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


_LENGTH_CELL = re.compile(r"^(?P<bench>[\w-]+)\.L(?P<n>\d+)$")


def effect_plot(rows: list[dict[str, Any]], path: Path, label: str) -> None:
    """One panel per benchmark evaluated at several lengths (the held-out training task at L, 2L, 4L; NIAH; RULER):
    base and each trained model against context length, with the rows' 95 % bootstrap intervals as error bars, so
    the laptop analogue of the paper's Table 3 (does the gain hold beyond the training length?) is one picture.
    ``rows`` are ``tables.effect_rows``; with none (no base model evaluated) the figure says so."""
    plt = _plt()
    by: dict[str, dict[str, dict[int, tuple[float, tuple[float, float]]]]] = {}
    for r in rows:
        m = _LENGTH_CELL.match(r["cell"])
        if not m:
            continue
        lines = by.setdefault(m["bench"], {})
        lines.setdefault("base", {})[int(m["n"])] = (r["base"], r["base_ci"])
        lines.setdefault(r["model"], {})[int(m["n"])] = (r["score"], r["score_ci"])
    fig, axes = plt.subplots(1, max(1, len(by)), figsize=(4 * max(1, len(by)), 3.2), squeeze=False)
    if not by:
        axes[0][0].text(0.5, 0.5, "no base-vs-trained cells at several lengths", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (bench, lines) in zip(axes[0], sorted(by.items()), strict=False):
        for model, pts in lines.items():
            xs = sorted(pts)
            ys = [100 * pts[x][0] for x in xs]
            err = [[100 * (pts[x][0] - pts[x][1][0]) for x in xs], [100 * (pts[x][1][1] - pts[x][0]) for x in xs]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=model)
        ax.set_xscale("log", base=2)
        ticks = sorted({x for pts in lines.values() for x in pts})
        ax.set_xticks(ticks, [_klabel(t) for t in ticks])
        ax.set(xlabel="context length (tokens)", ylabel="score (%)", title=bench, ylim=(0, 100))
        ax.legend(fontsize=7)
    _save(fig, path, label)


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
    needle = summ.get("needle", "Kamradt needle, word recall")
    ax.set_title(f"Needle in a haystack: {model} ({needle.split(',')[0]})")
    fig.colorbar(im, ax=ax, label=f"score ({needle.split(', ')[1]}, %)")
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
    """Reward; the policy's entropy and the share of zero-variance groups (a collapse shows as entropy falling
    toward 0 while the share of groups with no gradient rises: issue 33's laptop run); the hack monitor's suspect
    share (a rising line is the first sign of reward hacking) and the mean response length per step, stages
    concatenated. Steps with no rewarded QA answer leave a gap."""
    plt = _plt()
    fig, (a, e, z, h, b) = plt.subplots(1, 5, figsize=(19, 3.2), sharex=True)
    offset = 0
    nan = float("nan")

    def series(rows: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
        return [nan if r.get(key) is None else scale * r[key] for r in rows]

    for stage, rows in metrics.items():
        steps = [offset + r["step"] for r in rows]
        a.plot(steps, [r.get("reward") for r in rows], marker=".", label=stage)
        e.plot(steps, series(rows, "entropy"), marker=".", label=stage)
        z.plot(steps, series(rows, "frac_reward_zero_std", 100), marker=".", label=stage)
        h.plot(steps, series(rows, SUSPECT, 100), marker=".", label=stage)
        b.plot(steps, [r.get("completions/mean_length") for r in rows], marker=".", label=stage)
        offset = steps[-1] if steps else offset
    a.set(xlabel="step (stages concatenated)", ylabel="mean reward", title="Training reward")
    e.set(xlabel="step (stages concatenated)", ylabel="nats per token", title="Policy entropy")
    z.set(xlabel="step (stages concatenated)", ylabel="% of groups", title="Zero-variance groups (no gradient)")
    z.set_ylim(0, 100)
    h.set(xlabel="step (stages concatenated)", ylabel="% of rewarded QA answers", title="Suspect rewarded answers")
    h.set_ylim(0, 100)
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
