"""Rasterise a sampled jaw into one synthetic CBCT case: image, labels, tooth instances.

World geometry: NIfTI RAS+, i.e. +x points to the patient's RIGHT, +y anterior, +z
superior (the patient's LEFT is world x < 0). The grid is axis-aligned (array axes I, J, K =
world x, y, z) with the profile's spacing and a non-zero origin; the anatomy, not the grid,
gets a small random rotation. The mid-sagittal plane passes through world x = 0 near the
canines, so left structures (label 2, FDI 3x) lie at x < 0.

Image = tissue values mixed by each voxel's coverage of every shape (partial volume); labels
= which shape contains the voxel centre, priority pulp > tooth > IAN > mandible. Coverage
0.5 - sdf / spacing exceeds 0.5 exactly where the centre is inside, so both agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import expit, ndtri

from dentpy.data.synth.anatomy import Anatomy, rotation, sample_anatomy, sd_ellipsoid, smax
from dentpy.data.synth.artefacts import MetalSource, apply_artefacts
from dentpy.data.volume import IntensityImage, LabelMap
from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

Arr = np.ndarray

LABELS: dict[str, int] = {
    "background": 0,
    "mandible": 1,
    "left_ian": 2,
    "right_ian": 3,
    "tooth": 4,
    "pulp": 5,
}
PULP_INSTANCE_OFFSET = 100  # instances: tooth = FDI, its pulp = 100 + FDI (ToothFairy3 style)
_FAR = np.float32(1e4)  # "no shape here" distance for fields evaluated on crops only


@dataclass(frozen=True)
class SynthProfile:
    """Grid of one synthetic case: voxel size (isotropic) and shape (I, J, K)."""

    name: str
    spacing_mm: float
    shape: tuple[int, int, int]
    description: str

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        sx, sy, sz = self.shape
        return (sx * self.spacing_mm, sy * self.spacing_mm, sz * self.spacing_mm)


# Same field of view (~87 x 72 x 48 mm: the whole lower arch) at three resolutions; shapes
# are multiples of 8 so a 3-level U-Net needs no padding.
PROFILES: dict[str, SynthProfile] = {
    "tiny": SynthProfile("tiny", 1.0, (88, 72, 48), "1 mm voxels; seconds per case, for tests"),
    "ci": SynthProfile("ci", 0.6, (144, 120, 80), "0.6 mm voxels; a few seconds per case"),
    "full": SynthProfile("full", 0.3, (288, 240, 160), "0.3 mm voxels, like ToothFairy"),
}


@dataclass(frozen=True)
class SyntheticCase:
    image: IntensityImage  # int16 gray values
    label: LabelMap  # uint8, LABELS
    instances: LabelMap  # uint16: 0 background, tooth FDI (31-38, 41-48), pulp 100 + FDI
    # What was drawn (JSON-safe): "present", "missing", "impacted" FDI numbers, "impaction"
    # (tilt, crown top per impacted tooth) and "touching" pairs of neighbouring FDI numbers.
    teeth: dict[str, Any] = field(default_factory=dict)


def get_profile(name: str) -> SynthProfile:
    if name in PROFILES:
        return PROFILES[name]
    raise SpecError(
        f"unknown synthetic profile {name!r}",
        expected=f"one of {', '.join(PROFILES)}",
        found=repr(name),
        fix=did_you_mean(name, list(PROFILES)),
    )


def generate_case(
    seed: int, index: int, profile: str = "tiny", *, artefacts: bool = True
) -> SyntheticCase:
    """Case `index` of the dataset drawn with `seed`; the same arguments give the same arrays.

    `artefacts=False` returns the clean partial-volume image; labels do not depend on it.
    """
    prof = get_profile(profile)
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise SpecError(
                f"synthetic case: {name} must be a non-negative integer",
                expected=f"{name} >= 0",
                found=repr(value),
                fix=f"pass an integer {name} such as 0",
            )
    rng_anatomy, rng_tissue, rng_artefact, rng_variation = _streams(seed, index)
    anatomy = sample_anatomy(rng_anatomy, rng_variation)
    grid = _Grid.place(anatomy, prof, rng_anatomy)
    fields = _rasterise(anatomy, grid)
    label, instances = _labels(fields)
    image = _intensities(fields, grid.spacing, rng_tissue)
    if artefacts:
        footprint = np.asarray(label.any(axis=2))  # the FOV cylinder must keep all of it
        image = apply_artefacts(image, grid.spacing, footprint, fields.metal_sources, rng_artefact)
    image16 = np.clip(np.rint(image), -32768, 32767).astype(np.int16)
    affine = grid.affine()
    return SyntheticCase(
        image=IntensityImage(array=image16, affine=affine),
        label=LabelMap(array=label, affine=affine),
        instances=LabelMap(array=instances, affine=affine),
        teeth=copy.deepcopy(anatomy.record),
    )


def case_anatomy(seed: int, index: int) -> Anatomy:
    """The jaw (shapes in mm) behind `generate_case(seed, index, ...)`, without rasterising."""
    rng_anatomy, _, _, rng_variation = _streams(seed, index)
    return sample_anatomy(rng_anatomy, rng_variation)


def _streams(seed: int, index: int) -> list[np.random.Generator]:
    # Independent streams: anatomy, tissue appearance, artefacts. Switching artefacts off
    # therefore cannot change the anatomy or the labels. The fourth, added later, draws the
    # instance variation: a spawned child does not depend on how many siblings there are,
    # so the first three (and every draw made from them) are as they were before it.
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(4)]


# --- grid and pose --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Grid:
    shape: tuple[int, int, int]
    spacing: float
    origin: Arr  # world position of voxel (0, 0, 0)
    to_anat: Arr  # (3, 3) world -> anatomical rotation
    pivot_anat: Arr
    pivot_world: Arr

    @staticmethod
    def place(anatomy: Anatomy, prof: SynthProfile, rng: np.random.Generator) -> _Grid:
        """Centre the (randomly rotated) jaw in the grid; shrink the rotation if it would
        push labelled anatomy out of the grid."""
        shape, sp = prof.shape, prof.spacing_mm
        half = (np.array(shape) - 1) / 2 * sp
        centre = np.array([0.0, rng.uniform(-15.0, -5.0), rng.uniform(-55.0, -45.0)])
        origin = centre - half
        yaw, pitch, roll = (
            np.radians(rng.uniform(-5, 5)),
            np.radians(rng.uniform(-4, 4)),
            np.radians(rng.uniform(-3, 3)),
        )
        jitter = np.array([0.0, rng.uniform(-1.5, 1.5), rng.uniform(-1.0, 1.0)])
        lo, hi = anatomy.lo, anatomy.hi
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        pivot_anat = np.array([0.0, -8.0, 0.5 * (lo[2] + hi[2])])
        ex = np.eye(3)
        for factor in (1.0, 0.5, 0.0):
            rot = (
                rotation(ex[2], yaw * factor)
                @ rotation(ex[0], pitch * factor)
                @ rotation(ex[1], roll * factor)
            )
            moved = (corners - pivot_anat) @ rot.T
            mid = 0.5 * (moved.min(axis=0) + moved.max(axis=0))
            pivot_world = centre - mid + jitter
            pivot_world[0] = centre[0]  # keep the midline at world x = 0
            world = moved + pivot_world
            margin = 1.5 * sp
            if np.all(world.min(axis=0) >= origin + margin) and np.all(
                world.max(axis=0) <= origin + 2 * half - margin
            ):
                break
        return _Grid(shape, sp, origin, rot.T, pivot_anat, pivot_world)

    def affine(self) -> Arr:
        affine = np.diag([self.spacing] * 3 + [1.0])
        affine[:3, 3] = self.origin
        return affine

    def slices(self, anat_points: Arr, margin_mm: float) -> tuple[slice, slice, slice] | None:
        """Index box (clipped to the grid) around anatomical points, or None if outside."""
        world = (anat_points - self.pivot_anat) @ self.to_anat + self.pivot_world
        lo = np.floor((world.min(axis=0) - margin_mm - self.origin) / self.spacing).astype(int)
        hi = np.ceil((world.max(axis=0) + margin_mm - self.origin) / self.spacing).astype(int) + 1
        lo, hi = np.maximum(lo, 0), np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))

    def anat(self, box: tuple[slice, slice, slice]) -> tuple[Arr, Arr, Arr]:
        """Anatomical (u, v, w) of every voxel centre in the box, float32 arrays."""
        axes = [
            (
                self.origin[d]
                + self.spacing * np.arange(box[d].start, box[d].stop)
                - self.pivot_world[d]
            )
            for d in range(3)
        ]
        out = []
        for row in range(3):
            m = self.to_anat[row]
            value = (
                (m[0] * axes[0])[:, None, None]
                + (m[1] * axes[1])[None, :, None]
                + (m[2] * axes[2])[None, None, :]
                + self.pivot_anat[row]
            )
            out.append(value.astype(np.float32))
        return out[0], out[1], out[2]


# --- shapes on the grid -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Fields:
    mandible: Arr
    cortex: Arr
    soft: Arr
    tooth: Arr
    tooth_id: Arr
    pulp: Arr
    pulp_id: Arr
    enamel: Arr
    metal: Arr
    canal: Arr
    canal_outer: Arr  # canal plus its corticated wall
    canal_label: Arr
    metal_sources: list[MetalSource]


def _rasterise(anatomy: Anatomy, grid: _Grid) -> _Fields:
    shape = grid.shape
    whole = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    u, v, w = grid.anat(whole)
    s, n = anatomy.arch.project(u, v)
    mandible = anatomy.mandible.sdf(s, n, w)
    cortex = anatomy.mandible.cortex(s, w)
    # Soft tissue: a sleeve around the bone, lips/cheeks against the buccal surfaces of the
    # teeth, and the tongue inside the arch; air elsewhere.
    c = anatomy.cheek_offset_mm
    dn, dw = np.abs(n - (c + 5.0)) - 5.0, np.abs(w - 6.0) - 14.0
    cheek = np.sqrt(np.maximum(dn, 0) ** 2 + np.maximum(dw, 0) ** 2) + np.minimum(
        np.maximum(dn, dw), 0
    )
    cheek = smax(cheek, np.abs(s) - anatomy.mandible.ramus_end - 4.0, 2.0)
    (tc, tr) = anatomy.tongue
    tongue = sd_ellipsoid(u - tc[0], v - tc[1], w - tc[2], *tr)
    soft = np.minimum(np.minimum(mandible - anatomy.soft_margin_mm, cheek), tongue).astype(
        np.float32
    )
    del u, v, w, s, n, cheek, tongue

    tooth = np.full(shape, _FAR, dtype=np.float32)
    pulp, enamel, metal = tooth.copy(), tooth.copy(), tooth.copy()
    tooth_id = np.zeros(shape, dtype=np.uint8)
    pulp_id = np.zeros(shape, dtype=np.uint8)
    sources: list[MetalSource] = []
    for t in anatomy.teeth:
        box = grid.slices(t.extent(), margin_mm=2.0 * grid.spacing)
        if box is None:
            continue
        f = t.fields(*t.local(*grid.anat(box)))
        _take_min(tooth, tooth_id, box, f.tooth, t.fdi)
        _take_min(pulp, pulp_id, box, f.pulp, t.fdi)
        enamel[box] = np.minimum(enamel[box], f.enamel)
        if f.metal is not None:
            metal[box] = np.minimum(metal[box], f.metal)
            ii, jj, kk = np.nonzero(f.metal < 0)
            if ii.size:
                sources.append(
                    MetalSource(
                        (float(ii.mean() + box[0].start), float(jj.mean() + box[1].start)),
                        (int(kk.min() + box[2].start), int(kk.max() + box[2].start)),
                    )
                )

    canal = np.full(shape, _FAR, dtype=np.float32)
    canal_outer = canal.copy()
    canal_label = np.zeros(shape, dtype=np.uint8)
    for c_ in anatomy.canals:
        lo, hi = c_.bounds(margin=2.0 * grid.spacing)
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        box = grid.slices(corners, margin_mm=0.0)
        if box is None:
            continue
        d = c_.sdf(*grid.anat(box))
        _take_min(canal, canal_label, box, d, LABELS[f"{c_.side}_ian"])
        canal_outer[box] = np.minimum(canal_outer[box], d - np.float32(c_.wall_mm))
    return _Fields(
        mandible=mandible,
        cortex=cortex,
        soft=soft,
        tooth=tooth,
        tooth_id=tooth_id,
        pulp=pulp,
        pulp_id=pulp_id,
        enamel=enamel,
        metal=metal,
        canal=canal,
        canal_outer=canal_outer,
        canal_label=canal_label,
        metal_sources=sources,
    )


def _take_min(field: Arr, ids: Arr, box: tuple[slice, slice, slice], value: Arr, tag: int) -> None:
    """Union of per-shape distances that also remembers which shape is nearest."""
    sub, sub_ids = field[box], ids[box]
    closer = value < sub
    sub[closer] = value[closer]
    sub_ids[closer] = tag


def _labels(f: _Fields) -> tuple[Arr, Arr]:
    label = np.zeros(f.mandible.shape, dtype=np.uint8)
    label[f.mandible < 0] = LABELS["mandible"]
    # The canal is labelled inside the bone only; beyond the foramina it is soft tissue.
    ian = (f.canal < 0) & (f.mandible < 0)
    label[ian] = f.canal_label[ian]
    tooth, pulp = f.tooth < 0, f.pulp < 0
    label[tooth] = LABELS["tooth"]
    label[pulp] = LABELS["pulp"]
    instances = np.zeros(f.mandible.shape, dtype=np.uint16)
    instances[tooth] = f.tooth_id[tooth]
    instances[pulp] = f.pulp_id[pulp].astype(np.uint16) + PULP_INSTANCE_OFFSET
    return label, instances


# --- gray values --------------------------------------------------------------------------------


def _intensities(f: _Fields, spacing: float, rng: np.random.Generator) -> Arr:
    """Clean partial-volume image: each tissue painted over the ones it displaces."""
    v = {
        "soft": rng.uniform(20, 60),
        "cortical": rng.uniform(1400, 1900),
        "marrow": rng.uniform(120, 230),
        "trabecula": rng.uniform(550, 800),
        "enamel": rng.uniform(2100, 2900),
        "dentin": rng.uniform(1300, 1900),
        "pulp": rng.uniform(200, 420),
        "canal": rng.uniform(0, 100),
        "metal": rng.uniform(3500, 5000),
    }
    wall = v["cortical"] * rng.uniform(0.7, 0.9)
    dura = v["cortical"] * rng.uniform(0.55, 0.75)
    texture = _cancellous(rng, f.mandible.shape, spacing, v["marrow"], v["trabecula"])

    def cover(sdf: Arr) -> Arr:
        return np.clip(np.float32(0.5) - sdf / np.float32(spacing), 0.0, 1.0)

    img = np.full(f.mandible.shape, -1000.0, dtype=np.float32)

    def paint(weight: Arr, value: Arr | float) -> None:
        img[...] += weight * (np.asarray(value, dtype=np.float32) - img)

    paint(cover(f.soft), v["soft"])
    bone = cover(f.mandible)
    paint(bone, v["cortical"])
    inner = cover(f.mandible + f.cortex)
    paint(inner, texture)
    # Lamina dura (bright socket wall) and periodontal ligament (dark gap) around roots.
    paint(inner * cover(f.tooth - 0.8), dura)
    paint(inner * cover(f.tooth - 0.3), v["soft"])
    # IAN canal: corticated wall, soft contents; painted inside the bone only.
    paint(bone * cover(f.canal_outer), wall)
    paint(bone * cover(f.canal), v["canal"])
    paint(cover(f.tooth), v["dentin"])
    paint(cover(f.enamel), v["enamel"])
    paint(cover(f.pulp), v["pulp"])
    paint(cover(f.metal), v["metal"])
    return img


def _cancellous(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spacing: float,
    marrow: float,
    trabecula: float,
) -> Arr:
    """Trabecular texture: thresholded smooth noise (bright struts, dark marrow spaces)."""
    fraction = rng.uniform(0.3, 0.42)
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = gaussian_filter(noise, max(0.7 / spacing, 0.6))
    field /= max(float(field.std()), 1e-6)
    # Struts (0.1-0.3 mm) and marrow spaces are far below a 1 mm voxel: coarse voxels average
    # several of them, so edges soften and contrast shrinks toward the mean bone density.
    softness = 0.2 + 0.3 * spacing
    strut = expit((field - ndtri(1.0 - fraction)) / softness)
    keep = float(np.clip((0.35 / spacing) ** 0.8, 0.35, 1.0))
    strut = fraction + (strut - fraction) * keep
    return (marrow + (trabecula - marrow) * strut).astype(np.float32)
