"""Layering of the package, read from the source (every import, also those inside functions and
the dynamic ``import_module`` ones).

The packages sit in layers, low to high; a package may import its own layer and the layers
below, never one above (checked pair by pair: one test per (package, forbidden package), so a
failure names the pair, the file and the line). The math core (``information``) imports only
the standard library, torch, numpy, tqdm and the lowest layer. Only the report and the commands
import matplotlib. Violations that exist today are listed in ``KNOWN_VIOLATIONS``; that list may
only shrink (a test fails when an entry no longer occurs, so it is removed with the fix).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import leafscope

PACKAGE = Path(leafscope.__file__).parent
ROOT = PACKAGE.parent

#: Low to high. A name is a subpackage (``leafscope/nnk/``) or a top-level module
#: (``leafscope/io.py``). Same-layer imports are allowed.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "dtypes", "io"),
    ("information",),  # the math core
    ("models", "data", "testing"),
    ("foliation", "geometry", "applications", "thermo", "nnk", "training"),
    ("tasks",),
    ("execution",),
    ("report", "cli", "experiments", "demo"),
)
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}

#: Third-party packages the math core may import (what it imports today; nothing else may join
#: without changing this line): torch, numpy, and tqdm for the progress bar of point_spectra.
INFORMATION_THIRD_PARTY = frozenset({"torch", "numpy", "tqdm"})
INFORMATION_LEAFSCOPE = frozenset({"information", "errors", "dtypes"})

#: Imports that break the layering today: (file, imported module). Tolerated until fixed, and
#: only until then: ``test_known_violations_still_occur`` fails once an entry is gone.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

#: Same-layer rules that are stricter than the layering.
OUTER_RULES = {
    "experiments": ("leafscope.cli", "leafscope.report", "leafscope.demo", "matplotlib"),
    "report": ("leafscope.cli",),
    "demo": ("leafscope.cli",),
}
PLOTTING = ("report", "cli")


# ------------------------------------------------------------------------------------- scanner
def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[str, int]]:
    """``(module, line)`` of every import in the file: ``import a.b`` gives ``a.b``, ``from
    a.b import c`` gives ``a.b`` (``from leafscope import nnk``: ``leafscope.nnk``),
    relative imports are resolved against the folder ``root`` that holds the package, and
    ``import_module("...")`` / ``__import__("...")`` with a constant (or f-string head) count."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base == "leafscope":  # from leafscope import nnk: the subpackage is the target
                for alias in node.names:
                    yield f"{base}.{alias.name}", node.lineno
            else:
                yield base, node.lineno
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value, node.lineno
            elif isinstance(arg, ast.JoinedStr) and arg.values:  # f"leafscope.cli.{name}"
                head = arg.values[0]
                if isinstance(head, ast.Constant):
                    yield str(head.value).rstrip("."), node.lineno


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in ("import_module", "__import__") and bool(node.args)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _part(name: str) -> str | None:
    """The layer name of a module ``leafscope.<part>...`` (None for ``leafscope`` itself, its
    ``__version__`` and anything outside the package)."""
    parts = name.split(".")
    if parts[0] != "leafscope" or len(parts) < 2 or parts[1].startswith("__"):
        return None
    return parts[1]


def _files_of(part: str) -> list[Path]:
    """The source files of a layer name (a subpackage or a top-level module); [] if absent."""
    folder, module = PACKAGE / part, PACKAGE / f"{part}.py"
    if folder.is_dir():
        return sorted(folder.rglob("*.py"))
    return [module] if module.is_file() else []


def _files(*parts: str) -> list[Path]:
    return sorted(PACKAGE.joinpath(*parts).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _violations(part: str, forbidden: str) -> list[tuple[str, str, int]]:
    """``(file, module, line)`` of every import of ``forbidden`` by ``part``."""
    return [
        (_rel(path), name, line)
        for path in _files_of(part)
        for name, line in imports(path)
        if _part(name) == forbidden
    ]


# --------------------------------------------------------------------------------------- tests
def test_every_package_has_a_layer():
    found = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    found.discard("__init__")
    missing = sorted(found - set(LAYER_OF))
    assert not missing, f"new package(s) or module(s) {missing}: give them a layer in LAYERS"


def test_the_scan_sees_lazy_and_dynamic_imports():
    # an import inside a function body, with its line, and a dynamic one
    task_nnk = dict(imports(PACKAGE / "tasks" / "nnk.py"))
    assert any(_within(n, ("leafscope.nnk.geometry",)) for n in task_nnk)
    assert "leafscope.cli" in {n for n, _ in imports(PACKAGE / "cli" / "main.py")}
    line = next(line for n, line in imports(PACKAGE / "tasks" / "nnk.py") if "training" in n)
    text = (PACKAGE / "tasks" / "nnk.py").read_text().splitlines()[line - 1]
    assert text.startswith("        ") and "leafscope.training" in text  # inside a function


def _upward_pairs() -> list[tuple[str, str]]:
    return [
        (low, high)
        for low, level in LAYER_OF.items()
        for high, above in LAYER_OF.items()
        if above > level
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [pytest.param(low, high, id=f"{low}-imports-{high}") for low, high in _upward_pairs()],
)
def test_no_import_from_a_higher_layer(package, forbidden):
    if not _files_of(package):
        pytest.skip(f"leafscope.{package} does not exist in this checkout")
    bad = [v for v in _violations(package, forbidden) if v[:2] not in KNOWN_VIOLATIONS]
    lines = [f"{file}:{line} imports {name}" for file, name, line in bad]
    assert not bad, (
        f"leafscope.{package} (layer {LAYER_OF[package]}) may not import leafscope.{forbidden} "
        f"(layer {LAYER_OF[forbidden]}):\n" + "\n".join(lines)
    )


def test_known_violations_still_occur():
    """The list can only shrink: an entry that no longer occurs (fixed) must be removed."""
    seen = set()
    for package, forbidden in _upward_pairs():
        seen.update(v[:2] for v in _violations(package, forbidden))
    gone = sorted(KNOWN_VIOLATIONS - seen)
    assert not gone, f"fixed: remove these entries from KNOWN_VIOLATIONS: {gone}"


def test_the_math_core_imports_only_torch_numpy_tqdm_and_the_lowest_layer():
    bad = []
    for path in _files_of("information"):
        for name, line in imports(path):
            top = name.split(".")[0]
            if top == "leafscope":
                ok = _part(name) in INFORMATION_LEAFSCOPE or (_rel(path), name) in KNOWN_VIOLATIONS
            else:
                ok = top in sys.stdlib_module_names or top in INFORMATION_THIRD_PARTY
            if not ok:
                bad.append(f"{_rel(path)}:{line} imports {name}")
    assert not bad, "the math core imports more than it may:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", sorted(OUTER_RULES))
def test_outer_layers_keep_their_own_order(package):
    """The experiments import neither the report nor the commands nor matplotlib; the report
    and the demo never import the commands."""
    bad = [
        f"{_rel(path)}:{line} imports {name}"
        for path in _files_of(package)
        for name, line in imports(path)
        if _within(name, OUTER_RULES[package])
    ]
    assert not bad, "\n".join(bad)


def test_matplotlib_only_under_report_and_cli():
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(_within(n, ("matplotlib",)) for n, _ in imports(p))
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
        "from leafscope import execution\n"
        "def f():\n"
        "    import matplotlib.pyplot as plt\n"
        "    from leafscope.experiments.nnk import run_geometry\n"
        "    importlib.import_module(f'leafscope.cli.{name}')\n"
    )
    found = set(imports(src, root=tmp_path))
    assert found == {
        ("leafscope.nnk", 1),
        ("leafscope.report", 2),
        ("leafscope.execution", 3),
        ("matplotlib.pyplot", 5),
        ("leafscope.experiments.nnk", 6),
        ("leafscope.cli", 7),
    }
    parts = {_part(n) for n, _ in found}
    assert parts == {"nnk", "report", "execution", None, "experiments", "cli"}
