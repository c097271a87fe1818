"""Leaderboard output: a rich table, leaderboard.md, leaderboard.csv, leaderboard.html.

The HTML page is self-contained (inline CSS, no scripts, no links) so it can be mailed or
attached to a report as one file.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any

from dentpy.compare.compare_output import fmt
from dentpy.compare.leaderboard import Leaderboard
from dentpy.compare.leaderboard_entries import Entry

OUTPUT_FILES: tuple[str, ...] = ("leaderboard.md", "leaderboard.csv", "leaderboard.html")
# Beyond this many classes the printed table shows only the macro columns; the CSV and
# HTML keep every class.
MAX_PRINTED_CLASSES = 4

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; }
td.name, th.name { text-align: left; }
tr.baseline td { color: #666; font-style: italic; }
p.note { color: #555; font-size: 13px; }
"""


def cell(entry: Entry, column: str) -> str:
    value = entry.values.get(column)
    interval = entry.cis.get(column)
    text = fmt(value)
    if interval is not None:
        text += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    return text


def printed_columns(board: Leaderboard) -> list[str]:
    if board.task.startswith(("segmentation", "instance")):
        n_classes = len(board.columns) // 2 - 1
        if n_classes > MAX_PRINTED_CLASSES or n_classes == 1:
            return [c for c in board.columns if c.endswith("[macro]")]
    return board.columns


def header(column: str, board: Leaderboard) -> str:
    arrow = "↑" if board.higher_is_better.get(column, True) else "↓"
    return f"{column} {arrow}" + (" (primary)" if column == board.primary else "")


def _rows(board: Leaderboard, columns: list[str]) -> list[list[str]]:
    return [
        [
            str(rank),
            entry.name,
            entry.kind,
            ", ".join(entry.runs),
            *[cell(entry, c) for c in columns],
        ]
        for rank, entry in enumerate(board.entries, start=1)
    ]


def render_table(board: Leaderboard) -> Any:
    from rich.markup import escape
    from rich.table import Table

    columns = printed_columns(board)
    table = Table(
        title=f"Leaderboard: {board.task}, {board.split} split",
        caption=escape("; ".join(board.notes)),
    )
    for name in ("#", "entry", "kind", "runs"):
        table.add_column(name, justify="left")
    for column in columns:
        table.add_column(escape(header(column, board)), justify="right", no_wrap=True)
    for row, entry in zip(_rows(board, columns), board.entries, strict=True):
        table.add_row(
            *[escape(c) for c in row], style="dim italic" if entry.kind == "baseline" else None
        )
    return table


def _markdown(board: Leaderboard) -> str:
    columns = board.columns
    heads = ["#", "entry", "kind", "runs", *[header(c, board) for c in columns]]
    lines = [f"# Leaderboard: {board.task}, {board.split} split", ""]
    lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(board, columns)]
    lines += ["", *[f"- {note}" for note in board.notes]]
    return "\n".join(lines) + "\n"


def _html(board: Leaderboard) -> str:
    columns = board.columns
    heads = "".join(
        f'<th class="name">{html.escape(h)}</th>' for h in ("#", "entry", "kind", "runs")
    ) + "".join(f"<th>{html.escape(header(c, board))}</th>" for c in columns)
    body = []
    for row, entry in zip(_rows(board, columns), board.entries, strict=True):
        cells = "".join(f'<td class="name">{html.escape(v)}</td>' for v in row[:4])
        cells += "".join(f"<td>{html.escape(v)}</td>" for v in row[4:])
        body.append(f'<tr class="{entry.kind}">{cells}</tr>')
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in board.notes)
    title = html.escape(f"Leaderboard: {board.task}, {board.split} split")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
        f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{notes}</body></html>\n"
    )


def write_leaderboard(board: Leaderboard, out: Path) -> list[Path]:
    """leaderboard.md / .csv / .html in `out` (compare_output.prepare_out first)."""
    (out / "leaderboard.md").write_text(_markdown(board))
    with (out / "leaderboard.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        fields = ["rank", "entry", "kind", "runs"]
        for column in board.columns:
            fields += [column, f"{column}_ci_low", f"{column}_ci_high"]
        writer.writerow(fields)
        for rank, entry in enumerate(board.entries, start=1):
            line: list[Any] = [rank, entry.name, entry.kind, " ".join(entry.runs)]
            for column in board.columns:
                interval = entry.cis.get(column)
                value = entry.values.get(column)
                line += [
                    "" if value is None else value,
                    "" if interval is None else interval[0],
                    "" if interval is None else interval[1],
                ]
            writer.writerow(line)
    (out / "leaderboard.html").write_text(_html(board))
    return [out / name for name in OUTPUT_FILES]
