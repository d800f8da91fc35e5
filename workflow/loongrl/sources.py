"""Which source files a stage runs: its module and every ``loongrl`` module that module imports, transitively.

The Snakefile makes these files inputs of the stage's rule (``stage_code(...)`` in workflow/rules/common.smk), so an
edit to a stage's code reruns that stage's jobs and everything downstream of them, and nothing else; Snakemake
itself tracks only a rule's shell text. tests/test_architecture.py checks the layer order on the same import graph.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PKG = Path(__file__).resolve().parent


def module_name(path: Path, root: Path = PKG) -> str:
    """``loongrl.data.keychain`` for ``<root>/data/keychain.py`` (a package's ``__init__.py`` names the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_file(module: str, root: Path = PKG) -> Path | None:
    """The file that defines ``module`` (``x.py`` or ``x/__init__.py``), or None outside the package."""
    base = root.parent / module.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imports(path: Path, root: Path = PKG) -> set[str]:
    """Every ``loongrl`` module imported by ``path``, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "loongrl":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (root.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
                if (root.parent / sub.replace(".", "/")).is_dir():
                    found.add(sub)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "loongrl"}
    return found


def graph(root: Path = PKG) -> dict[str, set[str]]:
    """{module: the loongrl modules it imports} for every module of the package."""
    return {module_name(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


@cache
def module_sources(module: str, root: Path = PKG) -> tuple[Path, ...]:
    """The files ``python -m <module>`` executes from the package: the module (and a package's ``__main__``), the
    ``__init__`` of every package on the way, and the same for every module imported, transitively. Sorted."""
    files: set[Path] = set()
    seen: set[str] = set()
    todo = [module, f"{module}.__main__"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run their __init__
        path = module_file(name, root)
        if path is not None:
            files.add(path)
            todo.extend(imports(path, root))
    if module_file(module, root) is None:
        raise ValueError(f"{module}: no such module under {root}")
    return tuple(sorted(files))
