"""Run one profile as several replicates (seeds x held-out books) and pool their effect.

A laptop result is one draw until it replicates (issue 33: the single-seed +25 at L became -19 with another seed
and another held-out book). ``make effect`` therefore runs the same profile once per (seed, held-out book) and
reports the pooled paired gain (``loongrl.report.replicates``), each run listed beside it.

Each replicate is the unchanged DAG in a working directory of its own, ``<out>/seed<S>-<book>/``: its own
``results/``, ``logs/`` and ``.snakemake/`` (so runs never overwrite each other and each one resumes on its own),
and symlinks to the checkout's workflow, config and shipped data. Of ``resources/``, what no seed or held-out book
changes is shared through symlinks (models, wheels, downloads: ``SHARED_RESOURCES``), so a model is built once and
every replicate starts from the same weights; the resumable caches are the replicate's own (``resources/work``
holds a training stage's checkpoints and ``resources/cache`` the filter's chunks: shared, a second seed would resume
from the first seed's). The replicate's overlay, ``replicate.yaml``, sets ``seed`` and ``retrieval.heldout_books``
and is passed after the profile's own config files. Replicates run one after another here (a laptop's cores hold
one run); on a cluster, ``--only NAME`` runs one replicate per invocation, so they can go side by side.

    python -m loongrl.replicate --profile profiles/nano --seeds 42 7 1234 --heldout-books pg84.txt pg1342.txt
    python -m loongrl.replicate --profile profiles/nano ... --pool-only   # re-pool finished replicates

``--arms NAME=OVERLAY ...`` runs every replicate once per arm (``make table4-nano``: KeyChain over Book-RULER
questions against the same rows asked directly) and adds the first arm's trained model against each other arm's,
paired on the same held-out rows, to the pooled report.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from loongrl.cli import run, setup_logging
from loongrl.io import write_json, write_text
from loongrl.report.replicates import (
    diagnostics_md,
    keychain_patterns,
    patterns_md,
    pool_effects,
    pooled_csv,
    pooled_md,
    replicate_summaries,
    training_diagnostics,
)

log = logging.getLogger(__name__)

# What a replicate's working directory links from the checkout (read-only for the run), and the folders of
# resources/ it shares with the checkout and the other replicates (never resources/work or resources/cache).
LINKED = ("Snakefile", "config.yaml", "workflow", "data", "profiles", "presets", "envs")
SHARED_RESOURCES = ("models", "wheels", "raw", "books", "math", "eval", "released", "torch_extensions")


def replicate_plan(seeds: list[int], books: list[str], arms: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every (seed, held-out book) pair, books outer: each book is held out under every seed. With ``arms``
    (name -> config overlay: Table 4's KeyChain arm and its no-chain twin), every pair once per arm, in
    ``<arm>/seed<S>-<book>``: the arms differ in their overlay only, so their held-out rows are the same."""
    if len(set(seeds)) != len(seeds) or len(set(books)) != len(books):
        raise ValueError(f"replicates: seeds {seeds} and held-out books {books} must not repeat")
    pairs = [
        {"pair": f"seed{s}-{Path(b).stem}", "seed": s, "heldout_book": b} for b, s in itertools.product(books, seeds)
    ]
    if not arms:
        return [{"name": p["pair"], **p} for p in pairs]
    return [{"name": f"{a}/{p['pair']}", "arm": a, "overlay": f, **p} for a, f in arms.items() for p in pairs]


def parse_arms(items: list[str]) -> dict[str, str]:
    """``NAME=OVERLAY.yaml`` pairs, in order (the first arm is the one compared against the others)."""
    arms = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.isidentifier() or not path:
            raise ValueError(f"--arms {item!r}: expected NAME=OVERLAY.yaml")
        if name in arms:
            raise ValueError(f"--arms: arm {name!r} given twice")
        arms[name] = path
    if len(arms) == 1:
        raise ValueError("--arms: an arm needs another to be compared with")
    return arms


def profile_configfiles(profile: Path) -> list[str]:
    """The profile's own ``configfile`` list: a command-line ``--configfile`` replaces it, so the overlay is
    appended to it rather than given alone."""
    spec = yaml.safe_load((profile / "profile.yaml").read_text()) or {}
    files = spec.get("configfile") or ["config.yaml"]
    return [files] if isinstance(files, str) else list(files)


def prepare(root: Path, out: Path, rep: dict[str, Any]) -> Path:
    """The replicate's working directory: links to the checkout, the shared resources, its overlay."""
    d = out / rep["name"]
    (d / "resources").mkdir(parents=True, exist_ok=True)
    links = [(root / n, d / n) for n in LINKED if (root / n).exists()]
    for n in SHARED_RESOURCES:
        (root / "resources" / n).mkdir(parents=True, exist_ok=True)
        links.append((root / "resources" / n, d / "resources" / n))
    for src, link in links:
        if link.is_symlink() and link.resolve() == src.resolve():
            continue
        if link.exists() or link.is_symlink():
            raise FileExistsError(f"{link}: exists and is not a link to {src}")
        link.symlink_to(os.path.relpath(src, link.parent))
    overlay = {"seed": rep["seed"], "retrieval": {"heldout_books": [rep["heldout_book"]]}}
    write_text(yaml.safe_dump(overlay, sort_keys=True), d / "replicate.yaml")
    return d


def snakemake_command(
    profile: Path, configfiles: list[str], *, dry_run: bool = False, report: bool = False
) -> list[str]:
    """The replicate's snakemake line: the profile, its config files plus the overlay (targets never follow
    ``--configfile``, which would swallow them)."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(profile)]
    if dry_run:
        cmd.append("-n")
    if report:
        cmd += ["--report", "results/report.html"]
    return [*cmd, "--configfile", *configfiles, "replicate.yaml"]


def run_replicates(
    *,
    root: Path,
    profile: Path,
    plan: list[dict[str, Any]],
    out: Path,
    extra_configfiles: list[str],
    dry_run: bool = False,
) -> None:
    """Run every replicate of ``plan`` in turn (then its HTML report); stop at the first that fails."""
    # the overlays the caller names are relative to where it stands, not to the replicate's directory
    configfiles = [*profile_configfiles(root / profile), *(str(Path(f).resolve()) for f in extra_configfiles)]
    for rep in plan:
        d = prepare(root, out, rep)
        files = [*configfiles, str(Path(rep["overlay"]).resolve())] if "overlay" in rep else configfiles
        steps = [snakemake_command(profile, files, dry_run=dry_run)]
        if not dry_run:
            steps.append(snakemake_command(profile, files, report=True))
        for cmd in steps:
            log.info("replicate %s: %s", rep["name"], " ".join(cmd))
            done = subprocess.run(cmd, cwd=d, check=False)
            if done.returncode:
                raise RuntimeError(
                    f"replicate {rep['name']} failed (exit {done.returncode}) in {d}: see {d}/.snakemake/log/"
                )


def pool(out: Path, plan: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the finished replicates of ``plan`` into ``<out>/pooled.{md,csv,json}``; a missing one is an error."""
    runs = {}
    for rep in plan:
        summaries = replicate_summaries(out / rep["name"])
        if "base" not in summaries:
            raise FileNotFoundError(f"{out / rep['name']}/results/eval: no base model summaries (has it run?)")
        runs[rep["name"]] = summaries
    arms = list(dict.fromkeys(rep["arm"] for rep in plan if "arm" in rep))
    if arms:
        runs = arm_runs(runs, plan)
    result = pool_effects(runs)
    extra = ""
    if arms:
        # Table 4's comparison: the first arm's trained model against each other arm's, on the same rows
        first = f"{arms[0]}.{final_model(runs, arms[0])}"
        for other in arms[1:]:
            ref = f"{other}.{final_model(runs, other)}"
            versus = pool_effects({n: {"base": r[ref], first: r[first]} for n, r in runs.items()})
            result.setdefault("arms", {})[f"{arms[0]} vs {other}"] = versus
            title = f"{arms[0]} against {other} (their trained models)"
            extra += "\n" + pooled_md(versus, title=title, columns=(other, arms[0], "difference"))
    result["patterns"] = keychain_patterns(runs)
    if result["patterns"]:
        extra += "\n" + patterns_md(result["patterns"])
    result["training"] = {rep["name"]: training_diagnostics(out / rep["name"]) for rep in plan}
    write_text(pooled_md(result, plan=plan) + extra + "\n" + diagnostics_md(result["training"]), out / "pooled.md")
    write_text(pooled_csv(result), out / "pooled.csv")
    write_json({"plan": plan, **result}, out / "pooled.json")
    return result


def final_model(runs: dict[str, dict[str, Any]], arm: str) -> str:
    """The arm's last trained model (its last evaluated stage), as named in ``arm_runs``."""
    names = sorted({m.split(".", 1)[1] for r in runs.values() for m in r if m.startswith(f"{arm}.")})
    if not names:
        raise FileNotFoundError(f"arm {arm}: no trained model was evaluated")
    return names[-1]


def arm_runs(runs: dict[str, dict[str, Any]], plan: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-arm replicates merged per (seed, held-out book): one base (the first arm's; every arm evaluates the
    same base model on the same held-out rows) and each arm's trained models as ``<arm>.<stage>``."""
    merged: dict[str, dict[str, Any]] = {}
    first: dict[str, str] = {}
    for rep in plan:
        models = runs[rep["name"]]
        pair = merged.setdefault(rep["pair"], {"base": models["base"]})
        first.setdefault(rep["pair"], rep["name"])
        if first[rep["pair"]] != rep["name"]:
            same_base(pair["base"], models["base"], first[rep["pair"]], rep["name"])
        for model, cells in models.items():
            if model != "base":
                pair[f"{rep['arm']}.{model}"] = cells
    return merged


def same_base(ref: dict[str, Any], other: dict[str, Any], ref_name: str, other_name: str) -> None:
    """The arms' comparison is paired row by row, so every arm must have held out the same rows: each arm's base
    model, evaluated greedily on its own copy of the held-out cells, must score the same rows the same way (same
    config + seed gives the same bytes). A difference means the arms' rows (or the eval) diverged, and the pairing
    would be wrong, so it stops the pooling, naming the cell."""
    for cell in sorted(set(ref) | set(other)):
        if cell not in ref or cell not in other:
            raise ValueError(f"base cell {cell!r}: evaluated in only one of {ref_name}, {other_name}")
        a, b = ref[cell].get("row_scores") or {}, other[cell].get("row_scores") or {}
        if set(a) != set(b):
            raise ValueError(
                f"base cell {cell!r}: {ref_name} and {other_name} held out different rows "
                f"({len(set(a) ^ set(b))} row ids differ): the arms are not paired"
            )
        diff = sorted(k for k in a if a[k] != b[k])
        if diff:
            raise ValueError(
                f"base cell {cell!r}: the base model scored {len(diff)} of {len(a)} rows differently in "
                f"{ref_name} and {other_name} (first: {diff[0]!r}): the held-out eval is not reproducible"
            )


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", type=Path, required=True, help="the profile every replicate runs (e.g. profiles/nano)")
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--heldout-books", nargs="+", required=True, help="books to hold out, one per replicate row")
    ap.add_argument("--out", type=Path, default=Path("results/replicates"))
    ap.add_argument("--configfile", nargs="*", default=[], help="overlays after the profile's, before the seed's")
    ap.add_argument("--only", nargs="*", default=None, help="run only these replicates (names); pool all of them")
    ap.add_argument(
        "--arms", nargs="*", default=[], help="NAME=OVERLAY.yaml per arm (Table 4): every replicate once per arm"
    )
    ap.add_argument("--dry-run", action="store_true", help="snakemake -n in every replicate; no pooling")
    ap.add_argument("--pool-only", action="store_true", help="pool the finished replicates; run nothing")
    args = ap.parse_args(argv)

    root = Path.cwd()
    plan = replicate_plan(args.seeds, args.heldout_books, parse_arms(args.arms))
    todo = [r for r in plan if args.only is None or r["name"] in args.only]
    if args.only is not None and len(todo) != len(args.only):
        raise ValueError(f"--only {args.only}: not all in the plan {[r['name'] for r in plan]}")
    if not args.pool_only:
        run_replicates(
            root=root,
            profile=args.profile,
            plan=todo,
            out=args.out,
            extra_configfiles=args.configfile,
            dry_run=args.dry_run,
        )
    if not args.dry_run and (args.pool_only or args.only is None):
        result = pool(args.out, plan)
        print(pooled_md(result, plan=plan))


if __name__ == "__main__":
    run(main)
