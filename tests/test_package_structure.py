"""The package's shape: no import cycle between ``rsvl`` subpackages, and a config that loads no ML stack."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def package_imports(src: Path) -> dict[tuple[str, str], list[str]]:
    """Every import from one top-level unit of ``rsvl`` into another, with the lines that make it.

    A unit is a subpackage (``rsvl.train``) or a top-level module (``rsvl.cli``); imports inside
    functions count too (a lazy import hides a cycle, it does not remove it).

    Args:
        src: The folder holding ``rsvl/``.

    Returns:
        ``(importer, imported)`` → ``["path:line", ...]``.
    """
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted((src / "rsvl").rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("rsvl.") and unit(name) != unit(module):
                    edges[(unit(module), unit(name))].append(f"{path.relative_to(src)}:{node.lineno}")
    return dict(edges)


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one unit (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_subpackages_of_rsvl_import_each_other_without_a_cycle():
    edges = package_imports(SRC)
    found = cycles(edges)
    detail = [f"{a} -> {b}: {edges[(a, b)][:3]}" for group in found for a in group for b in group if (a, b) in edges]
    assert not found, f"import cycles between rsvl subpackages {found}:\n" + "\n".join(detail)
    # the configuration is the bottom of the graph: it imports no feature package
    assert {target for (source, target) in edges if source == "rsvl.config"} <= {"rsvl.errors"}


def test_the_cycle_check_finds_a_cycle_through_a_lazy_import(tmp_path):
    package = tmp_path / "rsvl"
    for name, text in {"__init__.py": "", "a/__init__.py": "from rsvl.b.x import y\n",
                       "b/__init__.py": "", "b/x.py": "def y():\n    from rsvl.c import z\n",
                       "c.py": "import rsvl.a\n", "d.py": "import rsvl.c\n"}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    edges = package_imports(tmp_path)
    assert edges[("rsvl.b", "rsvl.c")] == ["rsvl/b/x.py:2"]
    assert cycles(edges) == [["rsvl.a", "rsvl.b", "rsvl.c"]]


HEAVY = ("torch", "torchvision", "open_clip", "ray", "mlflow", "kfp", "matplotlib", "transformers", "pandas")


@pytest.mark.parametrize(("module", "allowed"), [("rsvl.config", ()), ("pipelines.dag", ("kfp", "rsvl.images"))])
def test_importing_the_config_loads_no_ml_stack(module, allowed, repo_root):
    probe = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe, module], cwd=repo_root, check=True,
                         capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    heavy = sorted(name for name in HEAVY if name in loaded and name not in allowed)
    # rsvl.step_exit: the package root's exit hook for KFP steps, standard library only
    features = sorted(name for name in loaded if name.startswith("rsvl.") and name not in allowed
                      and not name.startswith(("rsvl.config", "rsvl.errors", "rsvl.step_exit")))
    assert heavy == [], f"import {module} loads {heavy}"
    assert features == [], f"import {module} loads feature code {features}"


CROSS_CUTTING_TESTS = ("faults", "security")
"""Test folders that exercise the whole product through its commands (the bad-input corpus, injected
faults, the security pass), so they mirror no single package."""


def test_the_tests_mirror_the_package():
    """``tests/<package>/`` for ``src/rsvl/<package>/`` (``tests/pipelines`` for ``pipelines/``), ``tests/test_*.py``
    for top-level modules and the repository's own files, and the cross-cutting folders
    (:data:`CROSS_CUTTING_TESTS`); fixtures live in folders without tests."""
    tests = Path(__file__).resolve().parent
    repo = tests.parent
    for folder in sorted(p for p in tests.rglob("*") if p.is_dir() and "__pycache__" not in p.parts):
        if not any(folder.glob("test_*.py")):
            continue
        relative = folder.relative_to(tests)
        if relative.parts[0] in CROSS_CUTTING_TESTS:
            continue
        assert (SRC / "rsvl" / relative).is_dir() or (repo / relative).is_dir(), \
            f"tests/{relative.as_posix()}/ mirrors neither src/rsvl/{relative.as_posix()}/ nor a top-level folder"
