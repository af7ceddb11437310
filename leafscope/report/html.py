"""A self-contained HTML report: sections of text, tables and figures (PNG embedded as base64,
also written as ``figures/NAME`` beside the page, and linked from it, so they can be reused)."""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from leafscope.errors import InputError
from leafscope.io import atomic_write_bytes, atomic_write_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #2a6; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
.meta { color: #666; font-size: .85em; }
figcaption a { color: #2a6; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
"""


FIGURES_DIR = "figures"  # folder of the PNG files, beside the page


@dataclass
class Section:
    """One titled part of the report; items are rendered in the order they were added."""

    title: str
    items: list[str] = field(default_factory=list)

    def text(self, paragraph: str) -> Section:
        """Add a paragraph (plain text, escaped)."""
        self.items.append(f"<p>{html.escape(paragraph)}</p>")
        return self

    def code(self, text: str) -> Section:
        self.items.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def table(self, header: list[str], rows: list[list], caption: str | None = None) -> Section:
        """Add a table; floats are shown with 4 significant digits."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.items.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")
        return self

    def figure(self, fig: Figure, name: str, caption: str = "") -> Section:
        """Add a matplotlib figure (closed afterwards); ``name`` is its PNG file name.

        Raises:
            InputError: ``name`` is not a plain file name ending in ``.png``.
        """
        if not name.endswith(".png") or Path(name).name != name or name.startswith("."):
            plt.close(fig)
            raise InputError(f"figure name {name!r} must be a plain file name like 'curve.png'")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.items.append(_FigureItem(name, buf.getvalue(), caption))  # type: ignore[arg-type]
        return self


@dataclass
class _FigureItem:
    name: str
    png: bytes
    caption: str

    def render(self) -> str:
        """The embedded image, its caption and a link to ``figures/NAME``."""
        data = base64.b64encode(self.png).decode("ascii")
        href = html.escape(f"{FIGURES_DIR}/{self.name}", quote=True)
        link = f'<a href="{href}">{html.escape(self.name)}</a>'
        cap = f"{html.escape(self.caption)} " if self.caption else ""
        img = f'<img alt="{html.escape(self.name)}" src="data:image/png;base64,{data}">'
        return f"<figure>{img}<figcaption>{cap}[{link}]</figcaption></figure>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Report:
    """An HTML page made of :class:`Section` objects.

    Examples:
        >>> import tempfile
        >>> from matplotlib.figure import Figure
        >>> fig = Figure()
        >>> _ = fig.add_subplot().plot([0, 1, 2], [1.0, 0.5, 0.2])
        >>> report = Report("leafscope demo")
        >>> _ = report.section("Training").text("LeNet on MNIST").figure(fig, "curve.png")
        >>> with tempfile.TemporaryDirectory() as out:  # out/report.html, out/figures/*.png
        ...     page = report.write(out)
        ...     page.name, [f.name for f in (page.parent / "figures").iterdir()]
        ('report.html', ['curve.png'])
    """

    def __init__(self, title: str, meta: str = ""):
        self.title = title
        self.meta = meta
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        if self.meta:
            parts.append(f"<p class='meta'>{html.escape(self.meta)}</p>")
        if len(self.sections) > 1:
            parts.append("<ol>")
            for i, sec in enumerate(self.sections):
                parts.append(f"<li><a href='#s{i}'>{html.escape(sec.title)}</a></li>")
            parts.append("</ol>")
        for i, sec in enumerate(self.sections):
            parts.append(f"<h2 id='s{i}'>{html.escape(sec.title)}</h2>")
            for item in sec.items:
                parts.append(item.render() if isinstance(item, _FigureItem) else item)
        parts.append("</body></html>")
        return "\n".join(parts)

    def figure_names(self) -> list[str]:
        """The PNG file names of every figure, in page order."""
        return [i.name for s in self.sections for i in s.items if isinstance(i, _FigureItem)]

    def write(self, out_dir: str | os.PathLike, name: str = "report.html") -> Path:
        """Write each figure as ``out_dir/figures/NAME`` and then the page, all atomically with
        the process's usual permissions (``0o666`` minus the umask: 0644 under umask 022).

        Raises:
            InputError: two figures share a file name (one would overwrite the other).
        """
        names = self.figure_names()
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"figure names used twice: {twice}: give each figure its own name")
        out = Path(out_dir)
        (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
        for sec in self.sections:
            for item in sec.items:
                if isinstance(item, _FigureItem):
                    atomic_write_bytes(out / FIGURES_DIR / item.name, item.png)
        return atomic_write_text(out / name, self.render())
