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
    assert "| test-main | 11:40 | 0 |" in out and "| **all phases** | 21:10 | |" in out
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
