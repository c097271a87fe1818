"""Procedural 2D dental X-rays with graded caries: bitewings and periapicals (DATA.md §3).

`generate_xray(seed, index, kind)` draws one image from a numpy Generator seeded with
(seed, index), so any image can be regenerated alone and the same arguments give the same
pixels. Posterior teeth in occlusion (or one jaw with roots for a periapical) are rendered
with an attenuation model; caries are radiolucent wedges graded on the ICCMS radiographic
depth scale (1 enamel, 2 outer/middle dentin, 3 inner dentin/pulp). Distractors that are not
caries (cervical burnout, composite and amalgam fillings, overlapping contacts) and per-image
exposure jitter keep the task from being solvable by a threshold.

The writer lives in `xray_writers.py`; `write_xray_dataset` is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from dentpy.data.synth.xray_anatomy import (
    SURFACES,
    Filling,
    Lesion,
    Tooth,
    bone_texture,
    filling_region,
    lesion_mask,
    local,
    render,
    tooth_maps,
)
from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

Arr = np.ndarray
KINDS = ("bitewing", "periapical")  # intraoral kinds drawn by `generate_xray`
# Every kind the writer knows; panoramics come from `panoramic.generate_panoramic`.
ALL_KINDS = (*KINDS, "panoramic")
# (height, width) in pixels and mm per pixel.
_GRID = {"bitewing": ((256, 384), 0.1), "periapical": ((320, 256), 0.1)}
# Tooth-level worst grade: sound, mild, moderate, severe (most teeth sound; mild > moderate).
WORST_GRADE_P = (0.61, 0.21, 0.12, 0.06)
# Mesiodistal crown width (mm) by tooth position 4..8, upper and lower.
_WIDTH_MM = {
    True: {4: 7.0, 5: 6.6, 6: 10.0, 7: 9.0, 8: 8.5},
    False: {4: 7.0, 5: 7.1, 6: 11.0, 7: 10.5, 8: 10.0},
}
_LOSS = {1: (0.25, 0.5), 2: (0.35, 0.65), 3: (0.45, 0.8)}  # beam path demineralised


@dataclass(frozen=True)
class XrayTooth:
    """One tooth in the image: FDI number, per-surface grades and its box (pixel edges)."""

    fdi: int
    grades: dict[str, int]
    box: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max (exclusive max)

    @property
    def worst(self) -> int:
        return max(self.grades.values())


@dataclass(frozen=True)
class XrayLesion:
    """One lesion region: which tooth and surface, its grade and bounding box."""

    fdi: int
    surface: str
    grade: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class XraySample:
    """A generated X-ray: 12-bit image in uint16, lesion mask (0, or the grade 1..3), teeth,
    lesions, and `tooth_map` (0 background, i + 1 for teeth[i]) for checks and crops."""

    image: Arr
    mask: Arr
    teeth: tuple[XrayTooth, ...]
    lesions: tuple[XrayLesion, ...]
    tooth_map: Arr
    patient: str
    kind: str


def check_kind(kind: str, kinds: tuple[str, ...] = KINDS) -> None:
    if kind not in kinds:
        raise SpecError(
            f"unknown synthetic X-ray kind {kind!r}",
            expected=f"one of {', '.join(kinds)}",
            found=repr(kind),
            fix="panoramics come from dentpy.data.synth.panoramic.generate_panoramic"
            if kind in ALL_KINDS
            else did_you_mean(kind, list(kinds)),
        )


def patient_of(index: int) -> str:
    """Two consecutive images (right and left side) belong to one synthetic patient."""
    return f"patient_{index // 2:03d}"


def _sample_grades(rng: np.random.Generator) -> dict[str, int]:
    worst = int(rng.choice(4, p=WORST_GRADE_P))
    grades = dict.fromkeys(SURFACES, 0)
    if worst == 0:
        return grades
    primary = str(rng.choice(SURFACES, p=(0.4, 0.4, 0.2)))
    grades[primary] = worst
    for surface in SURFACES:
        if surface != primary and rng.random() < 0.2:
            grades[surface] = int(rng.integers(1, worst + 1))
    return grades


def _sample_fillings(rng: np.random.Generator, tooth: Tooth) -> list[Filling]:
    if rng.random() > 0.2:
        return []
    material = "amalgam" if rng.random() < 0.5 else "composite"
    side = 0
    r = rng.random()
    if r < 0.3 and tooth.grades["mesial"] == 0:
        side = tooth.mesial_sign
    elif r < 0.6 and tooth.grades["distal"] == 0:
        side = -tooth.mesial_sign
    return [
        Filling(
            material=material,
            side=side,
            centre=float(rng.uniform(-0.15, 0.15)),
            half_width=float(rng.uniform(0.2, 0.4)),
            depth=float(rng.uniform(0.25, 0.45)),
            fill=float(rng.uniform(0.45, 0.8)),
        )
    ]


def _teeth_row(
    rng: np.random.Generator,
    upper: bool,
    right: bool,
    start: float,
    plane: float,
    positions: list[int],
    mm: float,
    width: int,
) -> list[Tooth]:
    """Teeth of one jaw from mesial to distal, contacts touching, overlapping or apart."""
    mesial_sign = 1 if right else -1
    quadrant = (1 if right else 2) if upper else (4 if right else 3)
    teeth: list[Tooth] = []
    edge = start  # x of the current tooth's mesial surface
    for pos in positions:
        a0 = _WIDTH_MM[upper][pos] / mm / 2 * rng.uniform(0.93, 1.07)
        cx = edge - mesial_sign * a0
        molar = pos >= 6
        crown_mm = (6.6 if molar else 7.8) * rng.uniform(0.92, 1.08)
        tooth = Tooth(
            fdi=quadrant * 10 + pos,
            cx=float(cx),
            y_occ=plane,
            upper=upper,
            a0=float(a0),
            crown_h=crown_mm / mm,
            enamel=float(rng.uniform(1.1, 1.6) / mm),
            bl=float(rng.uniform(1.0, 1.15) if molar else rng.uniform(1.15, 1.35)),
            molar=molar,
            mesial_sign=mesial_sign,
            cusp=float(rng.uniform(0.8, 1.5) / mm),
            root_len=float(rng.uniform(12.0, 14.5) / mm),
        )
        # Contact overlap (bright band) or open contact: -0.4 mm gap .. 0.8 mm overlap.
        edge = cx - mesial_sign * (a0 - rng.uniform(-0.4, 0.8) / mm)
        # Teeth cut by the border are drawn (an empty gap would look wrong) but only those
        # whose centre is inside the image are graded and reported.
        tooth.listed = a0 * 0.2 < cx < width - a0 * 0.2
        if -a0 < cx < width + a0:
            teeth.append(tooth)
    return teeth


def _layout(
    rng: np.random.Generator, kind: str, right: bool, shape: tuple[int, int], mm: float
) -> tuple[list[Tooth], dict[bool, float]]:
    height, width = shape
    mesial_sign = 1 if right else -1
    mesial_edge = width if right else 0.0
    if kind == "bitewing":
        plane = height / 2 + rng.uniform(-12, 12)
        gap = rng.uniform(0.0, 0.4) / mm
        positions = [4, 5, 6, 7, 8]
        planes = {True: plane - gap / 2, False: plane + gap / 2}
        start_up = mesial_edge + mesial_sign * rng.uniform(0.5, 2.5) / mm
        start_lo = start_up + mesial_sign * rng.uniform(-0.5, 1.0) / mm
        teeth = _teeth_row(rng, True, right, start_up, planes[True], positions, mm, width)
        teeth += _teeth_row(rng, False, right, start_lo, planes[False], positions, mm, width)
        return teeth, planes
    upper = bool(rng.random() < 0.5)
    margin = rng.uniform(3.0, 5.0) / mm
    plane = height - margin if upper else margin
    first = int(rng.integers(4, 7))
    positions = list(range(first, 9))
    start = mesial_edge + mesial_sign * rng.uniform(0.5, 3.0) / mm
    teeth = _teeth_row(rng, upper, right, start, plane, positions, mm, width)
    return teeth, {upper: plane}


def _bone(
    rng: np.random.Generator,
    teeth: list[Tooth],
    planes: dict[bool, float],
    yy: Arr,
    xx: Arr,
    mm: float,
    roots: Arr,
) -> Arr:
    """Alveolar bone path (mm) with trabecular texture and a cortical crest line.

    The crest lies 1-2.5 mm beyond the enamel-cement junction: the bare neck between enamel
    and bone is what reads as cervical burnout.
    """
    shape = yy.shape
    tex = bone_texture(shape, rng)
    bone = np.zeros(shape, np.float64)
    x = xx[0]
    socket = (roots > 0.2).astype(np.float64)
    lamina = np.clip(gaussian_filter(socket, 1.2) - socket, 0.0, None)
    for upper, plane in planes.items():
        jaw = [t for t in teeth if t.upper == upper]
        crown = float(np.mean([t.crown_h for t in jaw])) if jaw else 7.0 / mm
        wiggle = gaussian_filter(rng.standard_normal(x.size), 25) * 6.0
        crest = crown + rng.uniform(1.0, 2.5) / mm + wiggle
        for t in jaw:  # interdental septa rise toward the contacts
            crest = crest - 0.6 / mm * np.exp(-(((np.abs(x - t.cx) - t.a0) / (0.25 * t.a0)) ** 2))
        depth = (plane - yy) if upper else (yy - plane)
        beyond = depth - crest[None, :]
        thick = rng.uniform(8.0, 10.0)
        density = 0.3 + 0.25 * tex
        # Sockets: the root displaces marrow-filled bone along its share of the beam.
        present = np.clip(thick - roots, 0.0, None)
        jaw_bone = present * density * np.clip(beyond / (1.0 / mm), 0.0, 1.0)
        jaw_bone += 1.5 * np.exp(-((beyond / 2.0) ** 2)) * (beyond > -1.5)
        # Lamina dura: the thin cortical socket wall, a bright line just outside each root.
        jaw_bone += 2.0 * lamina * np.clip(beyond / (1.0 / mm), 0.0, 1.0)
        bone += jaw_bone
    return bone


def generate_xray(seed: int, index: int, kind: str = "bitewing") -> XraySample:
    """One synthetic X-ray: image, lesion mask, graded teeth. Pure function of its inputs."""
    check_kind(kind)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), KINDS.index(kind)])
    shape, mm = _GRID[kind]
    right = index % 2 == 0
    teeth, planes = _layout(rng, kind, right, shape, mm)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    enamel = np.zeros(shape)
    dentin = np.zeros(shape)
    pulp = np.zeros(shape)
    composite = np.zeros(shape)
    amalgam = np.zeros(shape)
    mask = np.zeros(shape, np.uint8)
    tooth_map = np.zeros(shape, np.uint8)
    roots = np.zeros(shape)
    out_teeth: list[XrayTooth] = []
    out_lesions: list[XrayLesion] = []
    for tooth in teeth:
        tooth.grades = _sample_grades(rng) if tooth.listed else dict.fromkeys(SURFACES, 0)
        tooth.fillings = _sample_fillings(rng, tooth)
        x0 = max(int(tooth.cx - tooth.a0 * 1.1) - 2, 0)
        x1 = min(int(tooth.cx + tooth.a0 * 1.1) + 3, shape[1])
        win = (slice(None), slice(x0, x1))
        ty, tx = yy[win], xx[win]
        maps = tooth_maps(tooth, ty, tx, mm)
        lesion_union = np.zeros(ty.shape, bool)
        for surface in SURFACES:
            grade = tooth.grades[surface]
            if grade == 0:
                continue
            lesion = Lesion(surface, grade, float(rng.uniform(*_LOSS[grade])))
            region = lesion_mask(tooth, lesion, ty, tx, rng) & maps.crown
            if not region.any():
                tooth.grades[surface] = 0
                continue
            lesion.mask = region
            tooth.lesions.append(lesion)
            lesion_union |= region
            soft = gaussian_filter(region.astype(np.float64), 0.9)
            keep = 1.0 - lesion.loss * np.clip(soft * 1.6, 0.0, 1.0)
            maps.enamel *= keep
            maps.dentin *= keep
        for filling in tooth.fillings:
            region = filling_region(tooth, filling, ty, tx) & maps.crown & ~lesion_union
            part = filling.fill * region
            material = amalgam if filling.material == "amalgam" else composite
            material[win] += part * (maps.enamel + maps.dentin)
            maps.enamel *= 1.0 - part
            maps.dentin *= 1.0 - part
        enamel[win] += maps.enamel
        dentin[win] += maps.dentin
        pulp[win] += maps.pulp
        _, v = local(tooth, ty, tx)
        roots[win] += (maps.dentin + maps.pulp) * (v > tooth.crown_h)
        if not tooth.listed:
            continue
        tooth_map[win][maps.inside] = len(out_teeth) + 1
        for lesion in sorted(tooth.lesions, key=lambda les: les.grade):
            region = lesion.mask if lesion.mask is not None else np.zeros(ty.shape, bool)
            mask[win][region] = np.maximum(mask[win][region], lesion.grade)
            out_lesions.append(
                XrayLesion(tooth.fdi, lesion.surface, lesion.grade, _bbox(region, x0))
            )
        out_teeth.append(XrayTooth(tooth.fdi, dict(tooth.grades), _bbox(maps.inside, x0)))
    bone = _bone(rng, teeth, planes, yy, xx, mm, roots)
    soft = np.full(shape, rng.uniform(18.0, 30.0))
    image = render(
        {
            "enamel": enamel,
            "dentin": dentin,
            "bone": bone,
            "soft": soft + pulp,
            "composite": composite,
            "amalgam": amalgam,
        },
        rng,
    )
    return XraySample(
        image, mask, tuple(out_teeth), tuple(out_lesions), tooth_map, patient_of(index), kind
    )


def _bbox(region: Arr, x_offset: int) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return (x_offset, 0, x_offset + 1, 1)
    return (
        int(cols[0]) + x_offset,
        int(rows[0]),
        int(cols[-1]) + 1 + x_offset,
        int(rows[-1]) + 1,
    )


def write_xray_dataset(
    out: Path, images: int = 60, seed: int = 0, kind: str = "bitewing"
) -> dict[str, Path]:
    """Write `images` X-rays and every derived layout under `out/XraySynth`; see
    `xray_writers.write_xray_dataset` (imported lazily: the writer imports this module)."""
    from dentpy.data.synth import xray_writers

    return xray_writers.write_xray_dataset(out, images=images, seed=seed, kind=kind)


__all__ = [
    "ALL_KINDS",
    "KINDS",
    "XrayLesion",
    "XraySample",
    "XrayTooth",
    "generate_xray",
    "write_xray_dataset",
]
