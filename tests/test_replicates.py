"""The replication protocol (issue 33): a profile run per (seed, held-out book), pooled into one effect."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from loongrl.replicate import parse_arms, pool, profile_configfiles, replicate_plan, snakemake_command
from loongrl.report.replicates import (
    diagnostics_md,
    pool_effects,
    pooled_csv,
    pooled_md,
    training_diagnostics,
    two_stage_ci,
)

ROOT = Path(__file__).resolve().parents[1]


def summaries(base: list[float], trained: list[float], cell: str = "heldout.L384") -> dict:
    ids = [f"r{i:02d}" for i in range(len(base))]
    return {
        "base": {cell: {"row_scores": dict(zip(ids, base, strict=True))}},
        "stage2": {cell: {"row_scores": dict(zip(ids, trained, strict=True))}},
    }


def test_plan_crosses_every_seed_with_every_book():
    plan = replicate_plan([42, 7, 1234], ["pg84.txt", "pg1342.txt"])
    assert [p["name"] for p in plan] == [
        "seed42-pg84", "seed7-pg84", "seed1234-pg84", "seed42-pg1342", "seed7-pg1342", "seed1234-pg1342",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="must not repeat"):
        replicate_plan([1, 1], ["pg84.txt"])


def test_pooled_gain_weighs_replicates_equally_and_carries_their_spread():
    # replicate a: +0.5 on 4 rows; replicate b: -0.25 on 8 rows. Equal weights: +0.125 (row weights would give 0).
    runs = {
        "a": summaries([0, 0, 1, 1], [1, 1, 1, 1]),
        "b": summaries([1] * 8, [1, 1, 1, 1, 1, 1, 0, 0]),
    }
    res = pool_effects(runs)
    (row,) = res["pooled"]
    assert row["model"] == "stage2" and row["cell"] == "heldout.L384"
    assert row["replicates"] == 2 and row["rows"] == 12
    assert row["gain"] == pytest.approx(0.125)
    assert row["base"] == pytest.approx(0.75) and row["score"] == pytest.approx(0.875)
    assert row["gain_min"] == pytest.approx(-0.25) and row["gain_max"] == pytest.approx(0.5)
    assert row["gain_sd"] == pytest.approx(statistics.stdev([0.5, -0.25]))
    assert row["positive"] == 1 and row["above_zero"] == 0
    lo, hi = row["gain_ci"]
    assert lo < 0 < hi  # one replicate up, one down: the pooled interval reaches 0
    assert [r["gain"] for r in res["per_replicate"]["a"]] == [0.5]
    md = pooled_md(res, plan=[{"name": "a", "seed": 1, "heldout_book": "x.txt"}])
    assert "| stage2 | heldout.L384 | 2 | 12 |" in md and "**+12.5" in md and "| a | 1 | x.txt |" in md
    assert pooled_csv(res).splitlines()[1].startswith("stage2,heldout.L384,2,12,75.0,")


def test_two_stage_interval_widens_with_the_spread_between_replicates():
    same = [[0.0, 1.0] * 8, [0.0, 1.0] * 8, [0.0, 1.0] * 8]
    apart = [[0.0] * 16, [1.0] * 16, [0.0, 1.0] * 8]
    w_same = two_stage_ci(same)[1] - two_stage_ci(same)[0]
    lo, hi = two_stage_ci(apart)
    assert hi - lo > w_same  # same pooled mean (0.5), but the replicates disagree
    assert lo <= 0.5 <= hi
    assert two_stage_ci(apart) == (lo, hi)  # seeded


def test_a_cell_only_some_replicates_ran_is_pooled_over_those():
    runs = {"a": summaries([0, 1], [1, 1]), "b": summaries([0, 1], [1, 1])}
    runs["b"]["base"]["niah.L1024"] = {"row_scores": {"x": 1.0}}
    runs["b"]["stage2"]["niah.L1024"] = {"row_scores": {"x": 1.0}}
    cells = {r["cell"]: r["replicates"] for r in pool_effects(runs)["pooled"]}
    assert cells == {"heldout.L384": 2, "niah.L1024": 1}


def write_run(run_dir: Path, by_model: dict) -> None:
    for model, cells in by_model.items():
        for cell, summary in cells.items():
            p = run_dir / "results" / "eval" / model / f"{cell}.summary.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(summary))


def test_pool_reads_each_replicate_and_refuses_a_missing_one(tmp_path):
    plan = replicate_plan([1, 2], ["pg84.txt"])
    write_run(tmp_path / "seed1-pg84", summaries([0, 0], [1, 1]))
    with pytest.raises(FileNotFoundError, match="seed2-pg84/results/eval: no base model"):
        pool(tmp_path, plan)
    write_run(tmp_path / "seed2-pg84", summaries([0, 1], [1, 1]))
    res = pool(tmp_path, plan)
    assert res["pooled"][0]["gain"] == pytest.approx(0.75)
    assert json.loads((tmp_path / "pooled.json").read_text())["plan"] == plan
    assert "seed2-pg84" in (tmp_path / "pooled.md").read_text()


def test_the_overlay_follows_the_profile_configfiles_and_no_target_follows_it():
    files = profile_configfiles(ROOT / "profiles/nano")
    assert files == ["config.yaml", "profiles/local/config.tiny.yaml", "profiles/nano/config.nano.yaml"]
    cmd = snakemake_command(Path("profiles/nano"), files, report=True)
    assert cmd[-5:] == ["--configfile", *files, "replicate.yaml"]
    assert cmd.index("--report") < cmd.index("--configfile")


def test_each_replicate_is_the_dag_in_its_own_directory_with_its_seed_and_book(tmp_path):
    """A dry run of profiles/nano per replicate, with make effect's vLLM overlay given the way the Makefile gives
    it (relative to the checkout): the DAG parses in the replicate's directory (links to the checkout, shared
    models), the config it resolved holds the replicate's seed and held-out book, and the overlay reached it."""
    out = tmp_path / "reps"
    args = ["--profile", "profiles/nano", "--seeds", "5", "--heldout-books", "pg84.txt", "pg1342.txt"]
    args += ["--out", str(out), "--dry-run"]
    # make table4-nano's arms: one dry run per arm, each with its own book (two DAG parses, as before the arms)
    args += ["--configfile", "profiles/nano/config.vllm.yaml", "profiles/nano/table4.yaml", "--arms"]
    args += ["keychain=profiles/nano/table4-keychain.yaml", "direct=profiles/nano/table4-direct.yaml"]
    first = ["--only", "keychain/seed5-pg84", "direct/seed5-pg1342"]
    done = subprocess.run(
        [sys.executable, "-m", "loongrl.replicate", *args, *first], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name, book, arm in (
        ("keychain/seed5-pg84", "pg84.txt", "keychain_books"),
        ("direct/seed5-pg1342", "pg1342.txt", "direct_books"),
    ):
        d = out / name
        assert (d / "resources/models").resolve() == (ROOT / "resources/models").resolve()
        assert (d / "workflow").resolve() == (ROOT / "workflow").resolve()
        # checkpoints and caches are the replicate's own: a shared resources/work would resume another seed
        assert not (d / "resources").is_symlink() and not (d / "resources/work").exists()
        assert not (d / "results").is_symlink()
        (resolved,) = (d / ".snakemake/loongrl").glob("config-*.json")
        config = json.loads(resolved.read_text())
        assert config["seed"] == 5 and config["retrieval"]["heldout_books"] == [book]
        assert config["eval"]["backend"] == "vllm" and config["train"]["stage2_backend"] == "vllm"
        assert config["fill"]["build"] == "mixture"
        counts = config["mixture"]["counts"]
        assert (
            counts[arm] == 64
            and counts["retrieval_multikey"] == 0
            and sum(counts[a] for a in ("keychain_books", "direct_books")) == 64
        )
        assert config["eval"]["benchmarks"][0] == "heldout_keychain"
        assert config["keychain"]["books"]["answer_prefix"] is True
    # a second call finds its links in place (a replicate resumes in its directory)
    again = subprocess.run(
        [sys.executable, "-m", "loongrl.replicate", *args, "--only", "keychain/seed5-pg84"],
        cwd=ROOT,
        capture_output=True,
    )
    assert again.returncode == 0, again.stderr[-3000:]


def test_training_diagnostics_show_a_collapse(tmp_path):
    """Entropy first to last, the zero-variance share and the stage-II histogram, read from a replicate's logs:
    issue 33's collapsed run (entropy 0.25 -> 0.007, most groups all-equal, stage II kept only 0/n rows)."""
    metrics = tmp_path / "results/train/stage1/metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    steps = [
        {"step": i + 1, "entropy": e, "frac_reward_zero_std": z, "reward": r}
        for i, (e, z, r) in enumerate([(0.25, 0.0, 0.5), (0.1, 1.0, 1.0), (0.02, 1.0, 1.0), (0.007, 1.0, 1.0)])
    ]
    metrics.write_text("".join(json.dumps(x) + "\n" for x in steps))
    stats = tmp_path / "results/mixture/stage2.stats.json"
    stats.parent.mkdir(parents=True)
    selection = {"keep": "unmastered", "examples": 64, "kept": 24, "solved_histogram": [24, 0, 0, 0, 40]}
    stats.write_text(json.dumps(selection))
    d = training_diagnostics(tmp_path)
    assert d["stage1"] == {
        "steps": 4, "entropy_first": 0.25, "entropy_last": 0.007, "zero_variance": 0.75,
        "reward_first": 0.5, "reward_last": 1.0,
    }  # fmt: skip
    md = diagnostics_md({"seed7-pg84": d})
    assert "| seed7-pg84 | stage1 | 4 | 0.250 → 0.007 | 75% | 0.50 → 1.00 |" in md
    assert "| seed7-pg84 | unmastered | 24 / 64 | [24, 0, 0, 0, 40] |" in md


def test_arms_pool_against_each_other_on_the_same_rows(tmp_path):
    """Table 4 (nano): each (seed, book) once per arm; the pooled report has each arm's trained model against the
    base and the first arm against the second, paired on the same held-out rows."""
    arms = parse_arms(["keychain=a.yaml", "direct=b.yaml"])
    plan = replicate_plan([1, 2], ["pg84.txt"], arms)
    assert [r["name"] for r in plan] == [
        "keychain/seed1-pg84",
        "keychain/seed2-pg84",
        "direct/seed1-pg84",
        "direct/seed2-pg84",
    ]
    base = [0, 0, 1, 0]

    def with_pattern(by_model: dict, names_chain: dict[str, float]) -> dict:
        """The keychain metric's shares in each model's cell summary (evaluate.summarize writes them)."""
        for model, cells in by_model.items():
            for cell in cells.values():
                acc = statistics.fmean(cell["row_scores"].values())
                metrics = {"accuracy": acc, "distractor": 1 - acc, "names_chain": names_chain[model]}
                cell["overall"] = {"metrics": metrics}
        return by_model

    for seed in (1, 2):
        kc = summaries(base, [1, 1, 1, 0])
        write_run(tmp_path / f"keychain/seed{seed}-pg84", with_pattern(kc, {"base": 0.0, "stage2": seed / 4}))
        write_run(tmp_path / f"direct/seed{seed}-pg84", summaries(base, [1, 0, 1, 0]))  # older summaries: none
    res = pool(tmp_path, plan)
    gains = {r["model"]: r["gain"] for r in res["pooled"]}
    assert gains == {"direct.stage2": pytest.approx(0.25), "keychain.stage2": pytest.approx(0.5)}
    (versus,) = res["arms"].values()
    assert versus["pooled"][0]["gain"] == pytest.approx(0.25) and versus["pooled"][0]["replicates"] == 2
    md = (tmp_path / "pooled.md").read_text()
    assert "## keychain against direct (their trained models), pooled over 2 replicates" in md
    # the reasoning pattern: the base (the first arm's, shared) and the KeyChain arm's model; the direct arm's
    # summaries carry no pattern scores and are left out
    shares = {r["model"]: (r["replicates"], r["accuracy"], r["names_chain"]) for r in res["patterns"]}
    assert shares == {"base": (2, 0.25, 0.0), "keychain.stage2": (2, 0.75, pytest.approx(0.375))}
    assert "| keychain.stage2 | heldout.L384 | 2 | 75.0 | 25.0 | 37.5 |" in md
    for bad in (["keychain=a.yaml"], ["a=x.yaml", "a=y.yaml"], ["no-equals"]):
        with pytest.raises(ValueError, match="--arms"):
            parse_arms(bad)


@pytest.mark.parametrize(
    ("direct_base", "ids", "message"),
    [
        ([0, 1, 1, 0], None, "scored 1 of 4 rows differently"),  # the same rows, one scored otherwise
        ([0, 0, 1, 0], ["r00", "r01", "r02", "x03"], "held out different rows"),  # another row held out
    ],
)
def test_arms_whose_base_differs_are_not_pooled(tmp_path, direct_base, ids, message):
    """Arms are paired row by row, so each arm's own base eval must be the first arm's, row for row: a different
    held-out row or a base score that did not reproduce stops the pooling, naming the cell and both replicates."""
    plan = replicate_plan([1], ["pg84.txt"], parse_arms(["keychain=a.yaml", "direct=b.yaml"]))
    write_run(tmp_path / "keychain/seed1-pg84", summaries([0, 0, 1, 0], [1, 1, 1, 0]))
    direct = summaries(direct_base, [1, 0, 1, 0])
    if ids:
        for cells in direct.values():
            cells["heldout.L384"]["row_scores"] = dict(
                zip(ids, cells["heldout.L384"]["row_scores"].values(), strict=True)
            )
    write_run(tmp_path / "direct/seed1-pg84", direct)
    with pytest.raises(ValueError, match=message) as err:
        pool(tmp_path, plan)
    assert "'heldout.L384'" in str(err.value) and "keychain/seed1-pg84" in str(err.value)
    assert "direct/seed1-pg84" in str(err.value) and not (tmp_path / "pooled.md").exists()
