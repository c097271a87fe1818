"""Geometry of the pipeline diagram: text widths, word wrapping, box placement.

No font is embedded (the SVG must be self-contained), so widths are estimated from
per-character advance widths of DejaVu Sans / Verdana, the widest common sans-serif faces
the font stack names first; a narrower fallback face only leaves more room. Monospace text
advances 0.6 em per character in every common monospace face.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Advance widths in em (DejaVu Sans, rounded up).
_NARROW = frozenset("il.,:;|!'`ijfrt()[]{} ")
_WIDE = frozenset("mwMW@%&—…")
_UPPER_WIDE = 0.74
_LOWER = 0.6
_DIGIT = 0.64
_NARROW_EM = 0.34
_WIDE_EM = 0.92
_BOLD = 1.08
MONO_EM = 0.6


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Estimated rendered width in px of `text` at font size `size` (sans-serif)."""
    em = 0.0
    for char in text:
        if char in _NARROW:
            em += _NARROW_EM
        elif char in _WIDE:
            em += _WIDE_EM
        elif char.isdigit():
            em += _DIGIT
        elif char.isupper():
            em += _UPPER_WIDE
        else:
            em += _LOWER
    return em * size * (_BOLD if bold else 1.0)


def mono_width(text: str, size: float) -> float:
    return len(text) * size * MONO_EM


def wrap(text: str, width: float, size: float, bold: bool = False, mono: bool = False) -> list[str]:
    """Greedy word wrap to `width` px; a word longer than a line is cut at characters."""
    measure = (lambda t: mono_width(t, size)) if mono else (lambda t: text_width(t, size, bold))
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if measure(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        while measure(word) > width:
            cut = max(1, _fitting(word, width, measure))
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines or [""]


def _fitting(word: str, width: float, measure: object) -> int:
    for cut in range(len(word), 0, -1):
        if measure(word[:cut]) <= width:  # type: ignore[operator]
            return cut
    return 1


@dataclass(frozen=True)
class Metrics:
    """Sizes in px; every text is at least 12 px so the diagram reads at 100% zoom."""

    width: int = 1080
    margin: int = 20
    columns: int = 3
    column_gap: int = 46
    row_gap: int = 44
    padding: int = 12
    title_size: int = 18
    subtitle_size: int = 13
    stage_title_size: int = 15
    detail_size: int = 13
    shape_size: int = 12
    line_gap: float = 1.35
    legend_size: int = 12

    @property
    def box_width(self) -> float:
        inner = self.width - 2 * self.margin - (self.columns - 1) * self.column_gap
        return inner / self.columns

    @property
    def text_width(self) -> float:
        return self.box_width - 2 * self.padding

    def line_height(self, size: float) -> float:
        return math.ceil(size * self.line_gap)


@dataclass(frozen=True)
class BoxText:
    title: list[str]
    details: list[list[str]]  # one list of wrapped lines per detail
    shape: list[str]


@dataclass(frozen=True)
class Placed:
    index: int
    x: float
    y: float
    width: float
    height: float
    text: BoxText

    @property
    def centre_x(self) -> float:
        return self.x + self.width / 2


def box_text(title: str, details: Sequence[str], shape: str, m: Metrics) -> BoxText:
    bullet_room = text_width("• ", m.detail_size)
    return BoxText(
        title=wrap(title, m.text_width, m.stage_title_size, bold=True),
        details=[wrap(d, m.text_width - bullet_room, m.detail_size) for d in details],
        shape=_wrap_shape(shape, m) if shape else [],
    )


def _wrap_shape(shape: str, m: Metrics) -> list[str]:
    """Shape text, broken before "→" first (input and output on their own lines)."""
    room = m.text_width - 8
    if mono_width(shape, m.shape_size) <= room:
        return [shape]
    lines: list[str] = []
    for part in shape.replace(" → ", "\n→ ").split("\n"):
        lines += wrap(part, room, m.shape_size, mono=True)
    return lines


def box_height(text: BoxText, m: Metrics) -> float:
    height = m.padding + len(text.title) * m.line_height(m.stage_title_size) + 6
    height += sum(len(lines) for lines in text.details) * m.line_height(m.detail_size)
    if text.shape:
        height += 10 + len(text.shape) * m.line_height(m.shape_size) + 6
    return height + m.padding


def place(texts: Sequence[BoxText], top: float, m: Metrics) -> tuple[list[Placed], float]:
    """Boxes left to right in rows of `m.columns`, each row as tall as its tallest box.
    Returns the boxes and the y just below the last row."""
    placed: list[Placed] = []
    y = top
    for start in range(0, len(texts), m.columns):
        row = texts[start : start + m.columns]
        height = max(box_height(t, m) for t in row)
        for offset, text in enumerate(row):
            x = m.margin + offset * (m.box_width + m.column_gap)
            placed.append(Placed(start + offset, x, y, m.box_width, height, text))
        y += height + m.row_gap
    return placed, y - m.row_gap
