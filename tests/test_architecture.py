"""Layering of the package, read from the source (every import, also those inside functions):
the algorithms never import the experiments, the report, the demo or the commands, and only the
report and the commands import matplotlib."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import leafscope

PACKAGE = Path(leafscope.__file__).parent
ALGORITHMS = (
    "information",
    "foliation",
    "applications",
    "thermo",
    "nnk",
    "data",
    "models",
    "training",
    "testing",
    "execution",
)
OUTER = ("leafscope.cli", "leafscope.report", "leafscope.demo", "leafscope.experiments")
PLOTTING = ("report", "cli")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Absolute names of every module imported anywhere in the file (relative ones resolved
    against the folder ``root`` that holds the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values:  # f"leafscope.cli.{name}"
                head = arg.values[0]
                if isinstance(head, ast.Constant):
                    names.add(str(head.value).rstrip("."))
    return names


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in ("import_module", "__import__") and bool(node.args)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _files(*parts: str) -> list[Path]:
    return sorted(PACKAGE.joinpath(*parts).rglob("*.py"))


def _lower_layer_files() -> list[Path]:
    top = [p for p in PACKAGE.glob("*.py") if p.name != "demo.py"]
    return sorted(top) + [f for pkg in ALGORITHMS for f in _files(pkg)]


def test_the_scan_sees_every_module_and_lazy_imports():
    every = {p.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py")}
    known = set(ALGORITHMS) | {"experiments", *PLOTTING}
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert every - top <= known, f"new package(s) {every - top - known}: add them to this test"
    # the scanner finds an import inside a function body and a dynamic one
    assert "leafscope.nnk.geometry" in imported_modules(PACKAGE / "tasks" / "nnk.py")
    assert "leafscope.cli" in imported_modules(PACKAGE / "cli" / "main.py")


@pytest.mark.parametrize(
    "path", _lower_layer_files(), ids=lambda p: str(p.relative_to(PACKAGE.parent))
)
def test_algorithms_import_no_outer_layer_and_no_matplotlib(path):
    bad = sorted(
        n for n in imported_modules(path) if _within(n, OUTER) or _within(n, ("matplotlib",))
    )
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"


@pytest.mark.parametrize(
    "path", _files("experiments"), ids=lambda p: str(p.relative_to(PACKAGE.parent))
)
def test_experiments_import_neither_report_nor_commands_nor_matplotlib(path):
    outer = ("leafscope.cli", "leafscope.report", "leafscope.demo", "matplotlib")
    bad = sorted(n for n in imported_modules(path) if _within(n, outer))
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"


def test_report_and_demo_never_import_the_commands():
    for path in [*_files("report"), PACKAGE / "demo.py"]:
        bad = sorted(n for n in imported_modules(path) if _within(n, ("leafscope.cli",)))
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"


def test_matplotlib_only_under_report_and_cli():
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(_within(n, ("matplotlib",)) for n in imported_modules(p))
    }
    outside = sorted(u for u in users if Path(u).parts[0] not in PLOTTING)
    assert not outside, f"matplotlib imported outside report/ and cli/: {outside}"
    assert "report/save.py" in users  # the scan does see matplotlib where it is used


def test_scanner_resolves_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / "leafscope" / "nnk"
    pkg.mkdir(parents=True)
    src = pkg / "mod.py"
    src.write_text(
        "from . import graph\n"
        "from ..report import figures\n"
        "def f():\n"
        "    import matplotlib.pyplot as plt\n"
        "    from leafscope.experiments.nnk import run_geometry\n"
    )
    names = imported_modules(src, root=tmp_path)
    assert {"leafscope.nnk.graph", "leafscope.report.figures", "matplotlib.pyplot"} <= names
    assert "leafscope.experiments.nnk.run_geometry" in names
