"""The pipeline of `dentpy.describe` drawn as a self-contained SVG.

Boxes run left to right in rows (wrapping to fit a report page), joined by arrows; each box
holds the stage's bold title, its detail lines wrapped to the box, and the shape of what
it hands on in a monospace band. Colours mark the kind of step (legend at the bottom);
training-only stages have a dashed border. No external fonts, links, scripts or ids, so
the SVG can be embedded several times in one HTML page; the same pipeline always gives
the same bytes.
"""

from __future__ import annotations

from itertools import pairwise
from xml.sax.saxutils import escape, quoteattr

from dentpy.describe import Pipeline
from dentpy.report.diagram_layout import Metrics, Placed, box_text, place, text_width, wrap

SANS = "'DejaVu Sans', Verdana, Arial, Helvetica, sans-serif"
MONO = "'DejaVu Sans Mono', Menlo, Consolas, 'Courier New', monospace"
INK = "#1a1a1a"
MUTED = "#4a4a4a"
ARROW = "#555555"
# kind -> (fill, border/title colour, legend label)
KIND_STYLE: dict[str, tuple[str, str, str]] = {
    "data": ("#e8f1fb", "#2f6db3", "data in / out"),
    "transform": ("#ebf6ec", "#2e7d32", "transform"),
    "network": ("#fdf0e1", "#b85c00", "network"),
    "training": ("#f3edf9", "#6a3fa0", "training only (dashed)"),
    "evaluation": ("#fbeaea", "#a83232", "evaluation"),
}


def _num(value: float) -> str:
    """Coordinates with at most one decimal, so output is stable across platforms."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text(x: float, y: float, content: str, size: int, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}"{extra}>{escape(content)}</text>'


def _box(placed: Placed, kind: str, dashed: bool, number: int, m: Metrics) -> list[str]:
    fill, border, _ = KIND_STYLE.get(kind, KIND_STYLE["transform"])
    dash = ' stroke-dasharray="7 4"' if dashed else ""
    x, y, w, h = placed.x, placed.y, placed.width, placed.height
    parts = [
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="8" '
        f'fill="{fill}" stroke="{border}" stroke-width="1.6"{dash}/>'
    ]
    text = placed.text
    left = x + m.padding
    title_line = m.line_height(m.stage_title_size)
    for index, line in enumerate(text.title):
        shown = f"{number}  {line}" if index == 0 else line
        baseline = y + m.padding + index * title_line + m.stage_title_size
        parts.append(
            _text(left, baseline, shown, m.stage_title_size, font_weight="bold", fill=border)
        )
    top = y + m.padding + len(text.title) * title_line + 6
    detail_line = m.line_height(m.detail_size)
    bullet = text_width("• ", m.detail_size)
    row = 0
    for lines in text.details:
        for index, line in enumerate(lines):
            baseline = top + row * detail_line + m.detail_size
            if index == 0:
                parts.append(_text(left, baseline, "•", m.detail_size, fill=border))
            parts.append(_text(left + bullet, baseline, line, m.detail_size, fill=INK))
            row += 1
    if text.shape:
        band_height = len(text.shape) * m.line_height(m.shape_size) + 10
        band_y = y + h - m.padding - band_height + 4
        parts.append(
            f'<rect x="{_num(left - 4)}" y="{_num(band_y)}" width="{_num(w - 2 * m.padding + 8)}"'
            f' height="{_num(band_height)}" rx="4" fill="#ffffff" stroke="{border}"'
            ' stroke-opacity="0.35"/>'
        )
        shape_y = band_y + 5 + m.shape_size
        for line in text.shape:
            parts.append(_text(left, shape_y, line, m.shape_size, font_family=MONO, fill=INK))
            shape_y += m.line_height(m.shape_size)
    return parts


def _arrow_head(x: float, y: float, direction: str) -> str:
    size = 7.0
    if direction == "right":
        points = [(x, y), (x - size * 1.4, y - size), (x - size * 1.4, y + size)]
    else:  # down
        points = [(x, y), (x - size, y - size * 1.4), (x + size, y - size * 1.4)]
    shown = " ".join(f"{_num(px)},{_num(py)}" for px, py in points)
    return f'<polygon points="{shown}" fill="{ARROW}"/>'


def _arrow(a: Placed, b: Placed, m: Metrics) -> list[str]:
    """From one box to the next: straight across a row, or an elbow down to the next row."""
    style = f'fill="none" stroke="{ARROW}" stroke-width="2"'
    if abs(a.y - b.y) < 1e-6:
        y = a.y + min(a.height, b.height) / 2
        start, end = a.x + a.width + 3, b.x - 3
        return [
            f'<path d="M{_num(start)} {_num(y)} H{_num(end - 8)}" {style}/>',
            _arrow_head(end, y, "right"),
        ]
    start_y = a.y + a.height + 3
    middle = a.y + a.height + m.row_gap / 2
    end_y = b.y - 3
    return [
        f'<path d="M{_num(a.centre_x)} {_num(start_y)} V{_num(middle)} H{_num(b.centre_x)} '
        f'V{_num(end_y - 8)}" {style}/>',
        _arrow_head(b.centre_x, end_y, "down"),
    ]


def _legend(y: float, m: Metrics) -> tuple[list[str], float]:
    parts: list[str] = []
    x = float(m.margin)
    for fill, border, label in KIND_STYLE.values():
        width = 22 + 8 + text_width(label, m.legend_size) + 22
        if x + width > m.width - m.margin:
            x = float(m.margin)
            y += m.line_height(m.legend_size) + 8
        dash = ' stroke-dasharray="5 3"' if "dashed" in label else ""
        parts.append(
            f'<rect x="{_num(x)}" y="{_num(y - m.legend_size + 1)}" width="22" '
            f'height="{m.legend_size + 2}" rx="3" fill="{fill}" stroke="{border}"{dash}/>'
        )
        parts.append(_text(x + 30, y + 1, label, m.legend_size, fill=MUTED))
        x += width
    return parts, y


def pipeline_svg(pipeline: Pipeline, metrics: Metrics | None = None) -> str:
    """A standalone SVG document (str) of `pipeline`; deterministic for equal input."""
    m = metrics or Metrics()
    header: list[str] = []
    y = m.margin + m.title_size * 0.95
    for line in wrap(pipeline.title, m.width - 2 * m.margin, m.title_size, bold=True):
        header.append(_text(m.margin, y, line, m.title_size, font_weight="bold", fill=INK))
        y += m.line_height(m.title_size)
    for line in wrap(pipeline.subtitle, m.width - 2 * m.margin, m.subtitle_size):
        header.append(_text(m.margin, y, line, m.subtitle_size, fill=MUTED))
        y += m.line_height(m.subtitle_size)
    texts = [box_text(s.title, s.details, s.shape, m) for s in pipeline.stages]
    placed, bottom = place(texts, y + 10, m)
    body: list[str] = []
    for index, (stage, box) in enumerate(zip(pipeline.stages, placed, strict=True)):
        body += _box(box, stage.kind, stage.training_only, index + 1, m)
    arrows: list[str] = []
    for a, b in pairwise(placed):
        arrows += _arrow(a, b, m)
    legend, legend_y = _legend(bottom + 28, m)
    height = int(legend_y + m.margin)
    label = quoteattr(f"{pipeline.title}: {pipeline.subtitle}")
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{m.width}" height="{height}" '
            f'viewBox="0 0 {m.width} {height}" role="img" aria-label={label}>',
            f"<title>{escape(pipeline.title)}</title>",
            f'<rect x="0" y="0" width="{m.width}" height="{height}" fill="#ffffff"/>',
            f'<g font-family="{SANS}">',
            *header,
            *arrows,
            *body,
            *legend,
            "</g>",
            "</svg>",
            "",
        ]
    )
