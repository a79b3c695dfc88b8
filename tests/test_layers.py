"""The layers of ARCHITECTURE.md's import table: every import of the project points down
(flows -> storage, training, tasks -> configs). Read from the source (every import statement, also those
inside functions), so a lazy import cannot hide a wrong direction."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each folder must never import (ARCHITECTURE.md, "Layers").
NEVER = {
    "training": ("flows", "storage"),
    "storage": ("flows", "training", "tasks"),
    "tasks": ("flows", "training", "storage"),
    "configs": ("flows", "training", "storage", "tasks"),
}


def _package(path: Path) -> list[str]:
    """The dotted package of a source file under ROOT, as merflow names it (ROOT is the ``merflow`` package)."""
    try:
        parts = list(path.resolve().relative_to(ROOT).parts)
    except ValueError:  # a file outside the tree (the test's own): its folder as if it were merflow's top
        return ["merflow"]
    return ["merflow", *parts[:-1]]


def project_imports(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """(line, top folder) of every ``merflow.<folder>`` import in a source file: ``import merflow.x``,
    ``from merflow.x import y``, ``from merflow import x``, relative imports (``from ..storage import y``,
    resolved against the file's package), and ``importlib.import_module("merflow.x...")`` with a literal name."""
    found = []
    package = package or _package(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's package, up level - 1 folders
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from merflow import x` (or `from .. import x` up to merflow): each name is a folder
            names = [f"{module}.{alias.name}" for alias in node.names] if module == "merflow" else [module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _is_import_call(node.func):
            names = [node.args[0].value]
        for name in names:
            parts = name.split(".")
            if parts[0] == "merflow" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _is_import_call(func: ast.expr) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


@pytest.mark.parametrize("folder", sorted(NEVER))
def test_imports_point_down_the_layers(folder):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports merflow.{target}"
             for path in sorted((ROOT / folder).rglob("*.py"))
             for line, target in project_imports(path) if target in NEVER[folder]]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from merflow.storage import locations\n    import merflow.flows.cli\n")
    assert project_imports(module) == [(2, "storage"), (3, "flows")]


def test_the_check_sees_every_form_of_import(tmp_path):
    """``from merflow import x``, relative imports and importlib's literal names are seen too."""
    module = tmp_path / "m.py"
    module.write_text("import importlib\nfrom merflow import storage, configs\n"
                      "x = importlib.import_module('merflow.flows.train')\n__import__('merflow.tasks')\n")
    assert sorted(project_imports(module)) == [(2, "configs"), (2, "storage"), (3, "flows"), (4, "tasks")]
    relative = tmp_path / "r.py"  # as if it were training/models/r.py
    relative.write_text("from ...storage import results\nfrom .. import run\nfrom ... import flows\nfrom . import y\n")
    assert project_imports(relative, ["merflow", "training", "models"]) == [
        (1, "storage"), (2, "training"), (3, "flows"), (4, "training")]
    assert _package(ROOT / "training" / "models" / "x.py") == ["merflow", "training", "models"]
