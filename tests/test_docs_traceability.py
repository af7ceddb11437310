"""Every number in README.md and docs/results.md sits next to its command (issue 14, item 6).

A cheap heuristic, not a proof: a line holding a percentage or a decimal result must lie in a
section (the text under one heading) that shows a command, either a line of a code block or an
inline code span starting with ``leafscope `` or ``python `` (``PYTHONPATH=.`` allowed before it).
Numbers inside code (arguments, paths, shapes) and version strings are not results. The README's
OOD sentence is also checked against the committed table it quotes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_COMMAND = re.compile(r"^(?:PYTHONPATH=\S+\s+)?(?:\S*/)?(?:leafscope|python)\s")
_RESULT = re.compile(r"(?<![\w.])(?:\d+(?:\.\d+)?\s?%|\d*\.\d+)(?![\w.])")
_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)
_INDENTED = re.compile(r"(?:(?<=\n\n)|^)(?: {4}.*(?:\n|$))+")
_INLINE = re.compile(r"`([^`]*)`")
_NOT_RESULTS = (
    re.compile(r"(?:Python|torch|version)\s*(?:≥|>=|==)?\s*\d+(?:\.\d+)+"),
    re.compile(r"\b\d+(?:\.\d+){2,}\b"),  # IP addresses, x.y.z versions
)


def _blank(match: re.Match[str]) -> str:
    """Replace a code span or block by spaces, keeping its line breaks."""
    return re.sub(r"[^\n]", " ", match.group(0))


def sections(text: str) -> list[tuple[str, str, list[str]]]:
    """Split markdown at its headings.

    Args:
        text: the markdown source.

    Returns:
        One ``(heading, prose, commands)`` per heading (the text before the first heading has
        heading ""): the prose with code blanked out, and the section's code lines and spans.
    """
    out = []
    for part in re.split(r"^(?=#{1,6} )", text, flags=re.MULTILINE):
        heading, _, body = part.partition("\n") if part.startswith("#") else ("", "", part)
        body = "\n" + body  # an indented block right under the heading starts after a blank line
        blocks = [m.group(0) for m in _FENCE.finditer(body)]
        body = _FENCE.sub(_blank, body)
        blocks += [m.group(0) for m in _INDENTED.finditer(body)]
        body = _INDENTED.sub(_blank, body)
        commands = [line.strip() for b in blocks for line in b.splitlines()]
        commands += [" ".join(m.group(1).split()) for m in _INLINE.finditer(body)]
        prose = _INLINE.sub(_blank, body)
        for pattern in _NOT_RESULTS:
            prose = pattern.sub(_blank, prose)
        out.append((heading.lstrip("#").strip(), prose, commands))
    return out


def untraced_lines(text: str) -> list[str]:
    """The prose lines with a result number in a section that shows no command.

    Args:
        text: the markdown source.

    Returns:
        ``"heading: line"`` for every offending line; empty when every number is traced.
    """
    bad = []
    for heading, prose, commands in sections(text):
        if any(_COMMAND.match(c) for c in commands):
            continue
        bad.extend(
            f"{heading}: {line.strip()}" for line in prose.splitlines() if _RESULT.search(line)
        )
    return bad


def test_the_heuristic_flags_a_number_without_a_command() -> None:
    doc = "# A\n\nThe detector scores 0.97 AUROC.\n\n## B\n\nIt keeps 95% accuracy.\n"
    assert untraced_lines(doc) == [
        "A: The detector scores 0.97 AUROC.",
        "B: It keeps 95% accuracy.",
    ]
    assert untraced_lines("# E\n\nRank 9 at step 844; `--lr 0.1` keeps 62.5%.\n") == [
        "E: Rank 9 at step 844;            keeps 62.5%."
    ]


def test_the_heuristic_accepts_commands_and_ignores_code_and_versions() -> None:
    doc = (
        "# A\n\nAUROC 0.97 (`leafscope ood --points 500 --json o.json`).\n"
        "# B\n\n```\npython -m x --lr 0.01\n```\nr = 0.98 over the epochs.\n"
        "# C\n\nPython ≥ 3.10, `torch==2.13.0`, `--lr 0.05`, bound to 127.0.0.1 only.\n"
        "# D\n\nSpread over lines: `leafscope thermo lenet\n  --lr 0.01` gives 62.5%.\n"
        "# F\n\nIndented:\n\n    PYTHONPATH=. python bench/b.py --points 20\n\n"
        "7.41 s for 20 points.\n"
    )
    assert untraced_lines(doc) == []


def test_every_readme_number_sits_beside_its_command() -> None:
    bad = untraced_lines((ROOT / "README.md").read_text())
    assert not bad, "README lines with a result but no command in their section:\n" + "\n".join(bad)


def test_every_results_number_sits_beside_its_command() -> None:
    bad = untraced_lines((ROOT / "docs/results.md").read_text())
    assert not bad, "docs/results.md lines with a result but no command:\n" + "\n".join(bad)


_NAMES = {"energy": "energy", "maxlogit": "MaxLogit", "msp": "MSP", "vim": "ViM", "react": "ReAct"}
_NAMES |= {"knn": "k-NN", "mahalanobis": "Mahalanobis", "mahalanobis-lw": "Mahalanobis-LW"}
_OUT_NAMES = {"fashion-mnist": "Fashion-MNIST", "rotated-90": "rotated MNIST"}


def test_the_readme_ood_sentence_matches_the_committed_table() -> None:
    """The README quotes docs/figures/ood_protocol.json: its winners, and no leaf-based win."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    rows = json.loads((ROOT / "docs/figures/ood_protocol.json").read_text())["table"]
    by_pair: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        by_pair.setdefault((r["setting"], r["out_dataset"]), {})[r["detector"]] = r["auroc"]
    gap = 0.0
    for (setting, out), scores in by_pair.items():
        leaf = max(v for k, v in scores.items() if k.startswith("leaf"))
        base = max(v for k, v in scores.items() if not k.startswith("leaf"))
        if "no leaf-based win" in readme.lower():
            assert leaf <= base + 0.005, f"{setting}/{out}: leaf {leaf:.3f} beats {base:.3f}"
        gap = max(gap, abs(scores["leaf-distance"] - scores["pixel-nn"]))
        if setting == "converged" and out in _OUT_NAMES:
            name, auroc = max(
                ((k, v) for k, v in scores.items() if not k.startswith("leaf")),
                key=lambda kv: kv[1],
            )
            quoted = f"{_NAMES.get(name, name)} ({auroc:.3f}"
            assert quoted in readme and _OUT_NAMES[out] in readme, quoted
    bound = math.ceil(gap * 1000 - 1e-9) / 1000
    assert f"within {bound:.3f} AUROC of pixel-NN" in readme, bound
