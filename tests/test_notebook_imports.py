"""A notebook must import what it uses: `forgekit.data.read_records(...)` only works when some
other import happened to load `forgekit.data` first (the evaluate template failed this way on
its first run with a user's file). Checked statically, on every template and tutorial, so a
code path that only runs with a user's parameter is covered too."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "templates").glob("*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("*.ipynb")
)


# -- a notebook imports what it uses --------------------------------------------------------
def notebook_source(path: Path) -> str:
    """The notebook's code as Python: IPython magics and shell lines become `pass`."""
    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith("%%"):
            continue
        for line in cell.source.splitlines():
            stripped = line.lstrip()
            if stripped.startswith(("%", "!")):
                line = line[: len(line) - len(stripped)] + "pass"
            lines.append(line)
    return "\n".join(lines)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# What the root package itself provides on attribute access (`forgekit.export(...)` loads the
# export package lazily): usable after a bare `import forgekit`.
ROOT_EXPORTS = {f"forgekit.{name}" for name in __import__("forgekit").__all__}


def unimported_modules(source: str) -> set[str]:
    """forgekit submodules reached as attributes (`forgekit.data.read_records`) that no
    import statement in the code loads: they only work when some other import happened to
    load them first."""
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            imported.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    missing = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            chain.insert(0, current.attr)
            current = current.value
        if not (isinstance(current, ast.Name) and current.id == "forgekit"):
            continue
        for i in range(1, len(chain) + 1):
            name = ".".join(["forgekit", *chain[:i]])
            if _is_module(name) and name not in imported and name not in ROOT_EXPORTS:
                missing.add(name)
    return missing


def test_the_import_check_catches_a_submodule_used_without_import():
    bad = "import forgekit\nfrom forgekit import evaluate\ndata = forgekit.data.read_records(p)\n"
    assert unimported_modules(bad) == {"forgekit.data"}
    good = "import forgekit\nfrom forgekit.data import read_records\nforgekit.data.write_records\n"
    assert unimported_modules(good) == set()
    assert unimported_modules("import forgekit.data.merge\nforgekit.data.merge.unify\n") == set()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_imports_every_forgekit_module_it_uses(path: Path):
    missing = unimported_modules(notebook_source(path))
    assert not missing, f"{path.name} uses {sorted(missing)} without importing it"
