"""The one-way dependency rule of DESIGN.md ("Layout"): every import of every package module, read from its
syntax tree, points down ``experiments -> finetune -> pretrain -> {shards, training} -> ingest``, never up or
sideways."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "ingest": set(),
    "shards": {"ingest"},
    "training": {"ingest"},
    "pretrain": {"ingest", "shards", "training"},
    "finetune": {"ingest", "shards", "training", "pretrain"},
    "experiments": {"ingest", "shards", "training", "pretrain", "finetune"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level names of the project packages that ``path`` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    upward = {str(m.relative_to(ROOT)): sorted(imported_packages(m) - ALLOWED[package] - {package}) for m in modules}
    assert {m: deps for m, deps in upward.items() if deps} == {}


def test_rule_sees_an_upward_import(tmp_path):
    """The check itself: a module importing a higher package is reported."""
    bad = tmp_path / "m.py"
    bad.write_text("import numpy\nfrom finetune.model import Lifter\nfrom . import sibling\n")
    assert imported_packages(bad) == {"finetune"}
