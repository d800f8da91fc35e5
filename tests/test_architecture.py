"""The package tree is the architecture: imports flow core -> {data, train, eval} -> report, with no cycles, and
functions with more than four parameters take them by keyword (a positional call cannot silently drop one)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from loongrl.sources import PKG, graph, module_name  # the import graph the Snakefile's code inputs use

# Which layers a layer may import from. Core is every other top-level module of the package; ``loongrl.pipeline``
# (the Snakefile's config validation, joining every section's checks) and ``loongrl.enginecheck`` (every GPU stage's
# engine request) sit above all of them, as does ``loongrl.replicate`` (runs a profile's DAG per replicate and pools
# the reports).
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "train": {"core", "train"},
    "eval": {"core", "eval"},
    "report": {"core", "eval", "report"},
    "pipeline": {"core", "data", "train", "eval", "report"},
}
SUBPACKAGES = ("data", "train", "eval", "report")


def layer(module: str) -> str:
    parts = module.split(".")
    # these join every layer: config checks, the engine check, the replicate runner (runs the DAG, pools the report)
    if parts[1:2] in (["pipeline"], ["enginecheck"], ["replicate"]):
        return "pipeline"
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "core"


def violations(root: Path = PKG) -> list[str]:
    """Imports against the layer order, and import cycles between modules."""
    g = graph(root)
    out = []
    for mod, deps in g.items():
        for dep in sorted(deps):
            if layer(dep) not in ALLOWED[layer(mod)]:
                out.append(f"{mod} ({layer(mod)}) imports {dep} ({layer(dep)})")
    # cycles: depth-first search over module edges (a package's __init__ counts as its own module)
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if d not in g or d == m:
                continue
            if state.get(d) == 1:
                out.append("cycle: " + " -> ".join([*stack[stack.index(d) :], d]) if d in stack else f"cycle via {d}")
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m, [m])
    return out


def test_imports_flow_one_way_without_cycles():
    assert violations() == []


def test_the_direction_check_can_fail(tmp_path):
    """A copy of the package where a data module imports from eval is caught (and so is a cycle)."""
    import shutil

    copy = tmp_path / "loongrl"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    fill = copy / "data" / "fill.py"
    fill.write_text(fill.read_text() + "\nfrom loongrl.eval.metrics import METRICS  # noqa\n")
    found = violations(copy)
    assert "loongrl.data.fill (data) imports loongrl.eval.metrics (eval)" in found
    io = copy / "io.py"
    io.write_text(io.read_text() + "\nfrom loongrl.prompts import messages  # noqa\n")
    prompts = copy / "prompts.py"
    prompts.write_text(prompts.read_text() + "\nfrom loongrl.io import write_json  # noqa\n")
    assert any(v.startswith("cycle:") and "loongrl.io" in v and "loongrl.prompts" in v for v in violations(copy))


def long_positional_functions(root: Path = PKG) -> list[str]:
    """Functions (methods: not counting self/cls) with more than four parameters that can be passed by position."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                pos = [a.arg for a in [*node.args.posonlyargs, *node.args.args] if a.arg not in ("self", "cls")]
                if len(pos) + len(node.args.kwonlyargs) > 4 and len(pos) > 4:
                    out.append(f"{module_name(path, root)}.{node.name}({', '.join(pos)})")
    return out


def test_long_signatures_are_keyword_only():
    assert long_positional_functions() == []


@pytest.mark.parametrize(
    "module",
    [
        "loongrl.data.raw_qa",
        "loongrl.data.filter_source",
        "loongrl.data.split",
        "loongrl.data.fill",
        "loongrl.data.keychain",
        "loongrl.data.retrieval",
        "loongrl.data.math_data",
        "loongrl.data.mixture",
        "loongrl.train.grpo",
        "loongrl.train.stage2",
        "loongrl.eval.tasks",
        "loongrl.eval.evaluate",
        "loongrl.eval.contamination",
        "loongrl.report",
        "loongrl.models",
        "loongrl.download",
        "loongrl.books",
    ],
)
def test_every_stage_keeps_its_cli(module):
    res = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert f"python -m {module}" in res.stdout


def test_stage_sources_follow_the_import_graph():
    """What a stage's rule takes as code inputs (workflow/rules/common.smk stage_code): the module, its packages'
    __init__, the core modules it imports, transitively; never another stage's module."""
    from loongrl.sources import module_sources

    rel = {str(p.relative_to(PKG)) for p in module_sources("loongrl.data.keychain")}
    assert {"__init__.py", "data/__init__.py", "data/keychain.py", "io.py"} <= rel
    assert not any(r.startswith(("eval/", "train/", "report/")) for r in rel), rel
    assert "report/__main__.py" in {str(p.relative_to(PKG)) for p in module_sources("loongrl.report")}
    with pytest.raises(ValueError, match="no such module"):
        module_sources("loongrl.data.nothing_here")
