"""The library never names a CLI flag in an error (issue 18), read from the source.

Library code names parameters in backticks (`` `split=all` ``, `` `holdout` ``); the CLI's
error printer (:func:`leafscope.cli.main.as_flags`) shows them as the running command's flags.
A literal ``--flag`` in a library message is wrong outside the CLI (the library is also called
from Python, and a command may not have that flag), so none may appear.

Scanned: every module of ``leafscope/`` except ``leafscope/cli/``; the message (first argument)
of every call of a name ending in ``Error`` (``raise InputError(...)``, ``return
DataFileError(...)``, ``ValueError(...)``) and of every ``warnings.warn(...)``. Its text is what
the source spells: string constants, the constant parts of f-strings (a replacement field reads
as ``{}``), ``+`` and ``%`` concatenation, ``"...".format(...)``, both branches of ``a if c else
b``, and a name (``msg``) assigned a string in the same function or at module level.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import leafscope

PACKAGE = Path(leafscope.__file__).parent
ROOT = PACKAGE.parent

#: A command-line flag: two dashes and a lower-case name, not inside a word (``x--y``) or a
#: longer run of dashes (``---``).
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

#: Violations tolerated for now: ``(file, stripped source line)``. This set may only shrink:
#: ``test_known_violations_still_occur`` fails once an entry no longer occurs, so the entry is
#: removed with the fix.
KNOWN: frozenset[tuple[str, str]] = frozenset()  # none left: every entry was fixed

#: Placeholder for a value computed at run time (an f-string field, a non-string operand).
FIELD = "{}"
#: Alternatives kept per message (``a if c else b`` and reassigned names multiply them).
MAX_ALTERNATIVES = 64

Segment = tuple[str, "ast.expr | None"]  # a piece of message text and the node it comes from


# ------------------------------------------------------------------------------------- scanner
class _Scopes(ast.NodeVisitor):
    """For every node, the innermost function (or the module) that holds it; and, per scope,
    the string-ish values assigned to each plain name."""

    def __init__(self, tree: ast.Module) -> None:
        self.scope_of: dict[ast.AST, ast.AST] = {}
        self.assigned: dict[tuple[ast.AST, str], list[ast.expr]] = {}
        self._stack: list[ast.AST] = [tree]
        self.visit(tree)

    def generic_visit(self, node: ast.AST) -> None:
        self.scope_of[node] = self._stack[-1]
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.assigned.setdefault((self._stack[-1], target.id), []).append(node.value)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            if isinstance(node.target, ast.Name) and node.value is not None:
                self.assigned.setdefault((self._stack[-1], node.target.id), []).append(node.value)
        elif isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List)):
            # for flag in ("a", "b") / for flag, value in (("a", x), ("b", y))
            for item in node.iter.elts:
                for name, value in _unpack(node.target, item):
                    self.assigned.setdefault((self._stack[-1], name), []).append(value)
        scoped = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if scoped:
            self._stack.append(node)
        super().generic_visit(node)
        if scoped:
            self._stack.pop()

    def values(self, name: ast.Name) -> list[ast.expr]:
        """What ``name`` is assigned in its own scope, else at module level."""
        scope = self.scope_of.get(name)
        found = self.assigned.get((scope, name.id), [])
        if not found and scope is not self._stack[0]:
            found = self.assigned.get((self._stack[0], name.id), [])
        return found


def _unpack(target: ast.expr, value: ast.expr) -> Iterator[tuple[str, ast.expr]]:
    """``(name, value)`` pairs of ``target = value`` for names and literal tuples."""
    if isinstance(target, ast.Name):
        yield target.id, value
    elif (
        isinstance(target, (ast.Tuple, ast.List))
        and isinstance(value, (ast.Tuple, ast.List))
        and len(target.elts) == len(value.elts)
    ):
        for sub_target, sub_value in zip(target.elts, value.elts, strict=True):
            yield from _unpack(sub_target, sub_value)


def _product(left: list[list[Segment]], right: list[list[Segment]]) -> list[list[Segment]]:
    return [a + b for a in left for b in right][:MAX_ALTERNATIVES]


def _texts(
    node: ast.expr, scopes: _Scopes, seen: frozenset[str] = frozenset()
) -> list[list[Segment]]:
    """The message ``node`` spells, as alternatives, each a list of segments."""
    if isinstance(node, ast.Constant):
        return [[(node.value, node)]] if isinstance(node.value, str) else [[(FIELD, None)]]
    if isinstance(node, ast.JoinedStr):
        # The constant parts (found in the f-string's lines); a field is the text of its
        # expression where that is a string (``f"...{fix}"``), else ``{}``.
        texts: list[list[Segment]] = [[]]
        for part in node.values:
            if isinstance(part, ast.Constant):
                texts = _product(texts, [[(part.value, node)]])
            elif (
                isinstance(part, ast.FormattedValue)
                and part.conversion == -1
                and not part.format_spec
            ):
                texts = _product(texts, _texts(part.value, scopes, seen))
            else:
                texts = _product(texts, [[(FIELD, None)]])
        return texts
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _product(_texts(node.left, scopes, seen), _texts(node.right, scopes, seen))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _texts(node.left, scopes, seen)
    if isinstance(node, ast.IfExp):
        return (_texts(node.body, scopes, seen) + _texts(node.orelse, scopes, seen))[
            :MAX_ALTERNATIVES
        ]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        return _texts(node.func.value, scopes, seen)
    if isinstance(node, ast.Name) and node.id not in seen:
        values = scopes.values(node)
        if values:
            texts: list[list[Segment]] = []
            for value in values:
                texts += _texts(value, scopes, seen | {node.id})
            return texts[:MAX_ALTERNATIVES]
    return [[(FIELD, None)]]


def _message_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """Calls of an ``...Error`` class and of ``warnings.warn`` (also ``warn`` imported from
    ``warnings``), that have a first argument."""
    warn_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "warnings"
        for alias in node.names
        if alias.name == "warn"
    }
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        is_warn = (
            isinstance(func, ast.Attribute)
            and func.attr == "warn"
            and isinstance(func.value, ast.Name)
            and func.value.id == "warnings"
        ) or (isinstance(func, ast.Name) and func.id in warn_names)
        if name.endswith("Error") or is_warn:
            yield node


def _line_of(flag: str, node: ast.expr | None, call: ast.Call, lines: list[str]) -> int:
    """The source line that spells ``flag``: within the string ``node`` (which may span several
    lines), else the call's first line."""
    if node is not None:
        pattern = re.compile(r"(?<![\w-])" + re.escape(flag) + r"(?![a-z0-9-])")
        for number in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            if pattern.search(lines[number - 1]):
                return number
        return node.lineno
    return call.lineno


def flags_in_messages(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, flag)`` for every CLI flag in a message of an error or warning in ``path``."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    lines = source.splitlines()
    scopes = _Scopes(tree)
    found: set[tuple[int, str]] = set()
    for call in _message_calls(tree):
        for segments in _texts(call.args[0], scopes):
            text = "".join(piece for piece, _ in segments)
            starts, position = [], 0
            for piece, _ in segments:
                starts.append(position)
                position += len(piece)
            for match in FLAG.finditer(text):
                index = max(i for i, start in enumerate(starts) if start <= match.start())
                line = _line_of(match.group(), segments[index][1], call, lines)
                found.add((line, match.group()))
    yield from sorted(found)


def library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts[:1])


def violations() -> list[tuple[str, int, str, str]]:
    """``(file, line, flag, stripped line)`` of every flag in a library message."""
    out = []
    for path in library_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        relative = path.relative_to(ROOT).as_posix()
        for line, flag in flags_in_messages(path):
            out.append((relative, line, flag, lines[line - 1].strip()))
    return out


# --------------------------------------------------------------------------------------- tests
def test_no_library_message_names_a_cli_flag():
    found = [v for v in violations() if (v[0], v[3]) not in KNOWN]
    assert not found, (
        "library errors and warnings name parameters (`name`, `name=value`), never flags; "
        "the CLI shows them as flags (leafscope.cli.main.as_flags):\n"
        + "\n".join(f"{file}:{line}: {flag}: {text}" for file, line, flag, text in found)
    )


def test_known_violations_still_occur():
    occurring = {(file, text) for file, _, _, text in violations()}
    stale = sorted(KNOWN - occurring)
    assert not stale, "fixed; remove from KNOWN:\n" + "\n".join(f"{f}: {t}" for f, t in stale)


# --------------------------------------------------------------------- the scanner's own tests
def _scan(tmp_path: Path, source: str) -> list[tuple[int, str]]:
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    return list(flags_in_messages(path))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('raise InputError("--layers must name a layer")', [(1, "--layers")]),
        ('raise ValueError(f"--points {n} exceeds {m}")', [(1, "--points")]),
        ('raise errors.DataFileError("use " "--split all")', [(1, "--split")]),
        ('raise X.CheckpointError("a" + "b --model c")', [(1, "--model")]),
        ('import warnings\nwarnings.warn("pass --grey", UserWarning)', [(2, "--grey")]),
        ('from warnings import warn\nwarn("pass --grey")', [(2, "--grey")]),
        ('raise InputError(\n    "first line "\n    "then --holdout F"\n)', [(3, "--holdout")]),
        ('def f():\n    msg = "set --seed"\n    raise InputError(msg)', [(2, "--seed")]),
        ('MSG = "set --seed"\ndef f():\n    raise InputError(MSG)', [(1, "--seed")]),
        ('raise InputError("a" if c else "set --seed")', [(1, "--seed")]),
        ('raise InputError("{} --seed".format(x))', [(1, "--seed")]),
        ('raise InputError("%s --seed" % x)', [(1, "--seed")]),
        ('fix = "pass --data-dir"\nraise InputError(f"missing. {fix}.")', [(1, "--data-dir")]),
        (
            'for f, v in (("--a", 1), ("--b", 2)):\n    raise InputError(f"{f} {v} bad")',
            [(1, "--a"), (1, "--b")],
        ),
        ('raise InputError(f"{n!r} --seed {x:>3}")', [(1, "--seed")]),
        ('return InputError("--seed")', [(1, "--seed")]),
        # not flags: arithmetic, a run of dashes, upper case, a value, other calls
        ('raise InputError("x--y and a---b and 3--4")', []),
        ('raise InputError(f"{a}--{b}")', []),
        ('raise InputError("----- or -- alone or --X")', []),
        ('raise InputError("use `split=all` or `holdout`")', []),
        ('print("--seed")\nlog.warning("--seed")\nraise InputError(x)', []),
        ('"""--seed in a docstring"""\n# --seed in a comment\nraise InputError("ok")', []),
    ],
)
def test_scanner(tmp_path: Path, source: str, expected: list[tuple[int, str]]):
    assert _scan(tmp_path, source) == expected
