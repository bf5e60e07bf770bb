"""Imports point down only: the core imports nothing of jobs, executors, the CLI or the API; nothing below the API
imports from it; the entry points (the CLI, the server) sit on top. Read from the source (every import, lazy ones
too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "service" / "cnnrelax"
#: The names every layer shares, below the core: the exception, the shared types, the value checks.
BASE = {"errors", "types", "validation"}
#: The numerical core, one subpackage (``cnnrelax.core``).
CORE = {"core"}
#: Layers from the bottom; a module may import its own layer and those below it.
LAYERS = [
    BASE,
    CORE,
    {"specs", "results", "datafiles", "dataset_files", "store", "settings", "log_format", "experiments", "export"},
    {"pricing"},  # prices specs (cnnrelax.specs, cnnrelax.experiments.specs) from calibrated data
    {"jobs", "certification", "warm_start", "constrained"},
    {"executors"},
    {"api"},
    {"cli", "server", "edge"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.startswith("cnnrelax.") else module
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: place it")


def _imports(path: Path) -> list[str]:
    """The cnnrelax modules ``path`` imports (relative imports resolved)."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(relative.parts if path.name == "__init__.py" else relative.parts[:-1])
    if path.name == "__init__.py":
        package = package[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "cnnrelax"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "cnnrelax":
                found.append(name)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_point_down(path: Path) -> None:
    own = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    if own == "cnnrelax":
        return  # the package's face re-exports the core
    level = _layer(own)
    for imported in _imports(path):
        if imported == "cnnrelax":
            assert level > 0, f"{own} imports the package's face"
            continue
        assert _layer(imported) <= level, f"{own} (layer {level}) imports {imported} (layer {_layer(imported)})"


# -- inside the store package: each module imports only those above it -------------------------------------------
#: The modules of ``cnnrelax.store`` from the bottom (the rows, ... the facade); ``__init__`` (the face) is last.
STORE_MODULES = ["records", "exceptions", "faults", "connection", "schema", "base", "events", "jobs", "datasets",
                 "uploads", "retention", "run_view", "facade", "__init__"]


@pytest.mark.parametrize("name", STORE_MODULES)
def test_store_modules_import_downward(name: str) -> None:
    path = PACKAGE / "store" / f"{name}.py"
    below = STORE_MODULES[: STORE_MODULES.index(name)]
    for imported in _imports(path):
        if imported.startswith("cnnrelax.store"):
            inner = imported.removeprefix("cnnrelax.store").lstrip(".")
            assert inner in below, f"cnnrelax.store.{name} imports {imported}, not below it in STORE_MODULES"
    assert sorted(STORE_MODULES) == sorted(p.stem for p in (PACKAGE / "store").glob("*.py")), "place every module"
