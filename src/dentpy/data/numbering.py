"""Which tooth numbering a label map uses, judged from the label values present.

Datasets assembled from several sources sometimes mix Universal (1-32) and FDI (11-48)
tooth ids (RELIABILITY.md A3). Both schemes share many numbers, so a case is only judged
when it holds values that exist in one scheme alone:

- FDI: ids 33-38 or 41-48 (lower teeth), which Universal numbering never uses;
- Universal: ids 19, 20, 29 or 30 (lower first molars and premolars), which are not FDI
  teeth (ToothFairy2 declares them only as unused "NA" placeholders), and no id above 32.

Lower first molars and premolars are present in almost every dental CBCT, so a tooth
label map shows its scheme; cases without such values are left unjudged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FDI_ONLY = frozenset({33, 34, 35, 36, 37, 38, 41, 42, 43, 44, 45, 46, 47, 48})
UNIVERSAL_ONLY = frozenset({19, 20, 29, 30})
# Two scheme-specific values make a judgement: one could be a stray voxel or another
# structure that happens to share the id.
MIN_EVIDENCE = 2


def scheme_of(values: Iterable[int]) -> str | None:
    """ "fdi", "universal", or None when the values do not tell."""
    present = set(values)
    fdi = len(present & FDI_ONLY)
    universal = len(present & UNIVERSAL_ONLY)
    if fdi >= MIN_EVIDENCE and universal == 0:
        return "fdi"
    if universal >= MIN_EVIDENCE and fdi == 0 and max(present, default=0) <= 32:
        return "universal"
    return None


def mixed_schemes(values_by_case: Mapping[str, Iterable[int]]) -> dict[str, list[str]] | None:
    """Case ids per scheme when the dataset's cases disagree, else None."""
    by_scheme: dict[str, list[str]] = {}
    for case_id, values in values_by_case.items():
        scheme = scheme_of(values)
        if scheme is not None:
            by_scheme.setdefault(scheme, []).append(case_id)
    return by_scheme if len(by_scheme) > 1 else None
