"""Per-tooth measures (tooth/pulp volume, ratio, apex to IAN distance) on shapes whose
answers are known, on real file geometry, and through `dentpy volume`."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import OutputError
from dentpy.measure import volumes_of_file
from dentpy.measure_teeth import (
    APEX_DEPTH_MM,
    CSV_COLUMNS,
    TOOTH_MEASURE_DEFINITIONS,
    ToothMeasure,
    has_fdi_labels,
    tooth_measures,
    tooth_measures_of_file,
)

SPACING = (0.3, 0.3, 0.5)
VOXEL_MM3 = math.prod(SPACING)
runner = CliRunner()


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def make_affine(
    spacing: tuple[float, float, float] = SPACING, rotate: np.ndarray | None = None
) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = (np.eye(3) if rotate is None else rotate) @ np.diag(spacing)
    affine[:3, 3] = (-3.0, 5.0, 7.0)  # an origin away from zero catches index/world mix-ups
    return affine


def world_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World RAS mm of every voxel centre, shape (*shape, 3)."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    return index @ affine[:3, :3].T + affine[:3, 3]


def box_tooth(fdi: int = 36, pulp: bool = True) -> np.ndarray:
    labels = np.zeros((20, 22, 30), dtype=np.uint16)
    labels[4:14, 5:17, 5:25] = fdi  # 10 x 12 x 20 = 2400 voxels
    if pulp:
        labels[7:11, 9:13, 10:20] = 100 + fdi  # 4 x 4 x 10 = 160 voxels inside it
    return labels


def by_fdi(measures: list[ToothMeasure]) -> dict[int, ToothMeasure]:
    return {m.fdi: m for m in measures}


# --- volumes ---------------------------------------------------------------------------


def test_box_tooth_volumes_are_exact_voxel_counts_at_anisotropic_spacing() -> None:
    (tooth,) = tooth_measures(box_tooth(), make_affine())
    assert tooth.fdi == 36
    # The tooth volume includes its pulp: 2400 box voxels, 160 of them relabelled as pulp.
    assert tooth.tooth_volume_mm3 == pytest.approx(2400 * VOXEL_MM3)
    assert tooth.pulp_volume_mm3 == pytest.approx(160 * VOXEL_MM3)
    assert tooth.pulp_tooth_ratio == pytest.approx(160 / 2400)
    assert tooth.apex_to_ian_mm is None
    centre_index = np.array([8.5, 10.5, 14.5])
    expected = make_affine()[:3, :3] @ centre_index + make_affine()[:3, 3]
    assert tooth.centroid_mm == pytest.approx(tuple(expected))


def test_rotated_affine_keeps_volumes_and_maps_the_centroid() -> None:
    affine = make_affine(rotate=rotation("x", 30) @ rotation("z", 20))
    (tooth,) = tooth_measures(box_tooth(), affine)
    assert tooth.tooth_volume_mm3 == pytest.approx(2400 * VOXEL_MM3)
    assert tooth.pulp_volume_mm3 == pytest.approx(160 * VOXEL_MM3)
    expected = affine[:3, :3] @ np.array([8.5, 10.5, 14.5]) + affine[:3, 3]
    assert tooth.centroid_mm == pytest.approx(tuple(expected))


def test_pulp_only_missing_and_non_fdi_labels() -> None:
    labels = np.zeros((30, 30, 30), dtype=np.int32)
    labels[2:6, 2:6, 2:6] = 146  # pulp of 46 without the tooth id: 64 voxels
    labels[10:12, 10:12, 10:13] = 11  # a tooth without pulp: 12 voxels
    # Jaw, NA placeholder, incisive/lingual canals, an implausible id and a big one.
    for value, where in [(1, 20), (19, 23), (103, 25), (105, 27), (200, 15), (70000, 17)]:
        labels[where : where + 2, 0:2, 0:2] = value
    assert has_fdi_labels(labels)
    measures = by_fdi(tooth_measures(labels, make_affine()))
    assert sorted(measures) == [11, 46]  # 36 etc. absent, non-FDI ids ignored
    pulp_only = measures[46]
    assert pulp_only.tooth_volume_mm3 is None
    assert pulp_only.pulp_volume_mm3 == pytest.approx(64 * VOXEL_MM3)
    assert pulp_only.pulp_tooth_ratio is None
    centre = make_affine()[:3, :3] @ np.array([3.5, 3.5, 3.5]) + make_affine()[:3, 3]
    assert pulp_only.centroid_mm == pytest.approx(tuple(centre))
    no_pulp = measures[11]
    assert no_pulp.tooth_volume_mm3 == pytest.approx(12 * VOXEL_MM3)
    assert no_pulp.pulp_volume_mm3 is None and no_pulp.pulp_tooth_ratio is None


def test_sorted_by_fdi_and_deciduous_teeth() -> None:
    labels = np.zeros((20, 4, 4), dtype=np.uint8)
    for n, fdi in enumerate((48, 11, 75, 21, 155)):
        labels[n * 3, 1, 1] = fdi
    assert [m.fdi for m in tooth_measures(labels, np.eye(4))] == [11, 21, 48, 55, 75]


def test_maps_without_teeth() -> None:
    labels = np.zeros((5, 5, 5), dtype=np.uint8)
    labels[1, 1, 1] = 3
    labels[2, 2, 2] = 105
    assert not has_fdi_labels(labels)
    assert tooth_measures(labels, np.eye(4), ian_ids=(3, 4)) == []
    labels[3, 3, 3] = 121
    assert has_fdi_labels(labels)


@pytest.mark.parametrize(
    ("labels", "affine"),
    [
        (np.zeros((4, 4, 4), dtype=np.float32), np.eye(4)),
        (np.zeros((4, 4), dtype=np.uint8), np.eye(4)),
        (np.zeros((4, 4, 4), dtype=np.uint8), np.eye(3)),
        (np.full((4, 4, 4), -1, dtype=np.int16), np.eye(4)),
        (np.zeros((4, 4, 4), dtype=np.uint8), np.diag([1.0, 1.0, 0.0, 1.0])),
    ],
)
def test_refuses_bad_input(labels: np.ndarray, affine: np.ndarray) -> None:
    with pytest.raises(ValueError):
        tooth_measures(labels, affine)


def test_refuses_ian_ids_that_are_teeth() -> None:
    with pytest.raises(ValueError, match="IAN"):
        tooth_measures(box_tooth(), np.eye(4), ian_ids=(36,))


# --- apex to IAN -----------------------------------------------------------------------

SHAPE = (40, 60, 70)  # 12 x 18 x 35 mm at SPACING
TOOTH_LENGTH_MM = 15.0
TOOTH_RADIUS_MM = 2.5


def cylinder(
    points: np.ndarray, start: np.ndarray, direction: np.ndarray, length: float, radius: float
) -> np.ndarray:
    direction = direction / np.linalg.norm(direction)
    along = (points - start) @ direction
    radial = np.linalg.norm(points - start - along[..., None] * direction, axis=-1)
    return (along >= 0) & (along <= length) & (radial <= radius)


def scene(
    fdi: int,
    affine: np.ndarray,
    axis: np.ndarray,
    gap_below_mm: float,
    gap_above_mm: float,
    canal_radius_mm: float = 1.2,
) -> tuple[np.ndarray, np.ndarray]:
    """A cylindrical tooth (pulp along its core) whose lower end is `start`, with canal
    balls on its axis beyond each end: id 3 `gap_below_mm` below the lower end, id 4
    `gap_above_mm` above the upper end. Returns (labels, start)."""
    points = world_grid(SHAPE, affine)
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    axis = axis / np.linalg.norm(axis)
    start = centre - axis * TOOTH_LENGTH_MM / 2
    end = start + axis * TOOTH_LENGTH_MM
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[cylinder(points, start, axis, TOOTH_LENGTH_MM, TOOTH_RADIUS_MM)] = fdi
    labels[cylinder(points, start + axis, axis, TOOTH_LENGTH_MM - 2, 0.8)] = 100 + fdi
    for label, anchor, sign, gap in ((3, start, -1, gap_below_mm), (4, end, 1, gap_above_mm)):
        ball_centre = anchor + sign * axis * (gap + canal_radius_mm)
        labels[np.linalg.norm(points - ball_centre, axis=-1) <= canal_radius_mm] = label
    return labels, start


VERTICAL = np.array([0.0, 0.0, 1.0])


def test_lower_tooth_apex_is_at_the_bottom() -> None:
    affine = make_affine()
    labels, _ = scene(36, affine, VERTICAL, gap_below_mm=1.5, gap_above_mm=4.0)
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert tooth.apex_to_ian_mm is not None
    assert tooth.apex_to_ian_mm == pytest.approx(1.5, abs=max(SPACING))


def test_upper_tooth_apex_is_at_the_top() -> None:
    affine = make_affine()
    labels, _ = scene(16, affine, VERTICAL, gap_below_mm=1.5, gap_above_mm=4.0)
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert tooth.apex_to_ian_mm == pytest.approx(4.0, abs=max(SPACING))


def test_horizontal_canal_below_a_lower_molar() -> None:
    """The canal runs left-right (along x) under the apex with a known gap."""
    affine = make_affine()
    points = world_grid(SHAPE, affine)
    centre = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    z0 = centre[2] - 5.0  # the apex plane
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[cylinder(points, centre - [0, 0, 5.0], VERTICAL, TOOTH_LENGTH_MM, 2.5)] = 36
    gap, radius = 3.0, 1.5
    canal_axis = centre - [0, 0, 5.0 + gap + radius]
    canal = np.hypot(points[..., 1] - canal_axis[1], points[..., 2] - canal_axis[2]) <= radius
    labels[canal] = 4
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert z0 - (canal_axis[2] + radius) == pytest.approx(gap)
    assert tooth.apex_to_ian_mm == pytest.approx(gap, abs=max(SPACING))


def test_tilted_tooth_finds_its_apical_end() -> None:
    # 30 degrees from vertical, crown still up: a lower tooth's apex is its lower end.
    axis = np.array([0.0, math.sin(math.radians(30)), math.cos(math.radians(30))])
    affine = make_affine()
    diagonal = float(np.linalg.norm(SPACING))
    labels, _ = scene(46, affine, axis, gap_below_mm=1.0, gap_above_mm=4.0)
    (lower,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert lower.apex_to_ian_mm == pytest.approx(1.0, abs=diagonal)
    labels, _ = scene(26, affine, axis, gap_below_mm=4.0, gap_above_mm=1.0)
    (upper,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert upper.apex_to_ian_mm == pytest.approx(1.0, abs=diagonal)
    # Swapping the gaps proves the measure is taken at the apex, not at the nearest end.
    labels, _ = scene(46, affine, axis, gap_below_mm=4.0, gap_above_mm=1.0)
    (far,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert far.apex_to_ian_mm == pytest.approx(4.0, abs=diagonal)


def test_tilted_tooth_apical_region_follows_its_long_axis() -> None:
    """A canal beside the root, 1.8 mm up the long axis from the apex on the side the tilt
    lifts: inside the apical region along the tooth's own axis, but above the tooth's
    lowest 2 mm in z, so taking the vertical as the axis reads ~2.0 mm instead of ~1.3."""
    tilt = math.radians(30)
    axis = np.array([0.0, math.sin(tilt), math.cos(tilt)])
    lifted_side = np.array([0.0, -math.cos(tilt), math.sin(tilt)])  # normal to axis, z > 0
    affine = make_affine()
    labels, start = scene(36, affine, axis, gap_below_mm=8.0, gap_above_mm=8.0)
    gap, radius = 1.0, 0.8
    centre = start + axis * 1.8 + lifted_side * (TOOTH_RADIUS_MM + gap + radius)
    points = world_grid(SHAPE, affine)
    labels[np.linalg.norm(points - centre, axis=-1) <= radius] = 3
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert tooth.apex_to_ian_mm == pytest.approx(gap, abs=max(SPACING))


def test_rotated_grid_uses_world_distances() -> None:
    # The grid is rotated; the tooth stays vertical in the world.
    affine = make_affine(rotate=rotation("z", 35) @ rotation("x", 10))
    labels, _ = scene(36, affine, VERTICAL, gap_below_mm=2.0, gap_above_mm=5.0)
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    assert tooth.apex_to_ian_mm == pytest.approx(2.0, abs=float(np.linalg.norm(SPACING)))


def test_touching_canal_gives_zero_and_missing_canal_gives_none() -> None:
    affine = make_affine()
    labels, _ = scene(36, affine, VERTICAL, gap_below_mm=5.0, gap_above_mm=5.0)
    index = np.argwhere(labels == 36)
    bottom = index[:, 2].min()
    below = index[index[:, 2] == bottom]
    # A canal voxel right under the apex (a face shared with it): no bone between them.
    i, j, k = below[len(below) // 2]
    labels[i, j, k - 1] = 3
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3,))
    assert tooth.apex_to_ian_mm == 0.0
    # One empty voxel between them: two voxel-centre steps along z.
    labels[i, j, k - 1] = 0
    labels[i, j, k - 2] = 3
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3,))
    assert tooth.apex_to_ian_mm == pytest.approx(2 * SPACING[2])
    (tooth,) = tooth_measures(labels, affine)  # no IAN ids given
    assert tooth.apex_to_ian_mm is None
    (tooth,) = tooth_measures(labels, affine, ian_ids=(9,))  # ids not in the map
    assert tooth.apex_to_ian_mm is None


def test_apical_region_depth_limits_the_measure() -> None:
    # A canal beside the tooth, just above the apical region: not the apex's distance.
    affine = make_affine()
    labels, start = scene(36, affine, VERTICAL, gap_below_mm=6.0, gap_above_mm=6.0)
    points = world_grid(SHAPE, affine)
    beside = start + np.array([TOOTH_RADIUS_MM + 1.0 + 0.5, 0.0, APEX_DEPTH_MM + 3.0])
    labels[np.linalg.norm(points - beside, axis=-1) <= 0.5] = 3
    (tooth,) = tooth_measures(labels, affine, ian_ids=(3, 4))
    # Nearest apical voxel to that canal: the top of the apical region, ~3 mm below it.
    assert tooth.apex_to_ian_mm is not None and tooth.apex_to_ian_mm > 2.5


# --- files and CLI ---------------------------------------------------------------------


def write_nifti(path: Path, labels: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(labels, affine), str(path))
    return path


@pytest.fixture
def tooth_file(tmp_path: Path) -> Path:
    affine = make_affine()
    labels, _ = scene(36, affine, VERTICAL, gap_below_mm=1.5, gap_above_mm=4.0)
    labels[2:5, 2:5, 2:5] = 116  # a pulp-only upper molar far from everything
    return write_nifti(tmp_path / "teeth.nii.gz", labels, affine)


def test_tooth_measures_of_file_uses_the_file_geometry(tooth_file: Path) -> None:
    measures = by_fdi(tooth_measures_of_file(tooth_file))
    assert sorted(measures) == [16, 36]
    assert measures[36].apex_to_ian_mm == pytest.approx(1.5, abs=max(SPACING))
    assert measures[16].pulp_volume_mm3 == pytest.approx(27 * VOXEL_MM3, rel=1e-5)


def test_definitions_cover_every_field() -> None:
    assert set(TOOTH_MEASURE_DEFINITIONS) == set(ToothMeasure.__dataclass_fields__)


def test_cli_prints_the_per_tooth_table(tooth_file: Path) -> None:
    result = runner.invoke(app, ["volume", str(tooth_file), "--instances"])
    assert result.exit_code == 0, result.output
    assert "teeth of teeth.nii.gz" in result.output
    assert "apex→IAN mm" in result.output and "pulp/tooth" in result.output
    rows = [line for line in result.output.splitlines() if line.strip("│ ").startswith("36")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("│ ").split("│")]
    assert float(cells[4]) == pytest.approx(1.5, abs=max(SPACING))  # apex→IAN mm
    assert float(cells[3]) == pytest.approx(float(cells[2]) / float(cells[1]), abs=1e-3)
    assert any(line.strip("│ ").startswith("16") for line in result.output.splitlines())
    assert "instance" not in result.output


def test_cli_json_and_ian_label(tooth_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["volume", str(tooth_file), "--instances", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["fdi"]: row for row in json.loads(result.output)}
    assert rows[36]["apex_to_ian_mm"] == pytest.approx(1.5, abs=max(SPACING))
    assert rows[16]["tooth_volume_mm3"] is None
    # Only the canal above (id 4) counts: the distance is then measured to it.
    result = runner.invoke(
        app, ["volume", str(tooth_file), "--instances", "--json", "--ian-label", "4"]
    )
    rows = {row["fdi"]: row for row in json.loads(result.output)}
    assert rows[36]["apex_to_ian_mm"] > TOOTH_LENGTH_MM
    result = runner.invoke(
        app, ["volume", str(tooth_file), "--instances", "--json", "--ian-label", "9"]
    )
    assert json.loads(result.output)[1]["apex_to_ian_mm"] is None


def test_cli_csv_writes_and_refuses_to_overwrite(tooth_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "teeth.csv"
    result = runner.invoke(app, ["volume", str(tooth_file), "--instances", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["fdi"] for row in rows] == ["16", "36"]
    assert rows[0]["tooth_volume_mm3"] == ""  # None
    assert float(rows[1]["apex_to_ian_mm"]) == pytest.approx(1.5, abs=max(SPACING))
    before = out.read_text()
    again = runner.invoke(app, ["volume", str(tooth_file), "--instances", "--csv", str(out)])
    assert again.exit_code != 0
    assert isinstance(again.exception, OutputError)
    assert "already exists" in str(again.exception)
    assert out.read_text() == before


def test_cli_csv_needs_a_tooth_table(tmp_path: Path) -> None:
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 2
    path = write_nifti(tmp_path / "jaw.nii.gz", labels, make_affine())
    out = tmp_path / "x.csv"
    for args in (["--csv", str(out)], ["--instances", "--csv", str(out)]):
        result = runner.invoke(app, ["volume", str(path), *args])
        assert result.exit_code == 2, result.output
        assert not out.exists()


def test_cli_keeps_the_per_component_output_without_teeth(tmp_path: Path) -> None:
    labels = np.zeros((12, 12, 12), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 3
    labels[6:9, 6:9, 6:9] = 3
    labels[10, 10, 10] = 5
    path = write_nifti(tmp_path / "ian.nii.gz", labels, make_affine())
    result = runner.invoke(app, ["volume", str(path), "--instances", "--json"])
    assert result.exit_code == 0, result.output
    expected = [asdict(r) for r in volumes_of_file(path, instances=True)]
    assert json.loads(result.output) == json.loads(json.dumps(expected))
    table = runner.invoke(app, ["volume", str(path), "--instances"]).output
    assert "volumes of ian.nii.gz" in table and "instance" in table
    plain = runner.invoke(app, ["volume", str(path)]).output
    assert "instance" not in plain and "volumes of ian.nii.gz" in plain
