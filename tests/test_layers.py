"""The layers of ARCHITECTURE.md's import table: every import of the project points down
(flows -> storage, training, tasks -> configs). Read from the source (every import statement, also those
inside functions), so a lazy import cannot hide a wrong direction."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each folder must never import (ARCHITECTURE.md, "What each folder may import").
NEVER = {
    "training": ("flows", "storage"),
    "storage": ("flows", "training", "tasks"),
    "tasks": ("flows", "training", "storage"),
    "configs": ("flows", "training", "storage", "tasks"),
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top folder) of every ``merflow.<folder>`` import in a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "merflow" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


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
