"""The CI cost report and budget (.ci/report.py, .ci/timed): phase table, slowest tests, and a loud failure past the
test-time budget naming the tests that cost most."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest
from conftest import ROOT

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_workflow" name="test_tiny_dag_mixtures_and_filter" time="601.5"/>
<testcase classname="tests.test_config" name="test_paper_values" time="0.2"/>
<testcase classname="tests.test_slurm" name="test_gpu" time="12.0"><skipped message="x"/></testcase>
</testsuite></testsuites>
"""


@pytest.fixture()
def report():
    spec = importlib.util.spec_from_file_location("ci_report", ROOT / ".ci/report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _logs(tmp_path, phases: str):
    (tmp_path / "phases.tsv").write_text(phases)
    (tmp_path / "junit-main.xml").write_text(JUNIT)
    return tmp_path


def test_report_tables_and_budget_kept(tmp_path, report, capsys):
    logs = _logs(tmp_path, "apt\t40\t0\ninstall\t200\t0\nlint\t30\t0\ntest-main\t700\t0\ntest-vllm\t300\t0\n")
    assert report.main(["--dir", str(logs), "--budget-s", "1200"]) == 0
    out = capsys.readouterr().out
    assert "| test-main | 11:40 | 0 |" in out and "| **all of CI (sum of the phases)** | 21:10 | |" in out
    assert "suite main: 3 tests (2 passed, 1 skipped)" in out
    rows = [line for line in out.splitlines() if line.startswith("| 6") or line.startswith("| 12")]
    assert rows[0] == "| 602 | main | tests/test_workflow.py::test_tiny_dag_mixtures_and_filter |"
    assert "test time 16:40 of a 20:00 budget" in out


def test_budget_exceeded_fails_naming_the_slowest(tmp_path, report, capsys):
    logs = _logs(tmp_path, "test-main\t2000\t0\ntest-vllm\t800\t0\n")
    assert report.main(["--dir", str(logs), "--budget-s", "2700"]) == 1
    err = capsys.readouterr().err
    assert "CI BUDGET EXCEEDED" in err and "46:40 > 45:00" in err
    assert "tests/test_workflow.py::test_tiny_dag_mixtures_and_filter (602 s)" in err


def test_malformed_phase_line_is_named(tmp_path, report):
    logs = _logs(tmp_path, "lint\tten\t0\n")
    with pytest.raises(SystemExit, match=r"phases.tsv: line 1: expected"):
        report.main(["--dir", str(logs)])


def test_timed_records_the_phase_and_keeps_the_exit_status(tmp_path):
    log = tmp_path / "ci/phases.tsv"
    ok = subprocess.run([str(ROOT / ".ci/timed"), str(log), "good", "true"])
    bad = subprocess.run([str(ROOT / ".ci/timed"), str(log), "bad", "sh", "-c", "exit 3"])
    assert (ok.returncode, bad.returncode) == (0, 3)
    lines = [line.split("\t") for line in log.read_text().splitlines()]
    assert [(n, rc) for n, _, rc in lines] == [("good", "0"), ("bad", "3")] and all(s.isdigit() for _, s, _ in lines)


def test_side_by_side_suites_are_budgeted_by_their_wall_time(tmp_path, report, capsys):
    """With the suites side by side (.ci/suites) the budget counts their wall time (`tests`), not their sum, and the
    CI total is .ci/run's own wall time (`ci`), not a sum that counts background phases twice."""
    phases = "install\t100\t0\nlint\t4\t0\ninstall-vllm\t150\t0\ntest-vllm\t700\t0\ntest-main\t1500\t0\n"
    logs = _logs(tmp_path, phases + "tests\t1510\t0\ntest\t1520\t0\nci\t1630\t0\n")
    assert report.main(["--dir", str(logs), "--budget-s", "1600"]) == 0  # the sum (2200 s) would exceed it
    out = capsys.readouterr().out
    assert "| **both suites, side by side** | 25:10 | |" in out and "| **all of CI (wall)** | 27:10 | |" in out
    assert "test time 25:10 of a 26:40 budget" in out and "| tests |" not in out and "| ci |" not in out


@pytest.mark.parametrize("vllm_rc", [0, 3])
def test_suites_run_side_by_side_and_fail_on_either(tmp_path, vllm_rc):
    """.ci/suites: the vLLM suite starts once its environment is installed, beside the main one; every part is
    timed; the vLLM log is printed; a failure of either suite fails the whole."""
    fake = tmp_path / "make"
    fake.write_text(
        "#!/bin/sh\n"
        'target=$2\necho "$target start $(date +%s%N)" >> "$LOG"\n'
        '[ "$target" = test-main ] && sleep 1\n'
        '[ "$target" = test-vllm ] && echo "vllm suite output" && exit "$VLLM_RC"\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    logs = tmp_path / "ci"
    logs.mkdir()
    env = {**__import__("os").environ, "MAKE": str(fake), "LOG": str(tmp_path / "calls"), "VLLM_RC": str(vllm_rc)}
    res = subprocess.run([str(ROOT / ".ci/suites"), str(logs)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode == vllm_rc, res.stdout + res.stderr
    assert "vllm suite output" in res.stdout
    starts = {name: int(t) for line in (tmp_path / "calls").read_text().splitlines() for name, _, t in [line.split()]}
    assert set(starts) == {"test-main", "vllm-env", "test-vllm"}
    assert starts["test-vllm"] < starts["test-main"] + 1_000_000_000  # began while the main suite was running
    rows = [line.split("\t") for line in (logs / "phases.tsv").read_text().splitlines()]
    assert {r[0] for r in rows} == {"install-vllm", "test-vllm", "test-main", "tests"}
    assert dict((r[0], r[2]) for r in rows)["tests"] == str(vllm_rc)
