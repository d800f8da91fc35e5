#!/usr/bin/env python3
"""CI cost report and budget: the wall time of each phase, the slowest tests of both suites, and a hard limit.

Reads what `.ci/run` and `make test` leave under logs/ci/: ``phases.tsv`` (one ``name<TAB>seconds<TAB>status`` line
a phase, written by .ci/timed) and one JUnit XML a pytest suite (``junit-*.xml``; pytest's ``time`` per test case is
setup + call + teardown, so a session fixture's shared run is charged to the first test that uses it). Prints the
tables and exits 1 when the test phases ran longer than the budget, naming the slowest tests, so the suite cannot
creep towards CI's hard limit unnoticed. Standard library only: it runs before and after the venvs exist.

Some phases overlap (apt beside install; install-vllm and test-vllm beside test-main, .ci/suites), so their sum is
not the wall time: ``tests`` (.ci/suites) is the wall time of both suites together, the budgeted figure, and ``ci``
(.ci/run) the whole run's. Logs without them (an older layout) fall back to the sums.

    python3 .ci/report.py [--dir logs/ci] [--budget-s 2700] [--top 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TEST_PHASES = ("test-main", "test-vllm")  # the suites (Makefile: test-main, test-vllm)
WALL = ("tests", "ci")  # wall-time lines spanning other phases: both suites together, the whole CI run
DEFAULT_BUDGET_S = 45 * 60  # half CI's 90-minute hard limit: machines differ 2-3x in speed


def read_phases(path: Path) -> list[tuple[str, int, int]]:
    """(name, seconds, exit status) per phase, in the order they ran."""
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            raise SystemExit(f"{path}: line {n}: expected 'name<TAB>seconds<TAB>status', got {line!r}")
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def read_cases(path: Path) -> list[dict]:
    """Every test case of one JUnit XML: suite, node id, seconds, outcome."""
    suite = path.stem.removeprefix("junit-")
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = tag
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        cases.append({"suite": suite, "test": name, "seconds": float(case.get("time") or 0), "outcome": outcome})
    return cases


def fmt(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("logs/ci"))
    ap.add_argument("--budget-s", type=int, default=int(os.environ.get("LOONGRL_CI_TEST_BUDGET_S", DEFAULT_BUDGET_S)))
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    phases = read_phases(args.dir / "phases.tsv")
    cases = [c for p in sorted(args.dir.glob("junit-*.xml")) for c in read_cases(p)]

    print("\n## CI phases (wall time)\n\n| phase | m:ss | status |\n|---|---|---|")
    for name, sec, rc in phases:
        if name not in WALL:
            print(f"| {name} | {fmt(sec)} | {rc} |")
    wall = {name: sec for name, sec, _ in phases if name in WALL}
    if phases:
        if "tests" in wall:
            print(f"| **both suites, side by side** | {fmt(wall['tests'])} | |")
        total = wall.get("ci", sum(s for n, s, _ in phases if n not in ("test", *WALL)))
        print(f"| **all of CI ({'wall' if 'ci' in wall else 'sum of the phases'})** | {fmt(total)} | |")

    counts: dict[str, dict[str, int]] = {}
    for c in cases:
        counts.setdefault(c["suite"], {}).setdefault(c["outcome"], 0)
        counts[c["suite"]][c["outcome"]] += 1
    for suite, by in sorted(counts.items()):
        print(f"\nsuite {suite}: {sum(by.values())} tests ({', '.join(f'{v} {k}' for k, v in sorted(by.items()))})")

    slow = sorted(cases, key=lambda c: -c["seconds"])[: args.top]
    print(f"\n## The {len(slow)} slowest tests (setup + call + teardown)\n\n| s | suite | test |\n|---|---|---|")
    for c in slow:
        print(f"| {c['seconds']:.0f} | {c['suite']} | {c['test']} |")

    test_time = wall.get("tests", sum(s for n, s, _ in phases if n in TEST_PHASES))
    print(f"\ntest time {fmt(test_time)} of a {fmt(args.budget_s)} budget (LOONGRL_CI_TEST_BUDGET_S)")
    if test_time > args.budget_s:
        names = ", ".join(f"{c['test']} ({c['seconds']:.0f} s)" for c in slow[:5])
        print(
            f"CI BUDGET EXCEEDED: the test phases took {fmt(test_time)} > {fmt(args.budget_s)}; "
            f"the slowest tests: {names}. Share their runs (tests/conftest.py) before adding more.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
