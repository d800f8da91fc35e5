"""The pipeline through profiles/slurm on a real single-node SLURM cluster started by the tests.

The cluster (tests/slurm_cluster.py) has 4 fake GPUs as generic resources. tests/slurm/ overlays the cluster
profile for it: no account, one partition, status by squeue (there is no accounting DB).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copy_project
from slurm_cluster import Cluster, missing_requirements

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

BIN = Path(sys.executable).parent
PROFILES = ["--profile", "profiles/slurm", "--profile", "tests/slurm"]
TARGET = "results/mixture/preflight.json"  # the data half; the training half is covered locally (CI time)
SUBMITTED = re.compile(
    r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: \S*/logs/slurm/rule_(\w+?)/(\S*?)\d+\.log\)"
)
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")
LOCAL_RULES = {
    "all",
    "preflight",
    "check_inputs",
    "gather_filter",
    "download_raw_qa",
    "download_model",
    "download_books",
    "download_math",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_requirements()
    if reason:
        if os.environ.get("LOONGRL_REQUIRE_SLURM"):
            pytest.fail(f"SLURM tests required but cannot run: {reason}")
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("slurm"), gpus=4, cpus=os.cpu_count() or 2, mem_mb=8000)
    c.start()
    yield c
    c.stop()
    left = subprocess.run(["pgrep", "-f", "slurmctld|slurmd"], capture_output=True, text=True).stdout.split()
    assert not left, f"test cluster processes left running: {left}"


def run_env(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}


def snakemake(cluster: Cluster, cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "snakemake"), *PROFILES, *args],
        cwd=cwd,
        env=run_env(cluster),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submissions(text: str) -> list[dict[str, str]]:
    return [
        {"job": m[0], "slurm_id": m[1], "rule": m[2], "wildcards": m[3].rstrip("/")} for m in SUBMITTED.findall(text)
    ]


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "results").rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def cancelled_then_completed(cluster, tmp_path_factory):
    """Run the tiny pipeline on SLURM, scancel the filter job mid-run, then rerun to completion."""
    work = copy_project(tmp_path_factory.mktemp("slurm_run"))
    (work / "tests").mkdir()
    (work / "tests/slurm").symlink_to(ROOT / "tests/slurm")
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), *PROFILES, TARGET],
        cwd=work,
        env=run_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cancelled = None
    deadline = time.time() + 300
    while time.time() < deadline and cancelled is None and proc.poll() is None:
        q = subprocess.run(["squeue", "-h", "-o", "%i %T %k"], env=cluster.env, capture_output=True, text=True)
        for line in q.stdout.splitlines():
            job_id, state, comment = line.split(maxsplit=2)
            if state == "RUNNING" and comment.startswith("rule_filter_source"):
                time.sleep(3)
                subprocess.run(["scancel", job_id], env=cluster.env, check=True)
                cancelled = job_id
        time.sleep(1)
    first_out, _ = proc.communicate(timeout=300)
    first_rc = proc.returncode
    second = snakemake(cluster, work, TARGET)
    return {
        "work": work,
        "cancelled": cancelled,
        "first_rc": first_rc,
        "first": first_out,
        "second": second.stdout + second.stderr,
        "second_rc": second.returncode,
    }


def test_scancel_is_reported_and_rerun_completes(cancelled_then_completed):
    r = cancelled_then_completed
    assert r["cancelled"], "no running filter_source job was seen to cancel"
    assert r["first_rc"] != 0
    assert "Error in rule filter_source" in r["first"]
    assert r["second_rc"] == 0, r["second"][-3000:]
    done_first = {
        (s["rule"], s["wildcards"])
        for s in submissions(r["first"])
        if s["job"] in {j for j, _ in FINISHED.findall(r["first"])}
    }
    assert ("build_local_model", "tiny-qwen2") in done_first  # the SLURM log folder is named by the wildcard
    redone = done_first & {(s["rule"], s["wildcards"]) for s in submissions(r["second"])}
    assert not redone, f"finished jobs were submitted again: {redone}"
    assert any(s["rule"] == "filter_source" for s in submissions(r["second"]))


def test_every_nonlocal_rule_ran_as_a_slurm_job(cancelled_then_completed, cluster):
    r = cancelled_then_completed
    subs = submissions(r["first"]) + submissions(r["second"])
    ran = {rule for _, rule in FINISHED.findall(r["first"] + r["second"])}
    assert ran - LOCAL_RULES <= {s["rule"] for s in subs}
    assert {
        "build_local_model",
        "normalise_raw_qa",
        "filter_source",
        "split",
        "fill_context",
        "insert_keychain",
        "build_retrieval",
        "math_data",
        "build_mixture",
    } <= {s["rule"] for s in subs}
    for s in submissions(r["second"]):
        job = cluster.job(s["slurm_id"])
        assert job["JobState"] == "COMPLETED", (s, job["JobState"])
        want_time = {
            "filter_source": "12:00:00",
            "split": "02:00:00",
            "fill_context": "04:00:00",
            "insert_keychain": "02:00:00",
            "build_retrieval": "01:00:00",
            "build_mixture": "01:00:00",
        }.get(s["rule"], "00:30:00")  # the rule's runtime, else the profile default
        assert job["Partition"] == "debug" and job["TimeLimit"] == want_time, (s["rule"], job["TimeLimit"])
        want_mem = {
            "filter_source": "3000M",
            "split": "2000M",
            "fill_context": "2000M",
            "insert_keychain": "2000M",
            "build_retrieval": "2000M",
            "build_mixture": "2000M",
        }.get(s["rule"], "1500M")
        assert job["MinMemoryNode"] == want_mem, (s["rule"], job["MinMemoryNode"])
        assert job["NumCPUs"] == "1"
        if s["rule"] == "filter_source":  # the transformers filter backend asks for one GPU
            assert job["TresPerJob"] == "gres:gpu:1", job["TresPerJob"]


def test_slurm_outputs_equal_local_run(cancelled_then_completed, tmp_path):
    local = copy_project(tmp_path)
    proc = subprocess.run(
        [
            str(BIN / "snakemake"),
            TARGET,  # before --configfile, whose file list would swallow it
            "--profile",
            "profiles/local",
            "--configfile",
            "config.yaml",
            "profiles/local/config.tiny.yaml",
            str(ROOT / "tests/slurm/config.yaml"),
        ],
        cwd=local,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    slurm_hashes = hashes(cancelled_then_completed["work"])
    assert slurm_hashes and slurm_hashes == hashes(local)


def test_gpu_job_gets_two_fake_gpus(cluster, tmp_path):
    work = copy_project(tmp_path)
    (work / "tests").mkdir()
    (work / "tests/slurm").symlink_to(ROOT / "tests/slurm")
    res = snakemake(cluster, work, "results/canary/gpus.json", "--set-resources", "gpu_canary:gpu=2")
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((work / "results/canary/gpus.json").read_text())
    assert info["requested_gpus"] == 2
    # SLURM binds 2 of the 4 fake devices; the executor plugin strips SLURM_* variables inside the job, but
    # CUDA_VISIBLE_DEVICES (what CUDA frameworks read) arrives.
    assert info["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    (sub,) = submissions(res.stdout + res.stderr)
    assert cluster.job(sub["slurm_id"])["TresPerJob"] == "gres:gpu:2"


def test_more_gpus_than_exist_fails_fast(cluster, tmp_path):
    work = copy_project(tmp_path)
    (work / "tests").mkdir()
    (work / "tests/slurm").symlink_to(ROOT / "tests/slurm")
    t0 = time.time()
    res = snakemake(cluster, work, "results/canary/gpus.json", "--set-resources", "gpu_canary:gpu=8", timeout=180)
    assert res.returncode != 0
    assert time.time() - t0 < 120
    assert "Requested node configuration is not available" in res.stdout + res.stderr


def test_two_node_training_submission_line(cancelled_then_completed, cluster, tmp_path):
    """The sbatch line of the 7B preset's 2-node GRPO stage, captured by an sbatch shim (one node exists, so nothing
    is queued), with no resource overrides: the shape comes from train.gpus / nodes / gpu_type / cpus_per_gpu.

    It reuses the finished SLURM run's folder, so the warm-up training job is the first (and only) submission.
    """
    work = cancelled_then_completed["work"]
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "sbatch.args"
    (shim / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {record}\necho "sbatch: error: recorded only" >&2\nexit 1\n')
    (shim / "sbatch").chmod(0o755)
    preset = yaml.safe_load((ROOT / "presets/qwen7b-16xa100.yaml").read_text())["train"]
    overlay = tmp_path / "two_nodes.yaml"
    shape = {k: preset[k] for k in ("gpus", "nodes", "gpu_type")}
    overlay.write_text(yaml.safe_dump({"train": shape}))
    env = {**run_env(cluster), "PATH": f"{shim}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(
        [
            str(BIN / "snakemake"),
            *PROFILES,
            "results/train/warmup/summary.json",
            "--rerun-triggers",
            "mtime",
            "--configfile",  # the test profile's config files, then the preset's shape
            "config.yaml",
            "profiles/local/config.tiny.yaml",
            "tests/slurm/config.yaml",
            str(overlay),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode != 0
    (call,) = record.read_text().splitlines()
    args = call.split()
    assert "--comment rule_train_stage_wildcards_warmup" in call, call
    assert shape == {"gpus": 8, "nodes": 2, "gpu_type": "a100"}
    # one node's GPUs per node, one task per node with the node's CPUs, and no job-wide GPU count beside the GRES
    assert {"--nodes=2", "--gres=gpu:a100:8", "--ntasks=2", "--cpus-per-task=64"} <= set(args), call
    assert not [a for a in args if a.startswith(("--gpus", "--ntasks-per-gpu", "--cpus-per-gpu"))], call
    # inside the job, srun starts one launcher per node with that node's CPUs and GPUs, for 16 ranks in all
    out = res.stdout + res.stderr
    assert re.search(
        r"srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --kill-on-bad-exit=1 --cpus-per-task 64 --gres=gpu:8 bash "
        r"\S+accelerate_node\.sh \S+zero3\.yaml 8 -m loongrl\.train\.grpo",
        out,
    ), out[-3000:]
    assert "--gpus 16 --world 16" in out
