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
from conftest import ROOT
from slurm_cluster import Cluster, missing_requirements
from test_workflow import copy_project

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

BIN = Path(sys.executable).parent
PROFILES = ["--profile", "profiles/slurm", "--profile", "tests/slurm"]
SUBMITTED = re.compile(
    r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: \S*/logs/slurm/rule_(\w+?)/(\S*?)\d+\.log\)"
)
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")
LOCAL_RULES = {"all", "preflight", "download_raw_qa", "download_model", "download_books"}


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
        [str(BIN / "snakemake"), *PROFILES, "all"],
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
    second = snakemake(cluster, work, "all")
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
    assert ("build_tiny_model", "") in done_first
    redone = done_first & {(s["rule"], s["wildcards"]) for s in submissions(r["second"])}
    assert not redone, f"finished jobs were submitted again: {redone}"
    assert any(s["rule"] == "filter_source" for s in submissions(r["second"]))


def test_every_nonlocal_rule_ran_as_a_slurm_job(cancelled_then_completed, cluster):
    r = cancelled_then_completed
    subs = submissions(r["first"]) + submissions(r["second"])
    ran = {rule for _, rule in FINISHED.findall(r["first"] + r["second"])}
    assert ran - LOCAL_RULES <= {s["rule"] for s in subs}
    assert {
        "build_tiny_model",
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
        assert job["Partition"] == "debug" and job["TimeLimit"] == "00:30:00"
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
    res = snakemake(cluster, work, "--set-resources", "gpu_canary:gpu=2", "results/canary/gpus.json")
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((work / "results/canary/gpus.json").read_text())
    assert info["requested_gpus"] == 2
    assert info["env"]["CUDA_VISIBLE_DEVICES"] == "0,1" and info["env"]["SLURM_JOB_GPUS"] == "0,1"
    (sub,) = submissions(res.stdout + res.stderr)
    assert cluster.job(sub["slurm_id"])["TresPerJob"] == "gres:gpu:2"


def test_more_gpus_than_exist_fails_fast(cluster, tmp_path):
    work = copy_project(tmp_path)
    (work / "tests").mkdir()
    (work / "tests/slurm").symlink_to(ROOT / "tests/slurm")
    t0 = time.time()
    res = snakemake(cluster, work, "--set-resources", "gpu_canary:gpu=8", "results/canary/gpus.json", timeout=180)
    assert res.returncode != 0
    assert time.time() - t0 < 120
    assert "Requested node configuration is not available" in res.stdout + res.stderr


def test_two_node_submission_line(cluster, tmp_path):
    """A 2-node GPU job: the sbatch line carries --nodes, --ntasks and per-node GPUs; a 1-node cluster refuses it."""
    work = copy_project(tmp_path)
    (work / "tests").mkdir()
    (work / "tests/slurm").symlink_to(ROOT / "tests/slurm")
    res = snakemake(
        cluster,
        work,
        "--verbose",
        "--set-resources",
        "gpu_canary:gpu=0",
        "gpu_canary:nodes=2",
        "gpu_canary:tasks=2",
        "gpu_canary:tasks_per_gpu=0",
        "gpu_canary:gres=gpu:4",
        "gpu_canary:mpi=srun",
        "gpu_canary:cpus_per_task=1",
        "results/canary/gpus.json",
        timeout=180,
    )
    text = res.stdout + res.stderr
    call = next(line for line in text.splitlines() if "sbatch call:" in line or line.strip().startswith("sbatch "))
    assert "--nodes=2" in call and "--ntasks=2" in call and "--gres=gpu:4" in call, call
    assert "--gpus" not in call
    assert res.returncode != 0  # only one node exists
