"""A leaderboard of evaluated runs and their built-in baselines on one split.

All runs must solve the same task on exactly the same cases (checked as for `dentpy
compare`). Each run contributes its model and the baselines its evaluation wrote
(segmentation: threshold; classification: majority and any others in summary.json;
detection: blob_boxes). A baseline that several runs share (same name, same numbers)
appears once. Entries are sorted by the task's primary metric, best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dentpy.compare.compare import check_comparable
from dentpy.compare.leaderboard_entries import (
    CLASSIFICATION_COLUMNS,
    DETECTION_COLUMNS,
    MACRO,
    Entry,
    classification_entries,
    detection_entries,
    segmentation_entries,
)
from dentpy.compare.per_case import load_run_table
from dentpy.errors import InputDataError


@dataclass
class Leaderboard:
    task: str
    split: str
    columns: list[str]  # column keys, e.g. "dice[pulp]", "roc_auc"
    primary: str
    higher_is_better: dict[str, bool]
    entries: list[Entry]
    notes: list[str]


# ----------------------------------------------------------------------------- build


def _deduplicate(entries: list[Entry]) -> list[Entry]:
    """One line per distinct baseline; baselines that differ between runs keep the run name."""
    kept: list[Entry] = []
    for entry in entries:
        twin = next(
            (
                k
                for k in kept
                if k.kind == "baseline"
                and entry.kind == "baseline"
                and k.name == entry.name
                and k.values == entry.values
                and k.cis == entry.cis
            ),
            None,
        )
        if twin is not None:
            twin.runs.extend(entry.runs)
        else:
            kept.append(entry)
    names = [e.name for e in kept if e.kind == "baseline"]
    for entry in kept:
        if entry.kind == "baseline":
            entry.name = f"{entry.name} (baseline)"
            if names.count(entry.name.removesuffix(" (baseline)")) > 1:
                entry.name = (
                    f"{entry.name.removesuffix(' (baseline)')} (baseline of {entry.runs[0]})"
                )
    return kept


def _sort(entries: list[Entry], primary: str, higher: bool) -> list[Entry]:
    def key(entry: Entry) -> tuple[int, float]:
        value = entry.values.get(primary)
        if value is None:
            return (1, 0.0)  # undefined primary metric: last
        return (0, -value if higher else value)

    return sorted(entries, key=key)  # stable: equal scores keep run order


def build_leaderboard(run_dirs: list[Path], split: str = "test") -> Leaderboard:
    """Load, check and rank the runs' models and baselines."""
    if not run_dirs:
        raise InputDataError(
            "benchmark needs at least one run",
            expected="RUN [RUN ...]",
            found="none",
            fix="pass run folders",
        )
    tables = [load_run_table(Path(r), split) for r in run_dirs]
    check_comparable(tables)
    task = tables[0].task
    notes: list[str] = []
    if task in ("segmentation", "instance"):
        entries = segmentation_entries(tables, [Path(r) for r in run_dirs], split)
        classes = tables[0].classes
        columns = [f"{m}[{c}]" for c in [MACRO, *classes] for m in ("dice", "hd95_mm")]
        primary = "dice[macro]"
        higher = {c: c.startswith("dice") for c in columns}
        notes.append("macro = mean over classes of each case, then mean over cases")
        notes.append(_ci_note())
    elif task == "classification":
        entries = classification_entries(tables)
        columns = list(
            CLASSIFICATION_COLUMNS.get(tables[0].output or "", CLASSIFICATION_COLUMNS["multiclass"])
        )
        primary = columns[0]
        higher = dict.fromkeys(columns, True)
        notes.append(
            "95% CI: " + str(tables[0].summary.get("confidence_intervals", "from summary.json"))
        )
    else:
        entries = detection_entries(tables)
        columns = list(DETECTION_COLUMNS)
        primary = "ap"
        higher = dict.fromkeys(columns, True)
        notes.append(
            "ap = COCO AP@[.50:.95], ap50 = AP at IoU 0.5, ar = AR with 100 detections, "
            "f1 = micro F1 at the confidence chosen on validation (IoU 0.5); 95% CI of AP and "
            "AP50: bootstrap over patients' images, as `dentpy evaluate` wrote it"
        )
    entries = _sort(_deduplicate(entries), primary, higher[primary])
    notes.insert(0, f"sorted by {primary} ({'higher' if higher[primary] else 'lower'} is better)")
    return Leaderboard(tables[0].task_label, split, columns, primary, higher, entries, notes)


def _ci_note() -> str:
    from dentpy.metrics.case_ci import CI_DEFINITION

    return CI_DEFINITION
