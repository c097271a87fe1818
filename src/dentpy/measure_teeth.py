"""Per-tooth measures from an FDI instance label map: tooth and pulp volume, their ratio,
and the distance from the root apex to the inferior alveolar nerve canal (IAN).

Label convention (ToothFairy2/3): a tooth is labelled with its FDI number (11-48,
deciduous 51-85), its pulp with 100 + FDI (111-148, 151-185). In such a map a pulp voxel
carries the pulp id *instead of* the tooth id, so the tooth as a whole is tooth voxels +
pulp voxels. Canal ids (ToothFairy2/3: 3 = left, 4 = right IAN) are passed in as
`ian_ids`; every other label (jaws, sinuses, restorations, unknown ids) is ignored.

See TOOTH_MEASURE_DEFINITIONS for the exact definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data.fdi import PULP_OFFSET, is_fdi, jaw

# How far (mm along the tooth's long axis) from its most apical point the apical region
# reaches. Multi-rooted teeth have several apices at slightly different heights; 2 mm
# takes in all of them on typical molars without reaching the furcation.
APEX_DEPTH_MM = 2.0

# Largest id that can be a tooth or a pulp (100 + 85); bincount/lookup tables stop here
# so a stray huge label id cannot make them huge.
_MAX_TOOTH_ID = PULP_OFFSET + 85
_OTHER = _MAX_TOOTH_ID + 1  # bin for every id above _MAX_TOOTH_ID

TOOTH_MEASURE_DEFINITIONS: dict[str, str] = {
    "fdi": "FDI tooth number (ISO 3950); the tooth id in the label map, its pulp is 100 + FDI",
    "tooth_volume_mm3": "whole tooth volume including its pulp: (voxels labelled FDI + voxels "
    "labelled 100 + FDI) x voxel volume (|det| of the affine's 3x3 part, so right for "
    "anisotropic and rotated grids); None when the tooth id itself is absent",
    "pulp_volume_mm3": "voxels labelled 100 + FDI x voxel volume; None when the tooth has no "
    "pulp label",
    "pulp_tooth_ratio": "pulp_volume_mm3 / tooth_volume_mm3 (tooth volume includes the pulp, "
    "so the ratio lies in 0..1); None when either is None",
    "apex_to_ian_mm": "shortest distance (mm) from a voxel centre of the tooth's apical region "
    f"to the nearest voxel centre of the inferior alveolar canal (any IAN id). Apical region: "
    f"tooth + pulp voxels within {APEX_DEPTH_MM:g} mm of the tooth's most apical extent along "
    "its long axis (first principal axis of its voxel centres in world mm, oriented crown "
    "up for lower teeth, crown down for upper teeth). 0.0 when an apical voxel touches a "
    "canal voxel (shares a face, edge or corner: no bone between them; a label map cannot "
    "overlap them). Otherwise a voxel-centre distance, quantised at the voxel size: one "
    "empty voxel between apex and canal along an axis reads as two spacings, so values "
    "between 0 and that never occur. Computed by an Euclidean distance transform on the "
    "voxel grid with the spacing from the affine's column norms, which assumes an "
    "orthogonal grid (exact for rotated grids, approximate for sheared ones). None when no "
    "IAN voxel is segmented",
    "centroid_mm": "mean world position (RAS mm, through the affine) of the tooth's voxel "
    "centres, pulp included",
}


@dataclass(frozen=True)
class ToothMeasure:
    """Measures of one tooth; see TOOTH_MEASURE_DEFINITIONS for every field."""

    fdi: int
    tooth_volume_mm3: float | None
    pulp_volume_mm3: float | None
    pulp_tooth_ratio: float | None
    apex_to_ian_mm: float | None
    centroid_mm: tuple[float, float, float]


def _tooth_lookup() -> np.ndarray:
    """Label id (0.._OTHER) -> FDI number of the tooth it belongs to, 0 for anything else."""
    lookup = np.zeros(_OTHER + 1, dtype=np.uint8)  # FDI numbers fit: a 1-byte per-voxel map
    for value in range(1, _MAX_TOOTH_ID + 1):
        if is_fdi(value):
            lookup[value] = value
        elif is_fdi(value - PULP_OFFSET):
            lookup[value] = value - PULP_OFFSET
    return lookup


def _check(labels: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, found {labels.min()}")
    if affine is not None:
        affine = np.asarray(affine)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3].astype(np.float64))) == 0:
            raise ValueError("affine is singular (a zero-volume voxel)")
    return labels


def _clipped(labels: np.ndarray) -> np.ndarray:
    """Labels with every id above the last tooth/pulp id folded into one bin (_OTHER), as
    uint8: a 1-byte copy of the scan that bincount and table lookups take for any input
    integer type (bincount refuses uint64)."""
    top = labels.dtype.type(min(_OTHER, np.iinfo(labels.dtype).max))
    return np.minimum(labels, top).astype(np.uint8, copy=False)


def has_fdi_labels(labels: np.ndarray) -> bool:
    """Whether the label map holds any FDI tooth id or any 100 + FDI pulp id."""
    labels = _check(labels)
    return bool(_tooth_lookup()[_clipped(labels)].any())


def _apical_region(points_mm: np.ndarray, fdi: int) -> np.ndarray:
    """Boolean mask of the points (n, 3 world mm) in the apical region of tooth `fdi`."""
    centre = points_mm.mean(axis=0)
    offsets = points_mm - centre
    # Covariance by hand: np.cov gives NaN for a single voxel.
    _, vectors = np.linalg.eigh(offsets.T @ offsets / len(points_mm))
    axis = vectors[:, -1]  # largest variance = long axis (root to crown)
    # Crowns point occlusally: up (+z, superior) in the lower jaw, down in the upper jaw.
    # A tooth lying flat (impacted, axis near horizontal) has no reliable crown side; the
    # sign of the axis's tiny z part decides there, so its apex may be the wrong end.
    crown_up = jaw(fdi) == "lower"
    if (axis[2] < 0) == crown_up:
        axis = -axis
    height = offsets @ axis
    return np.asarray(height <= height.min() + APEX_DEPTH_MM)


def tooth_measures(
    labels: np.ndarray, affine: np.ndarray, ian_ids: Sequence[int] = ()
) -> list[ToothMeasure]:
    """Per-tooth measures (sorted by FDI) of a 3D FDI instance label map with its
    voxel -> world RAS mm affine. `ian_ids`: the label ids of the inferior alveolar
    canals (ToothFairy2/3: 3 and 4); without them, or without any such voxel,
    apex_to_ian_mm is None. See TOOTH_MEASURE_DEFINITIONS."""
    labels = _check(labels, affine)
    affine = np.asarray(affine, dtype=np.float64)
    ian_ids = [int(i) for i in ian_ids]
    clashing = [i for i in ian_ids if i <= 0 or is_fdi(i) or is_fdi(i - PULP_OFFSET)]
    if clashing:
        raise ValueError(f"IAN ids must be positive and not tooth/pulp ids, got {clashing}")
    lookup = _tooth_lookup()
    clipped = _clipped(labels).ravel()
    fdi_of_voxel = lookup[clipped]
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))

    flat = np.flatnonzero(fdi_of_voxel)
    if flat.size == 0:
        return []
    # Every tooth and pulp count in one bincount, over tooth voxels only: a bincount of
    # the whole scan costs an 8-byte copy of it.
    counts = np.bincount(clipped[flat], minlength=_OTHER + 1)
    owners = fdi_of_voxel[flat]
    order = np.argsort(owners, kind="stable")
    flat, owners = flat[order], owners[order]
    teeth, starts = np.unique(owners, return_index=True)
    index = np.stack(np.unravel_index(flat, labels.shape), axis=1)  # (n, 3) voxel indices
    world = index @ affine[:3, :3].T + affine[:3, 3]

    distance, padded_ian, origin = _ian_distance(labels, index, ian_ids, affine)

    result = []
    bounds = [*starts[1:], len(flat)]
    for fdi, start, stop in zip(teeth, starts, bounds, strict=True):
        fdi = int(fdi)
        n_tooth, n_pulp = int(counts[fdi]), int(counts[PULP_OFFSET + fdi])
        tooth = (n_tooth + n_pulp) * voxel_mm3 if n_tooth else None
        pulp = n_pulp * voxel_mm3 if n_pulp else None
        ratio = n_pulp / (n_tooth + n_pulp) if n_tooth and n_pulp else None
        points = world[start:stop]
        apex_mm = None
        if distance is not None and padded_ian is not None:
            apical = index[start:stop][_apical_region(points, fdi)] - origin
            apex_mm = float(distance[apical[:, 0], apical[:, 1], apical[:, 2]].min())
            if _touches(padded_ian, apical):
                apex_mm = 0.0
        centroid = points.mean(axis=0)
        result.append(
            ToothMeasure(
                fdi=fdi,
                tooth_volume_mm3=tooth,
                pulp_volume_mm3=pulp,
                pulp_tooth_ratio=ratio,
                apex_to_ian_mm=apex_mm,
                centroid_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
            )
        )
    return result


def _ian_distance(
    labels: np.ndarray, tooth_index: np.ndarray, ian_ids: Sequence[int], affine: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(distance in mm from each voxel centre to the nearest IAN voxel centre, the IAN mask
    padded by one voxel, index of the first voxel) over the bounding box of teeth + IAN;
    (None, None, 0) without IAN voxels."""
    import edt

    origin = np.zeros(3, dtype=np.intp)
    if not ian_ids:
        return None, None, origin
    ian = np.isin(labels, ian_ids)
    ian_index = np.argwhere(ian)
    if ian_index.size == 0:
        return None, None, origin
    # Every apex voxel and every canal voxel lie in this box, so the distance transform
    # inside it is exact and much cheaper than over the whole scan.
    both = np.concatenate([tooth_index, ian_index])
    origin = both.min(axis=0)
    stop = both.max(axis=0) + 1
    box = ian[origin[0] : stop[0], origin[1] : stop[1], origin[2] : stop[2]]
    # Column norms = spacing along each array axis; the EDT assumes these axes are
    # orthogonal (true for rotated grids, approximate for sheared ones).
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    distance = edt.edt(
        np.ascontiguousarray(~box), anisotropy=tuple(float(s) for s in spacing), black_border=False
    )
    return np.asarray(distance), np.pad(box, 1), origin


def _touches(padded_ian: np.ndarray, apical: np.ndarray) -> bool:
    """Whether any apical voxel (box indices) shares a face, edge or corner with an IAN
    voxel: their surfaces touch, no bone lies between them."""
    shifted = apical + 1  # into the padded mask, so the 3x3x3 neighbourhood stays inside
    for offset in np.ndindex(3, 3, 3):
        at = shifted + (np.array(offset) - 1)
        if padded_ian[at[:, 0], at[:, 1], at[:, 2]].any():
            return True
    return False


def tooth_measures_of_file(path: str | Path, ian_ids: Sequence[int] = (3, 4)) -> list[ToothMeasure]:
    """tooth_measures of a label file with its own affine. Default `ian_ids` are the
    ToothFairy2/3 canal ids (3 = left, 4 = right inferior alveolar canal)."""
    from dentpy.data.io import read_label

    label_map = read_label(path)
    return tooth_measures(label_map.array, label_map.affine, ian_ids)


CSV_COLUMNS = (
    "fdi",
    "tooth_volume_mm3",
    "pulp_volume_mm3",
    "pulp_tooth_ratio",
    "apex_to_ian_mm",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
)


def refuse_existing_output(path: str | Path) -> None:
    """OutputError if `path` already exists: dentpy never overwrites files."""
    from dentpy.errors import OutputError

    path = Path(path)
    if path.exists() or path.is_symlink():
        where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
        raise OutputError(
            f"{where}: the output file already exists",
            expected=f"no {path.name} there",
            found=f"an existing {'folder' if path.is_dir() else 'file'} {path.name}",
            fix="choose another --csv path, or move the earlier file away; "
            "dentpy never overwrites files",
        )


def write_tooth_csv(path: str | Path, measures: Sequence[ToothMeasure]) -> Path:
    """Write the per-tooth table as CSV (CSV_COLUMNS; empty cell = None); refuses to
    overwrite an existing file."""
    import csv

    path = Path(path)
    refuse_existing_output(path)
    # "x": even a file that appears between the check and the write is not replaced.
    with path.open("x", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for m in measures:
            values = [
                m.tooth_volume_mm3,
                m.pulp_volume_mm3,
                m.pulp_tooth_ratio,
                m.apex_to_ian_mm,
                *m.centroid_mm,
            ]
            writer.writerow([m.fdi, *("" if v is None else repr(float(v)) for v in values)])
    return path


def tooth_table(teeth: Sequence[ToothMeasure], title: str) -> Any:
    """A rich table of per-tooth measures ("-" where a value is None)."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("FDI", "tooth mm³", "pulp mm³", "pulp/tooth", "apex→IAN mm"):
        table.add_column(column, justify="right")

    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for t in teeth:
        table.add_row(
            str(t.fdi),
            cell(t.tooth_volume_mm3, 2),
            cell(t.pulp_volume_mm3, 2),
            cell(t.pulp_tooth_ratio, 3),
            cell(t.apex_to_ian_mm, 2),
        )
    return table
