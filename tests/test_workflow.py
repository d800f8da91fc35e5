"""The Snakemake DAG: lint, dry runs of both profiles, and the local end-to-end run."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, copy_project, snakemake


def test_lint_clean():
    out = snakemake("--lint")
    assert "Congratulations" in out.stdout + out.stderr


TINY = ["config.yaml", "profiles/local/config.tiny.yaml"]


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    lines = text.split("Job stats:", 1)[1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def _accelerate_port_with_29500_taken(launch_args: list[str]) -> int | None:
    """The rendezvous port accelerate's own launch code gives a single-node train_stage line while another job holds
    its default port 29500; None when it falls back to its port-in-use guess (standalone mode).

    Our line asks --main_process_port 0, which accelerate turns into a free port from the OS
    (accelerate/utils/launch.py:407-408); with the default 29500 it only notices a port already taken at the moment
    it checks (:474-485), so two stages starting together on one node both pick 29500.
    """
    import socket
    import warnings

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args([*launch_args, "-m", "loongrl.train.grpo"])
    args.config_file = str(ROOT / args.config_file)
    args, defaults, _ = _validate_launch_command(args)
    # what launch_command sets before deepspeed_launcher (accelerate/commands/launch.py:1421-1424)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config) if defaults else ""
    with socket.socket() as held, warnings.catch_warnings():
        warnings.simplefilter("error")  # the port-in-use fallback warns
        held.bind(("127.0.0.1", 29500))
        held.listen()
        try:
            cmd, _ = prepare_deepspeed_cmd_env(args)
        except UserWarning:
            return None
    return int(args.master_port if hasattr(args, "master_port") else cmd[cmd.index("--master_port") + 1])


def test_every_download_names_its_pin_and_strict_refuses_unpinned(tmp_path):
    """Every download job of the paper DAG (data, math, released data, books, every eval file) passes the config
    key that pins it, which exists in the config, and `--config strict_downloads=True` makes each one strict."""
    import yaml

    work = copy_project(tmp_path)
    out = snakemake("-n", "-p", "--profile", "profiles/slurm", "all", "--config", "strict_downloads=True", cwd=work)
    cmds = [c for c in re.findall(r"python -m loongrl\.(?:download|books download) [^\n]+", out.stdout + out.stderr)]
    assert len(cmds) >= 10, cmds  # 3 raw QA, 2 math, 2 book sets, LongBench v1/v2, 3 short sets, RULER QA
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for cmd in cmds:
        key = re.search(r"--pin-key (\S+)", cmd).group(1)
        assert "--strict" in cmd, cmd
        node = cfg
        for part in key.split(".")[:-1]:
            node = node[part]
        # the key a user sets exists where the message points (or is an entry of a map of pins)
        assert key.split(".")[-1] in node or key.split(".")[-2].endswith("sha256"), key


def test_slurm_profile_dry_run_paper_scale(tmp_path):
    work = copy_project(tmp_path)
    out = snakemake("-n", "--profile", "profiles/slurm", "all", cwd=work)
    text = out.stdout + out.stderr
    counts = job_counts(text)
    assert counts["download_raw_qa"] == 3 and counts["split"] == 3
    # the sized filter's round 1 (budget auto): ceil(5000 / keep rate x 1.05 / 1024) chunk jobs per dataset, 19 + 12
    # + 22, each asking for its tensor-parallel GPUs, one round record each; nothing reaches a GPU before
    # check_inputs has passed
    assert counts["filter_source"] == 53 and counts["filter_round"] == 3 and counts["gather_filter"] == 3
    assert counts["check_inputs"] == 1
    assert "--chunk 52 --chunk-size 1024" not in text and "--chunk 21 --chunk-size 1024" in text
    jobs = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", text, re.MULTILINE)
    filter_jobs = [body for rule, body in jobs if rule == "filter_source"]
    assert len(filter_jobs) == 53 and all(re.search(r"\bgpu=4\b", b.replace(" ", "")) for b in filter_jobs)
    chunks = [re.search(r"wildcards: dataset=(\w+), shard=(\d+)", b).groups() for b in filter_jobs]
    assert {d: max(int(c) for ds, c in chunks if ds == d) + 1 for d, _ in chunks} == {
        "hotpotqa": 19,
        "musique": 12,
        "2wikimqa": 22,
    }
    order = [rule for rule, _ in jobs]
    assert order.index("check_inputs") < min(order.index(r) for r in ("filter_source", "train_stage", "evaluate"))
    launches = re.findall(r"Shell command: accelerate launch (.+?) -m loongrl\.train\.grpo ", text)
    assert len(launches) == 3 and _accelerate_port_with_29500_taken(launches[0].split()) not in (None, 29500)
    # real sources by default: math and books come from download rules, not from data/samples
    assert counts["download_math"] == 2 and counts["download_books"] == 1 and counts["download_eval_books"] == 1
    assert "data/samples" not in "".join(body for rule, body in jobs if rule in ("math_data", "build_retrieval"))
    assert counts["fill_context"] == 3 * 6 * 2  # datasets x lengths (4K..128K) x pools
    assert counts["insert_keychain"] == 3 * 6
    assert counts["download_model"] == 2  # policy (7B) and filter (32B)
    assert counts["build_mixture"] == 2 and counts["preflight"] == 1
    assert counts["train_stage"] == 3 and counts["stage2_rollouts"] == 8 and counts["select_stage2"] == 1
    stage2_jobs = [b for rule, b in jobs if rule == "stage2_rollouts"]  # one GPU each (train.stage2_gpus)
    assert len(stage2_jobs) == 8 and all(re.search(r"\bgpu=1\b", b.replace(" ", "")) for b in stage2_jobs)
    # the eval matrix: 4 models (base + 3 stages) x (LongBench, NIAH x 8 lengths, LongBench v2 x 3 length buckets,
    # RULER x 6 lengths, MMLU, MATH-500, IFEval)
    assert counts["evaluate"] == 4 * (1 + 8 + 3 + 6 + 3)
    # task files per cell and model kind: the base model (Qwen2.5-Instruct) runs as the paper ran it, the stages as
    # reasoning models (eval.kinds)
    assert counts["eval_tasks"] == 2 * (1 + 8 + 3 + 6 + 3) and counts["eval_validation"] == 1
    assert "results/eval/tasks/ruler.L131072.instruct.parquet" in text
    assert "results/eval/tasks/ruler.L131072.reasoning.parquet" in text
    assert "--kind instruct" in text and "--kind reasoning" in text
    for model in ("base", "warmup", "stage1", "stage2"):
        for bucket in ("short", "medium", "long"):
            assert f"results/eval/{model}/longbench_v2.{bucket}.summary.json" in text
    assert counts["download_longbench"] == 1 and counts["download_short_eval"] == 3
    assert counts["download_longbench_v2"] == 1
    assert counts["download_ruler_qa"] == 2 and counts["contamination"] == 1 and counts["report"] == 1
    assert "--eval-data results/eval/validation.parquet" in text  # stage I keeps its best validation checkpoint
    assert "gpu=4" in text.replace(" ", "")  # the 32B filter asks for its tensor-parallel GPUs
    assert "slurm_partition=gpu" in text.replace(" ", "")


def test_local_profile_dry_run(tmp_path):
    work = copy_project(tmp_path)
    counts = job_counts(snakemake("-n", "--profile", "profiles/local", cwd=work).stdout)
    assert counts["build_local_model"] == 1 and "download_model" not in counts
    assert counts["fill_context"] == 3 * 2 * 2 and counts["filter_source"] == 3 * 2 and counts["gather_filter"] == 3
    assert counts["evaluate"] == 2 * (1 + 2 + 2 + 2 + 3) and "download_longbench" not in counts
    # a matrix without NIAH (eval.benchmarks, as make effect's recipe runs): the report promises no NIAH heatmap
    # (it declared one per model and failed after a 40-minute run, its other outputs removed)
    (work / "held.yaml").write_text("eval: {benchmarks: [heldout], heldout: {lengths: [384]}}\n")
    tiny = ["config.yaml", "profiles/local/config.tiny.yaml", "held.yaml"]
    subset = snakemake("-n", "-p", "--profile", "profiles/local", "--configfile", *tiny, cwd=work).stdout
    assert "results/report/figures/niah_" not in subset and "results/report/tables/effect.csv" in subset


DATA_DIRS = ("raw_qa", "filter", "split", "fill", "keychain", "retrieval", "math")


def _hashes(root: Path) -> dict[str, str]:
    """Hashes of the data half's outputs (training outputs carry run ids and timings)."""
    files = [p for d in DATA_DIRS for p in (root / "results" / d).rglob("*") if p.is_file()]
    files += [p for p in (root / "results/mixture").glob("*") if not p.name.startswith("stage2")]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


# The tiny DAG (conftest.tiny_dag) runs once; each test below asserts one part of it. The determinism and ablation
# tests rerun only the jobs they compare, after the others have read the first run's outputs.


@pytest.mark.slow
def test_tiny_dag_mixtures_and_filter(tiny_dag):
    results = tiny_dag / "results"
    for stage in ("warmup", "stage1"):
        t = pq.read_table(results / f"mixture/{stage}.parquet")
        assert t.num_rows > 0 and "prompt" in t.column_names
        assert (results / f"mixture/{stage}.card.md").read_text().startswith("# Data card")
    stage1 = pq.read_table(results / "mixture/stage1.parquet").to_pylist()
    assert {r["source"] for r in stage1} == {
        "keychain",
        "plain_qa",
        "retrieval_multikey",
        "retrieval_multivalue",
        "dapo_math",
        "math_choice",
    }
    warm = pq.read_table(results / "mixture/warmup.parquet").to_pylist()
    assert "keychain" not in {r["source"] for r in warm}
    passes = list((results / "filter").glob("*.passes.parquet"))
    assert passes
    for p in passes:
        t = pq.read_table(p).to_pylist()
        assert t and all(r["n"] == 8 and len(r["predictions"]) == 8 for r in t)


@pytest.mark.slow
def test_tiny_dag_trains_three_stages_and_selects_stage2(tiny_dag):
    """warm-up -> stage I -> stage-II selection -> stage II, each a loadable HF model with the hack monitor logged."""
    results = tiny_dag / "results"
    for stage in ("warmup", "stage1", "stage2"):
        summary = json.loads((results / f"train/{stage}/summary.json").read_text())
        assert summary["steps"] == 2 and summary["mlflow_run_id"]
        rows = [json.loads(x) for x in (results / f"train/{stage}/metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
        assert all("reward/suspect_frac" in r and "reward/qa_rewarded" in r for r in rows)  # the hack monitor
        assert (results / f"train/{stage}/model/config.json").exists()
    stage1 = pq.read_table(results / "mixture/stage1.parquet").to_pylist()
    sel = json.loads((results / "mixture/stage2.stats.json").read_text())
    assert sel["examples"] == len(stage1) and sel["kept"] == pq.read_table(results / "mixture/stage2.parquet").num_rows
    summary = json.loads((results / "train/stage1/summary.json").read_text())
    assert summary["best_checkpoint"] and set(summary["validation_rewards"]) == {"1", "2"}


@pytest.mark.slow
def test_tiny_dag_mlflow_runs(tiny_dag):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tiny_dag / 'results/mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["loongrl"], output_format="list")
    assert sorted(r.info.run_name for r in runs) == ["stage1", "stage2", "warmup"]
    assert all(len(r.data.tags["config_hash"]) == 12 for r in runs)
    client = mlflow.tracking.MlflowClient()
    assert all({"reward/suspect_frac", "reward/qa_rewarded"} <= set(r.data.metrics) for r in runs)
    for r in runs:  # data card (or stage-II stats) and the resolved config travel with every run
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert any(n.endswith((".card.json", ".stats.json")) for n in names) and any(
            n.startswith("config-") for n in names
        ), names


@pytest.mark.slow
def test_tiny_dag_eval_matrix_and_report(tiny_dag):
    """Every cell summarised for base and trained; every table and figure of the report written and non-empty."""
    results = tiny_dag / "results"
    for model in ("base", "stage2"):
        for cell in (
            "longbench.all",
            "longbench_v2.short",
            "longbench_v2.medium",
            "niah.L1024",
            "niah.L2048",
            "ruler.L1024",
            "ruler.L2048",
            "mmlu.all",
            "math500.all",
            "ifeval.all",
        ):
            summ = json.loads((results / f"eval/{model}/{cell}.summary.json").read_text())
            assert summ["overall"]["samples"] > 0 and 0.0 <= summ["overall"]["hit_cap_share"] <= 1.0
    rep = results / "report"
    md = (rep / "report.md").read_text()
    for title in (
        "Table 2",
        "Table 3",
        "Table 6",
        "| paper: LoongRL-7B | 36.2 | 41.1 |",
        "Table 7",
        "Scorers",
        "word-EM",
        "or an LLM judge; no judge: lower bound) and short-context",  # the tiny profile runs no judge
        "[LLM judge]** | – |",  # its row stays, empty, never dropped
        "Truncation accounting",
        "Contamination check",
        "Reward monitor",
    ):
        assert title in md, title
    for name in ("table2", "table3", "table6", "table7", "scorers"):
        assert (rep / f"tables/{name}.csv").stat().st_size > 100
    for fig in ("effect_vs_length", "niah_base", "niah_stage2", "ruler_vs_length", "training_curves", "data_lengths"):
        assert (rep / f"figures/{fig}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_tiny_dag_eval_haystacks_are_not_training_books(tiny_dag):
    """No sentence of a NIAH or RULER prompt, and no needle value, occurs in a book the training data was cut
    from (the tiny profile's retrieval books less retrieval.heldout_books): the model is not tested on its
    training books (issue 31). RULER's QA tasks read SQuAD / HotpotQA paragraphs and CWE / FWE answer with common
    words; only the needle tasks' values are checked."""
    import yaml
    from loongrl.books import read_book

    cfg = yaml.safe_load((tiny_dag / "profiles/local/config.tiny.yaml").read_text())["retrieval"]
    books = sorted((tiny_dag / "data/samples/gutenberg").glob("*.txt"))
    training = [b for b in books if b.name not in cfg["heldout_books"]]
    assert len(training) == 2 and len(books) == 3
    text = " ".join(" ".join(read_book(b).split()) for b in training)  # as the builders decode them (cp1252 too)
    tasks = sorted((tiny_dag / "results/eval/tasks").glob("niah.*.parquet")) + sorted(
        (tiny_dag / "results/eval/tasks").glob("ruler.*.parquet")
    )
    assert tasks
    checked = 0
    for path in tasks:
        for row in pq.read_table(path).to_pylist():
            user = next(m["content"] for m in row["prompt"] if m["role"] == "user")
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(user.split())):
                if len(sentence.split()) >= 10 and not row["task"].startswith("qa_"):
                    checked += 1
                    assert sentence not in text, (path.name, row["id"], sentence)
            if row["task"].startswith("niah") or row["task"] == "vt":
                for value in row["answers"]:
                    assert value not in text, (path.name, row["id"], value)
    assert checked > 100


@pytest.mark.slow
def test_tiny_dag_html_report(tiny_dag):
    snakemake("--profile", "profiles/local", "--report", "results/report.html", cwd=tiny_dag)
    html = (tiny_dag / "results/report.html").read_text()
    assert "table2.csv" in html and "niah_stage2.png" in html and "effect_vs_length.png" in html
    # it opens on this run: the three GRPO stages it trained and the final model's headline against the base
    landing = (tiny_dag / "results/report/landing.rst").read_text()
    assert "**Trained:** warmup (" in landing and "stage2 (" in landing and "``keychain``" not in landing
    assert "**Headline:** ``stage2`` against ``base``" in landing
    assert "This run" in html and "Headline:" in html


def test_make_runs_end_with_their_html_report():
    """Each run target records its arguments and builds its report with them; `make report` reuses them."""
    for target, args in (
        ("demo", "--profile profiles/nano --configfile config.yaml profiles/local/config.tiny.yaml"),
        ("effect-one", "--profile profiles/nano"),
        ("demo-tiny", "--profile profiles/local"),
    ):
        out = subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=ROOT, capture_output=True, text=True)
        lines = out.stdout.splitlines()
        assert any(x.startswith(f"mkdir -p results && echo '{args}") and "results/run_args.txt" in x for x in lines)
        run = next(i for i, x in enumerate(lines) if x.startswith(f"snakemake {args}") and "--report" not in x)
        assert lines[run + 1].startswith(f"snakemake {args}") and lines[run + 1].endswith(
            "--report results/report.html"
        )
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "report"], cwd=ROOT, capture_output=True, text=True)
    assert "$(cat results/run_args.txt 2>/dev/null || echo --profile profiles/local) --report" in out.stdout


@pytest.mark.slow
def test_tiny_dag_dry_run_shows_the_reruns_behind_the_gates(tiny_dag, tmp_path):
    """The input check gates every GPU job and sits upstream of the filter's checkpoint: if a config change reran
    it, `snakemake -n` would show it alone and defer every job behind the checkpoint. It reruns only for the keys
    it reads, so a fill change shows the fill, KeyChain and training reruns."""
    work = shutil.copytree(tiny_dag, tmp_path / "copy", symlinks=True)
    (work / "fill.yaml").write_text("fill: {placement: fixed_shuffle}\n")
    out = snakemake("-n", "--profile", "profiles/local", "--configfile", *TINY, "fill.yaml", cwd=work)
    counts = job_counts(out.stdout + out.stderr)
    assert "check_inputs" not in counts, counts
    assert counts["fill_context"] == 12 and counts["insert_keychain"] == 6 and counts["train_stage"] == 3, counts
    # A key the memory preflight reads reruns it, and every stage behind it (their params changed too) must show:
    # with ancient() on that edge Snakemake masked them and planned the preflight alone (snakemake#4166)
    (work / "memory.yaml").write_text("train: {memory_margin: 0.85}\n")
    out = snakemake("-n", "--profile", "profiles/local", "--configfile", *TINY, "memory.yaml", cwd=work)
    counts = job_counts(out.stdout + out.stderr)
    assert counts["memory_preflight"] == 1 and counts["train_stage"] == 3 and counts["report"] == 1, counts


def test_gates_read_the_keys_their_jobs_depend_on():
    """The preflight's params are exactly the train keys loongrl.train.memory reads."""
    src = (ROOT / "workflow/loongrl/train/memory.py").read_text()
    read = set(re.findall(r'train\["([a-z_]+)"\]', src)) | set(re.findall(r'train\.get\("([a-z_]+)"', src))
    smk = (ROOT / "workflow/rules/helpers/train.smk").read_text()
    keys = set(re.findall(r'^    "([a-z_0-9]+)",$', smk.split("PREFLIGHT_KEYS = (", 1)[1].split(")", 1)[0], re.M))
    assert read == keys, (read - keys, keys - read)


@pytest.mark.slow
def test_tiny_dag_moved_checkout_reruns_nothing(tiny_dag, tmp_path):
    """No rule param holds an absolute path (the MLflow URI, the launcher's files): the finished DAG, copied to
    another folder with its timestamps, plans no job."""
    moved = shutil.copytree(tiny_dag, tmp_path / "elsewhere", symlinks=True)
    out = snakemake("-n", "--profile", "profiles/local", cwd=moved)
    assert "Nothing to be done" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]


@pytest.mark.slow
def test_tiny_dag_code_change_reruns_what_it_affects(tiny_dag, tmp_path):
    """Each stage's jobs take its module's source (and the package modules it imports) as inputs: an edit to
    data/keychain.py reruns KeyChain and what follows it, and neither the filter, the fill nor the base model's eval."""
    moved = shutil.copytree(tiny_dag, tmp_path / "edited", symlinks=True)
    source = moved / "workflow/loongrl/data/keychain.py"
    # an edit, not a touch: Snakemake 9 compares a newer small input's checksum with the one it recorded
    source.write_text(source.read_text() + "\n# an edit\n")
    counts = job_counts(snakemake("-n", "--profile", "profiles/local", cwd=moved).stdout)
    assert counts["insert_keychain"] == 3 * 2  # datasets x lengths
    assert {"build_mixture", "train_stage", "report"} <= set(counts)
    assert not {"normalise_raw_qa", "filter_source", "split", "fill_context", "build_retrieval", "math_data"} & set(
        counts
    ), counts
    base_eval = snakemake("-n", "--profile", "profiles/local", "results/eval/base/niah.L1024.summary.json", cwd=moved)
    assert "Nothing to be done" in base_eval.stdout + base_eval.stderr


@pytest.mark.slow
def test_tiny_dag_data_half_is_deterministic(tiny_dag):
    """Rebuild the data half after the (slow) filter from scratch: the bytes must not change."""
    first = _hashes(tiny_dag)
    assert first
    snakemake(
        "--profile",
        "profiles/local",
        "--forcerun",
        "split",
        "build_retrieval",
        "math_data",
        "--until",
        "preflight",
        cwd=tiny_dag,
    )
    assert _hashes(tiny_dag) == first
    assert not list((tiny_dag / "results").rglob("*.tmp")), "no temporary files left behind"


@pytest.mark.slow
def test_tiny_dag_ablation_reaches_table4(tiny_dag):
    """An ablation row (eval.ablations) reaches the report through the rule and the CLI: Table 4 is written."""
    (tiny_dag / "ablation.yaml").write_text("eval:\n  ablations:\n    table4: {'LoongRL w/o KeyChain': base}\n")
    overlay = ["--configfile", "config.yaml", "profiles/local/config.tiny.yaml", "ablation.yaml"]
    snakemake("--profile", "profiles/local", "results/report/tables/table4.csv", *overlay, cwd=tiny_dag)
    rep = tiny_dag / "results/report"
    table4 = (rep / "tables/table4.csv").read_text().splitlines()
    assert table4[1].startswith("ours:LoongRL w/o KeyChain (base),") and "Table 4" in (rep / "report.md").read_text()


@pytest.mark.slow
def test_bad_raw_input_fails_cleanly(tmp_path):
    work = copy_project(tmp_path)
    bad = work / "data/samples/hotpotqa/hotpot_train_v1.1.sample.json"  # the local profile reads the train split
    text = bad.read_text().replace('"question":', '"quest1on":', 1)
    bad.write_text(text)
    out = snakemake("--profile", "profiles/local", "results/raw_qa/hotpotqa.parquet", cwd=work, check=False)
    assert out.returncode != 0
    log = (work / "logs/raw_qa/hotpotqa.normalise.log").read_text()
    assert "hotpot_train_v1.1.sample.json: row" in log and "field 'question': missing" in log
    assert not (work / "results/raw_qa/hotpotqa.parquet").exists()


HOSTILE = "a b$(touch PWNED1)`touch PWNED2`'q\";touch PWNED3.txt"


def test_config_strings_never_run_as_shell(tmp_path):
    """Every config value reaches its shell command quoted (Snakemake's ``:q``): a held-out book name holding a
    command substitution, backticks, quotes, a semicolon and a space arrives as one argument, in every printed
    command of the dry run and in a job that really runs, and nothing in it executes."""
    import shlex

    import yaml

    work = copy_project(tmp_path)
    (work / "hostile.yaml").write_text(yaml.safe_dump({"retrieval": {"heldout_books": [HOSTILE]}}))
    overlay = ["--configfile", "config.yaml", "profiles/local/config.tiny.yaml", "hostile.yaml"]
    dry = snakemake("-n", "-p", "--profile", "profiles/local", *overlay, cwd=work).stdout
    lines = [line for line in dry.splitlines() if "PWNED1" in line]
    assert len(lines) >= 2, dry[-3000:]  # the training and the held-out retrieval commands
    in_json = json.dumps(HOSTILE)[1:-1]  # the value inside a quoted JSON parameter
    for line in lines:
        words = [w for w in shlex.split(line.removeprefix("Shell command: ")) if "PWNED" in w]
        assert words and all(HOSTILE in w or in_json in w for w in words), line  # one shell word, intact
    target = "results/retrieval/L2048.parquet"  # before --configfile, whose file list would swallow it
    res = snakemake(target, "--profile", "profiles/local", *overlay, cwd=work, check=False)
    assert res.returncode != 0  # the book does not exist: the job fails, naming it
    log = (work / "logs/retrieval/L2048.log").read_text()
    assert "retrieval.heldout_books" in log and repr(HOSTILE)[1:-1] in log, log[-2000:]
    assert not [p.name for p in work.rglob("PWNED*")]


def test_paper_presets_dry_run(tmp_path):
    """The 7B preset launches stages over 2 nodes (srun + accelerate per node); the 14B preset has no warm-up."""
    work = copy_project(tmp_path)
    shutil.copytree(ROOT / "presets", work / "presets")
    out = snakemake(
        "-n",
        "-p",
        "--profile",
        "profiles/slurm",
        "all",
        "--configfile",
        "config.yaml",
        "presets/qwen7b-16xa100.yaml",
        cwd=work,
    )
    text = out.stdout + out.stderr
    assert (
        "srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --kill-on-bad-exit=1 --cpus-per-task 64 --gres=gpu:8 bash"
        in text
    )
    assert "accelerate_node.sh" in text
    assert "--gpus 16 --world 16 " in text  # world size: 2 nodes x 8 GPUs
    out = snakemake(
        "-n",
        "--profile",
        "profiles/slurm",
        "all",
        "--configfile",
        "config.yaml",
        "presets/qwen14b-8xmi300x.yaml",
        cwd=work,
    )
    counts = job_counts(out.stdout + out.stderr)
    assert counts["train_stage"] == 2 and counts["evaluate"] == 3 * 21  # NIAH x 8 lengths, LongBench v2 x 3 buckets
    assert "results/train/warmup" not in out.stdout + out.stderr
    # the paper exactly: the 7B shape with every deviation set back; the authors' judge over an endpoint (no GPU)
    out = snakemake(
        "-n",
        "-p",
        "--profile",
        "profiles/slurm",
        "all",
        "--configfile",
        "config.yaml",
        "presets/qwen7b-16xa100.yaml",
        "presets/paper-exact.yaml",
        cwd=work,
    )
    text = out.stdout + out.stderr
    counts = job_counts(text)
    assert counts["judge"] == 4 and counts["train_stage"] == 3  # one LongBench judge job per evaluated model
    assert "--preset paper-exact" in text and '"match": "chars"' in text
    assert "https://api.deepseek.com/v1" in text


def test_fill_build_mixture_builds_only_what_a_mixture_takes(tmp_path):
    """profiles/nano's mixture takes no QA rows: with fill.build mixture (its setting) the QA half (filter, split,
    fill, KeyChain) is not in the DAG; with fill.build all (the paper config's) every dataset is built at every
    length anyway."""
    work = copy_project(tmp_path)
    qa_half = {"filter_source", "split", "fill_context", "insert_keychain"}
    out = snakemake("-n", "--profile", "profiles/nano", cwd=work)
    counts = job_counts(out.stdout + out.stderr)
    assert not qa_half & set(counts) and counts["train_stage"] == 2, counts
    (work / "all.yaml").write_text("fill: {build: all}\n")
    nano = ["config.yaml", "profiles/local/config.tiny.yaml", "profiles/nano/config.nano.yaml"]
    out = snakemake("-n", "--profile", "profiles/nano", "--configfile", *nano, "all.yaml", cwd=work)
    counts = job_counts(out.stdout + out.stderr)
    assert qa_half <= set(counts) and counts["insert_keychain"] == 3, counts
