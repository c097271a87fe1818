"""Write and print a comparison: compare.json, compare.csv, compare.md, rich tables."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from dentpy.errors import OutputError

CSV_COLUMNS: tuple[str, ...] = (
    "a",
    "b",
    "metric",
    "class",
    "kind",
    "better",
    "n",
    "n_undefined",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "wins",
    "ties",
    "losses",
    "test",
    "note",
)
OUTPUT_FILES: tuple[str, ...] = ("compare.json", "compare.csv", "compare.md")


def default_out(run_names: list[str]) -> Path:
    return Path("comparisons") / "-vs-".join(run_names)


def prepare_out(out: Path, force: bool, files: tuple[str, ...] = OUTPUT_FILES) -> None:
    """Create `out`; refuse when it already holds one of `files` and force is off."""
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        raise OutputError(
            f"{out} already holds {', '.join(existing)}",
            expected="a new output folder",
            found=f"{len(existing)} existing output file(s)",
            fix="pass --force to overwrite, or --out with another folder",
        )
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"{out} exists and is not a folder",
            expected="a folder path",
            found="a file",
            fix="pass --out with a folder path",
        )
    out.mkdir(parents=True, exist_ok=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return (
            f"{value:.{digits}g}"
            if abs(value) >= 1e4 or 0 < abs(value) < 1e-3
            else f"{value:.{digits}f}"
        )
    return str(value)


def fmt_p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<1e-4" if value < 1e-4 else f"{value:.4f}"


def row_cells(row: dict[str, Any]) -> list[str]:
    """metric, class, A, B, diff [CI], p, p_holm, W/T/L, n."""
    ci = f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
    wtl = "n/a" if row["wins"] is None else f"{row['wins']}/{row['ties']}/{row['losses']}"
    metric = row["metric"] + (" ↑" if row.get("better") == "higher" else "")
    metric += " ↓" if row.get("better") == "lower" else ""
    return [
        metric,
        str(row["class"]),
        fmt(row["mean_a"]),
        fmt(row["mean_b"]),
        f"{fmt(row['mean_diff'])} {ci}",
        fmt_p(row["p_value"]),
        fmt_p(row["p_holm"]),
        wtl,
        str(row["n"]),
    ]


HEADERS = ["metric", "class", "mean A", "mean B", "diff B-A [95% CI]", "p", "p Holm", "W/T/L", "n"]
CAPTION = (
    "A = reference run. diff: mean of B - A over paired cases, 95% CI = patient-level "
    "percentile bootstrap. p: two-sided Wilcoxon signed-rank (zeros dropped); p Holm: "
    "Holm-adjusted over all rows of this comparison. W/T/L: cases where B is better / "
    "tied (within tolerance) / worse; ↑ higher is better, ↓ lower is better."
)


def grouped_notes(rows: list[dict[str, Any]], shown: int = 3) -> list[str]:
    """One line per distinct note, naming the first rows it applies to (instance runs
    have hundreds of rows; "all tied" must not print hundreds of lines)."""
    by_text: dict[str, list[str]] = {}
    for row in rows:
        if row["note"]:
            by_text.setdefault(row["note"], []).append(f"{row['metric']} / {row['class']}")
    lines = []
    for text, where in by_text.items():
        more = f" and {len(where) - shown} more" if len(where) > shown else ""
        lines.append(f"{text} ({', '.join(where[:shown])}{more})")
    return lines


def render_tables(result: dict[str, Any]) -> list[Any]:
    from rich.markup import escape
    from rich.table import Table

    tables = []
    for comparison in result["comparisons"]:
        table = Table(
            title=escape(
                f"{comparison['b']} (B) vs {comparison['a']} (A), {result['split']} split, "
                f"{comparison['n_cases']} cases"
            ),
            caption=CAPTION,
        )
        for header in HEADERS:
            table.add_column(header, justify="left" if header in ("metric", "class") else "right")
        for row in comparison["rows"]:
            table.add_row(*[escape(c) for c in row_cells(row)])
        tables.append(table)
    return tables


def _markdown(result: dict[str, Any]) -> str:
    lines = [f"# Comparison on the {result['split']} split ({result['task']})", ""]
    lines += [f"Reference run (A): {result['reference']}. {result['multiple_testing']}.", ""]
    lines += [f"Bootstrap: {result['n_boot']} resamples, seed {result['seed']}.", ""]
    for comparison in result["comparisons"]:
        lines += [f"## {comparison['b']} (B) vs {comparison['a']} (A)", ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "---|" * len(HEADERS))
        for row in comparison["rows"]:
            lines.append("| " + " | ".join(c.replace("|", "/") for c in row_cells(row)) + " |")
        notes = [
            f"{r['metric']}/{r['class']}: {r['note']}" for r in comparison["rows"] if r["note"]
        ]
        lines += ["", *[f"- {note}" for note in notes]] if notes else []
        lines.append("")
    lines += ["## Definitions", ""]
    lines += [f"- **{key}**: {text}" for key, text in result["definitions"].items()]
    lines += [
        "",
        "Tie tolerances: " + ", ".join(f"{k} {v:g}" for k, v in result["tie_tolerances"].items()),
    ]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """compare.json, compare.csv and compare.md in `out` (prepare_out first)."""
    (out / "compare.json").write_text(json.dumps(result, indent=1, allow_nan=False))
    with (out / "compare.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for comparison in result["comparisons"]:
            for row in comparison["rows"]:
                cells = {k: ("" if v is None else v) for k, v in row.items()}
                writer.writerow({"a": comparison["a"], "b": comparison["b"], **cells})
    (out / "compare.md").write_text(_markdown(result))
    return [out / name for name in OUTPUT_FILES]
