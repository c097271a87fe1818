"""A self-contained HTML page: inline CSS, images as data: URIs, no script, no network.

Every piece of text goes through `esc` (html.escape), so a class name or a metric
definition can never inject markup. The only raw markup accepted from elsewhere is an
SVG diagram drawn by dentpy itself (`raw_svg`), checked to hold no script or link.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --accent: #0b5cad; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
  color: var(--ink); margin: 0; line-height: 1.45; font-size: 15px; background: #fff; }
header { background: #12324f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #d8e3ee; }
main { max-width: 1320px; margin: 0 auto; padding: 8px 32px 48px 32px; }
nav.toc { border: 1px solid var(--line); background: var(--soft); padding: 8px 16px;
  margin: 16px 0; border-radius: 6px; }
nav.toc ol { margin: 4px 0; padding-left: 22px; columns: 2; }
nav.toc a { color: var(--accent); text-decoration: none; }
section { border-top: 2px solid var(--line); padding-top: 6px; margin-top: 26px; }
h2 { font-size: 20px; margin: 8px 0; }
h3 { font-size: 16px; margin: 18px 0 6px 0; }
p.note, p.caption, figcaption { color: var(--muted); font-size: 13px; }
p.lead { font-size: 16px; }
.placeholder { border: 1px dashed var(--warn); color: var(--warn); padding: 10px; }
.tablewrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 6px 0 10px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: right;
  vertical-align: top; }
th { background: var(--soft); }
td:first-child, th:first-child { text-align: left; }
td:first-child { white-space: normal; min-width: 8em; }
td { white-space: nowrap; }
td.text { text-align: left; white-space: normal; min-width: 8em; }
tr.baseline td { color: var(--muted); }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 12px;
  padding-top: 3px; }
dl.spec { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px;
  margin: 4px 0 10px 0; font-size: 13px; }
dl.spec dt { font-weight: 600; }
dl.spec dd { margin: 0; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr));
  gap: 12px 24px; }
.flow { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
figure { margin: 8px 0 14px 0; }
figure.narrow img { max-width: 760px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.diagram svg { max-width: 100%; height: auto; }
details { margin: 6px 0; }
details summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); border: 1px solid var(--line); padding: 8px; overflow-x: auto;
  font-size: 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 30px; }
"""

# Only dentpy's own diagram is embedded raw; it must not be able to run or fetch anything.
_FORBIDDEN_IN_SVG = re.compile(
    r"<\s*script|<\s*foreignObject|\bon\w+\s*=|(?:href|src)\s*=\s*[\"']\s*(?!#)", re.IGNORECASE
)


def esc(value: Any) -> str:
    """Text (any value) as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(figure: Any, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def image(png: bytes, alt: str, caption: str | None = None, narrow: bool = False) -> str:
    """A <figure> holding one PNG as a data: URI (`narrow`: at most 760 px wide)."""
    text = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    css = ' class="narrow"' if narrow else ""
    return f'<figure{css}><img src="{png_data_uri(png)}" alt="{esc(alt)}">{text}</figure>'


def raw_svg(svg: str, caption: str | None = None) -> str:
    """dentpy's own SVG diagram, inline; refused if it could run script or load anything."""
    body = svg.strip()
    if body.startswith("<?xml"):
        body = body[body.index("?>") + 2 :].strip()
    if not body.startswith("<svg") or _FORBIDDEN_IN_SVG.search(body):
        raise ValueError("the pipeline diagram is not a plain inline SVG")
    text = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="diagram">{body}{text}</figure>'


def paragraph(text: str, css_class: str | None = None) -> str:
    attr = f' class="{css_class}"' if css_class else ""
    return f"<p{attr}>{esc(text)}</p>"


def heading(text: str) -> str:
    return f"<h3>{esc(text)}</h3>"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    caption: str | None = None,
    row_classes: Sequence[str | None] | None = None,
) -> str:
    """A table of escaped cells. Cells that are not numbers-as-text are left-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if row_classes and index < len(row_classes) else None
        cells = "".join(
            f"<td>{_cell(c)}</td>" if _numeric(c) or i == 0 else f'<td class="text">{_cell(c)}</td>'
            for i, c in enumerate(row)
        )
        attr = f' class="{css}"' if css else ""
        body.append(f"<tr{attr}>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f'<div class="tablewrap"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _cell(cell: Any) -> str:
    """A tuple cell is several lines (e.g. a value and its confidence interval)."""
    if isinstance(cell, tuple):
        return "<br>".join(esc(part) for part in cell)
    return esc(cell)


_NUMBER = re.compile(r"^[-+]?\d[\d.,]*(e[-+]?\d+)?(\s*(%|±|/|×|\[|s\b|mm).*)?$")


def _numeric(cell: Any) -> bool:
    """Numbers (with their ±, %, ranges) are right-aligned; words are not."""
    text = str(cell[0] if isinstance(cell, tuple) and cell else cell).strip()
    return bool(_NUMBER.match(text)) or text in ("-", "undefined", "n/a")


def definition_list(items: Iterable[tuple[str, Any]]) -> str:
    parts = [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items]
    return f'<dl class="spec">{"".join(parts)}</dl>'


def details(summary: str, body_html: str) -> str:
    """A collapsed block; `body_html` must already be escaped markup."""
    return f"<details><summary>{esc(summary)}</summary>{body_html}</details>"


def preformatted(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def grid(parts: Iterable[str]) -> str:
    """Equal columns (for figures)."""
    return f'<div class="grid2">{"".join(parts)}</div>'


def flow(parts: Iterable[str]) -> str:
    """Blocks side by side at their natural width, wrapping (for tables)."""
    return f'<div class="flow">{"".join(parts)}</div>'


@dataclass
class Section:
    """One part of the report: `anchor` is its stable id (tests and links rely on it)."""

    anchor: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *markup: str) -> Section:
        self.parts.extend(markup)
        return self

    def render(self) -> str:
        return (
            f'<section id="{esc(self.anchor)}"><h2>{esc(self.title)}</h2>'
            f"{''.join(self.parts)}</section>"
        )


def page(title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    """The whole document: header, table of contents, sections, footer."""
    toc = "".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>' for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network, no script: a browser following this policy can fetch nothing.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>"
        f'<nav class="toc" id="contents"><strong>Contents</strong><ol>{toc}</ol></nav>'
        f"{''.join(s.render() for s in sections)}"
        f"<footer>{esc(footer)}</footer></main></body></html>\n"
    )
