"""Compare evaluated runs case by case against a reference run (the first one).

For every (metric, class) the paired differences d = B - A over the shared cases give:
means of A and B, the mean difference with a patient-level bootstrap 95% CI, a two-sided
Wilcoxon signed-rank p-value (Holm-adjusted over the rows of the comparison) and
win/tie/loss counts. Runs are only compared when they solve the same task on exactly
the same cases and classes; anything else raises a dentpy error that says what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dentpy.compare.paired_stats import (
    BOOTSTRAP_DEFINITION,
    HOLM_DEFINITION,
    WILCOXON_DEFINITION,
    WIN_TIE_LOSS_DEFINITION,
    direction,
    holm,
    paired_bootstrap_cis,
    wilcoxon_signed_rank,
    win_tie_loss,
)
from dentpy.compare.per_case import PER_CASE_DEFINITIONS, RunTable, load_run_table
from dentpy.errors import InputDataError

# |B - A| at or below these counts as a tie (and as a zero difference for Wilcoxon):
# float noise in a Dice must not become a "win".
TIE_TOLERANCES: dict[str, float] = {
    "hd95_mm": 1e-3,  # mm
    "abs_volume_error_mm3": 1e-3,  # mm^3
    "tp": 0.0,  # counts are exact
    "fp": 0.0,
    "fn": 0.0,
    "correct": 0.0,
}
DEFAULT_TIE_TOLERANCE = 1e-6  # fractions in [0, 1] (dice, iou, p_true, brier, f1...)


def tie_tolerance(metric: str) -> float:
    return TIE_TOLERANCES.get(metric, DEFAULT_TIE_TOLERANCE)


def _extras(cases: set[str], others: set[str]) -> str:
    extra = sorted(cases - others)
    shown = ", ".join(extra[:5]) + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else "")
    return shown or "none"


def check_comparable(tables: list[RunTable]) -> None:
    """Raise InputDataError unless all tables share task, case set and class set."""
    reference = tables[0]
    for other in tables[1:]:
        if other.task_label != reference.task_label:
            raise InputDataError(
                f"runs {reference.name} and {other.name} solve different tasks",
                expected=f"every run of task {reference.task_label}, like {reference.name}",
                found=f"{other.name} is a run of task {other.task_label}",
                fix="compare runs of the same task",
            )
        ca, cb = set(reference.case_ids), set(other.case_ids)
        if ca != cb:
            raise InputDataError(
                f"runs {reference.name} and {other.name} were evaluated on different cases "
                f"of the {reference.split} split",
                expected="the same case ids in both evaluations (same dataset and split)",
                found=f"{reference.name}: {len(ca)} cases, {other.name}: {len(cb)} cases, "
                f"{len(ca & cb)} shared; only in {reference.name}: {_extras(ca, cb)}; "
                f"only in {other.name}: {_extras(cb, ca)}",
                fix="train the runs on the same dataset with the same splits.json, then "
                f"`dentpy evaluate RUN --split {reference.split}` each",
            )
        if set(other.classes) != set(reference.classes):
            only_a = sorted(set(reference.classes) - set(other.classes))
            only_b = sorted(set(other.classes) - set(reference.classes))
            raise InputDataError(
                f"runs {reference.name} and {other.name} have different classes",
                expected=f"the classes of {reference.name}: {len(reference.classes)}",
                found=f"only in {reference.name}: {only_a[:5] or 'none'}; "
                f"only in {other.name}: {only_b[:5] or 'none'}",
                fix="compare runs trained for the same classes",
            )


def _patient_differences(diffs: np.ndarray, groups: list[str]) -> tuple[str, np.ndarray]:
    """The differences the Wilcoxon test ranks: one per case, or, when some patient has
    several cases (classification images), the mean difference of each patient, since
    the test assumes independent pairs and one patient's images are not independent."""
    if len(set(groups)) == len(groups):
        return "cases", diffs
    position: dict[str, int] = {}
    index = np.asarray([position.setdefault(g, len(position)) for g in groups], dtype=np.int64)
    sums = np.bincount(index, weights=diffs, minlength=len(position))
    counts = np.bincount(index, minlength=len(position))
    return "patients (mean difference per patient)", sums / counts


def _paired_rows(
    a: RunTable, b: RunTable, cases: list[str], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    row_classes = list(dict.fromkeys(cls for _, cls in a.values))  # file order
    keys = [(m, c) for c in row_classes for m in a.metrics if (m, c) in a.values]
    va = np.asarray([[a.values[k].get(case, np.nan) for k in keys] for case in cases])
    vb = np.asarray([[b.values.get(k, {}).get(case, np.nan) for k in keys] for case in cases])
    va = va.reshape(len(cases), len(keys))
    vb = vb.reshape(len(cases), len(keys))
    groups = [a.patients.get(case, case) for case in cases]
    cis = paired_bootstrap_cis(vb - va, groups, n_boot=n_boot, seed=seed)
    rows = []
    for j, (metric, cls) in enumerate(keys):
        defined = np.isfinite(va[:, j]) & np.isfinite(vb[:, j])
        xa, xb = va[defined, j], vb[defined, j]
        tolerance = tie_tolerance(metric)
        units, unit_diffs = _patient_differences(
            xb - xa, [groups[i] for i in np.flatnonzero(defined)]
        )
        test = wilcoxon_signed_rank(unit_diffs, zero_tolerance=tolerance)
        wins, ties, losses = win_tie_loss(xa, xb, metric, tolerance)
        n_undefined = int((~defined).sum())
        notes = [test.note] if test.note else []
        if n_undefined:
            notes.append(f"{n_undefined} case(s) undefined in A or B, left out of this row")
        n = int(defined.sum())
        rows.append(
            {
                "metric": metric,
                "class": cls,
                "kind": "per_case",
                "n": n,
                "n_undefined": n_undefined,
                "mean_a": float(xa.mean()) if n else None,
                "mean_b": float(xb.mean()) if n else None,
                "mean_diff": float((xb - xa).mean()) if n else None,
                "ci_low": cis[j].low,
                "ci_high": cis[j].high,
                "ci_n_valid": cis[j].n_valid,
                "p_value": test.p_value,
                "p_holm": None,
                "test": f"wilcoxon ({test.method}) over {units}: {test.n_used} non-zero, "
                f"{test.n_zero} zero",
                "wins": wins,
                "ties": ties,
                "losses": losses,
                "better": "higher" if direction(metric) > 0 else "lower",
                "note": "; ".join(notes) or None,
            }
        )
    return rows


def compare_pair(a: RunTable, b: RunTable, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The comparison of run B against reference run A (tables already checked)."""
    cases = sorted(set(a.case_ids))
    rows = _paired_rows(a, b, cases, n_boot, seed)
    if a.task == "classification":
        from dentpy.compare.aggregates import aggregate_rows

        rows += aggregate_rows(a, b, cases, n_boot, seed)
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return {"a": a.name, "b": b.name, "n_cases": len(cases), "rows": rows}


def definitions(tables: list[RunTable]) -> dict[str, str]:
    """Every definition a reader of compare.json needs."""
    out = {
        "mean_diff": "mean over the paired cases of (B - A); A is the reference (first) run",
        "ci95": BOOTSTRAP_DEFINITION,
        "wilcoxon_p": WILCOXON_DEFINITION,
        "holm_p": HOLM_DEFINITION,
        "win_tie_loss": WIN_TIE_LOSS_DEFINITION,
        "n": "paired cases where both runs have a defined value (undefined pairs are counted)",
    }
    metric_definitions = tables[0].summary.get("definitions", {})
    for metric in tables[0].metrics:
        text = metric_definitions.get(metric) or PER_CASE_DEFINITIONS.get(metric)
        if text:
            out[metric] = str(text)
    if tables[0].task == "classification":
        out["aggregates"] = (
            "roc_auc / pr_auc / balanced_accuracy / quadratic_weighted_kappa on the whole "
            "split (dentpy.metrics.classification); difference B - A with a paired "
            "patient-level bootstrap CI, no p-value"
        )
    return out


def compare_runs(
    run_dirs: list[Path], split: str = "test", n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Every run against the first: the full result written to compare.json."""
    if len(run_dirs) < 2:
        raise InputDataError(
            "compare needs at least two runs",
            expected="RUN_A RUN_B [RUN_C ...]",
            found=f"{len(run_dirs)} run",
            fix="pass the reference run first, then the runs to compare with it",
        )
    if n_boot < 1:
        raise InputDataError(
            "--n-boot must be at least 1",
            expected="e.g. 2000",
            found=str(n_boot),
            fix="--n-boot 2000",
        )
    tables = [load_run_table(Path(run), split) for run in run_dirs]
    check_comparable(tables)
    metrics = sorted({m for t in tables for m in t.metrics})
    return {
        "split": split,
        "task": tables[0].task_label,
        "reference": tables[0].name,
        "runs": [t.name for t in tables],
        "n_boot": n_boot,
        "seed": seed,
        "tie_tolerances": {m: tie_tolerance(m) for m in metrics},
        "multiple_testing": "Holm over the rows of each comparison (p_holm); p is unadjusted",
        "definitions": definitions(tables),
        "comparisons": [compare_pair(tables[0], t, n_boot, seed) for t in tables[1:]],
    }
