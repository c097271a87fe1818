"""Geometry and attenuation rendering of synthetic 2D dental X-rays (bitewing / periapical).

Each tooth lives in a local frame: `s` = horizontal offset from its long axis (pixels), `v` =
depth below its occlusal surface toward the root (pixels; upward for upper teeth). A crown is
an ellipse in cross-section whose mesiodistal half-width `hw(v)` bulges at the contact point
and narrows to the neck; the beam (buccolingual) path through it is the ellipse chord, so
the enamel shell projects bright at the proximal edges and cusps, as on real films. Tissue
path lengths (mm) are summed per pixel and weighted by linear attenuation (DATA.md §3), which
is why overlapping contacts come out bright and partial-thickness lesions stay subtle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

Arr = np.ndarray

# Linear attenuation per mm (DATA.md §3: enamel : dentin : bone = 0.35 : 0.24 : 0.23).
MU = {
    "enamel": 0.35,
    "dentin": 0.24,
    "bone": 0.23,
    "soft": 0.02,
    "composite": 0.10,  # radiolucent composite: darker than dentin, sharp outline
    "amalgam": 1.6,  # radiopaque: brighter than anything else
}
SURFACES = ("mesial", "distal", "occlusal")
GRADE_NAMES = ("sound", "mild", "moderate", "severe")


@dataclass
class Lesion:
    """A radiolucent wedge on one surface; `loss` = fraction of the beam path demineralised."""

    surface: str
    grade: int
    loss: float
    mask: Arr | None = None  # bool (H, W), filled when rasterised


@dataclass
class Filling:
    """A restoration (distractor, never caries): occlusal box, optionally opened to a side."""

    material: str  # composite | amalgam
    side: int  # 0 = occlusal only, +1 / -1 = class II opened toward +x / -x
    centre: float  # s of the box centre, fraction of the half-width
    half_width: float  # fraction of the half-width
    depth: float  # fraction of the crown height
    fill: float  # fraction of the beam path replaced


@dataclass
class Tooth:
    """One posterior tooth in image coordinates; `grades` = surface -> 0..3."""

    fdi: int
    cx: float
    y_occ: float
    upper: bool
    a0: float  # max mesiodistal half-width (px)
    crown_h: float
    enamel: float  # enamel thickness (px)
    bl: float  # buccolingual / mesiodistal ratio
    molar: bool
    mesial_sign: int  # +1: mesial toward +x
    cusp: float
    root_len: float
    grades: dict[str, int] = field(default_factory=dict)
    lesions: list[Lesion] = field(default_factory=list)
    fillings: list[Filling] = field(default_factory=list)
    listed: bool = True  # centre inside the image: graded and reported; else context only


def _smoothstep(x: Arr) -> Arr:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _chord(s: Arr, half: Arr | float, depth: Arr | float) -> Arr:
    """Beam path through an ellipse of half-width `half` and buccolingual half-depth `depth`."""
    half = np.maximum(half, 1e-3)
    r = 1.0 - (s / half) ** 2
    return 2.0 * np.asarray(depth) * np.sqrt(np.clip(r, 0.0, None))


def crown_half_width(t: Arr, a0: float) -> Arr:
    """Widest at the contact point (t = 0.3 of the crown height), narrow at the neck."""
    return a0 * np.where(t < 0.3, 1.0 - 1.6 * (0.3 - t) ** 2, 1.0 - 0.57 * (t - 0.3) ** 2)


def occlusal_top(s: Arr, tooth: Tooth) -> Arr:
    """Depth of the occlusal outline: cusps at 0, central fissure at `cusp` pixels."""
    u = np.clip(s / tooth.a0, -1.0, 1.0)
    if tooth.molar:
        return tooth.cusp * (0.5 + 0.5 * np.cos(2.0 * np.pi * u)) + 0.4 * tooth.cusp * u**4
    return tooth.cusp * (1.0 - np.cos(np.pi * u)) * 0.5 + 0.6 * tooth.cusp * (1 - u**2) ** 4


def local(tooth: Tooth, yy: Arr, xx: Arr) -> tuple[Arr, Arr]:
    s = xx - tooth.cx
    v = (tooth.y_occ - yy) if tooth.upper else (yy - tooth.y_occ)
    return s, v


def _enamel_at(t: Arr, e: float) -> Arr:
    return e * np.clip((1.0 - t) / 0.4, 0.0, 1.0) ** 0.7


def pulp_half_width(tooth: Tooth) -> float:
    return 0.3 * tooth.a0


def pulp_top(tooth: Tooth) -> float:
    return 0.6 * tooth.crown_h


@dataclass
class TissueMaps:
    """Per-pixel path lengths (mm) of one tooth, plus its outline for boxes and tests."""

    enamel: Arr
    dentin: Arr
    pulp: Arr
    inside: Arr  # bool: pixel covered by the tooth
    crown: Arr  # bool: pixel inside the crown


def tooth_maps(tooth: Tooth, yy: Arr, xx: Arr, mm: float) -> TissueMaps:
    """Enamel, dentin and pulp path lengths of an untouched tooth (no lesion, no filling)."""
    s, v = local(tooth, yy, xx)
    ch = tooth.crown_h
    t = v / ch
    top = occlusal_top(s, tooth)
    hw = crown_half_width(np.clip(t, 0.0, 1.0), tooth.a0)
    in_crown = (v >= top) & (t <= 1.0)
    e = _enamel_at(t, tooth.enamel)
    # Soft 1-px edge at the occlusal outline so cusps are not aliased.
    occl = _smoothstep(v - top + 0.5)
    outer = _chord(s, hw, tooth.bl * hw) * occl * (t <= 1.0)
    inner_half = np.maximum(hw - e, 1e-3)
    inner = _chord(s, inner_half, tooth.bl * inner_half)
    inner = inner * _smoothstep((v - top - tooth.enamel) / 2.0) * (t <= 1.0)
    inner = np.minimum(inner, outer)
    enamel = outer - inner
    dentin = inner.copy()
    # Root part: trunk below the neck, then one (premolar) or two (molar) tapering roots.
    rv = v - ch
    in_root = (rv > 0) & (rv < tooth.root_len)
    trunk_len = 0.25 * ch if tooth.molar else 0.15 * ch
    neck = crown_half_width(np.ones(1), tooth.a0)[0]
    trunk_hw = neck * (1.0 - 0.15 * np.clip(rv / trunk_len, 0, 1))
    # The trunk fades out where the roots separate (furcation), without a step.
    fade = (rv > 0) * (1.0 - _smoothstep((rv - 0.5 * trunk_len) / (0.8 * trunk_len)))
    trunk = _chord(s, trunk_hw, tooth.bl * trunk_hw) * fade
    roots = trunk
    pulp = np.zeros_like(s)
    offsets = (-0.45, 0.45) if tooth.molar else (0.0,)
    rw0 = 0.4 * tooth.a0 if tooth.molar else 0.62 * tooth.a0
    tt = np.clip(rv / tooth.root_len, 0.0, 1.0)
    for off in offsets:
        centre = off * tooth.a0 + 0.15 * tooth.a0 * np.sign(off) * tt**2
        rw = rw0 * np.sqrt(np.clip(1.0 - tt**2, 0.0, None)) * (1.0 - 0.45 * tt)
        # Roots are much wider buccolingually than mesiodistally (a molar's mesial root is
        # ribbon-shaped), which is why they stand out against the alveolar bone.
        depth = 0.8 * tooth.bl * tooth.a0 * rw / rw0
        root = _chord(s - centre, rw, depth) * in_root
        roots = np.maximum(roots, root)
        canal = _chord(s - centre, 0.16 * rw + 0.5, 0.2 * depth + 0.5) * in_root
        pulp = np.maximum(pulp, canal)
    dentin = dentin + roots
    # Pulp chamber with horns under the cusps, continuing into the trunk.
    ph = pulp_half_width(tooth) * (1.0 - 0.3 * np.clip((v - ch) / trunk_len, 0, 1))
    horn = 0.12 * ch * np.cos(np.pi * np.clip(s / ph, -1, 1)) ** 2 if tooth.molar else 0.0
    p_top = pulp_top(tooth) - horn
    below_roof = _smoothstep((v - p_top) / 2.0)
    chamber = _chord(s, ph, 0.7 * ph) * below_roof * (1.0 - _smoothstep(rv / trunk_len))
    pulp = np.maximum(pulp, chamber)
    pulp = np.minimum(pulp, dentin)
    dentin = dentin - pulp
    inside = (outer + roots) > 0
    return TissueMaps(enamel * mm, dentin * mm, pulp * mm, inside, in_crown & (outer > 0))


def _triangle(along: Arr, across: Arr, depth: float, half_base: float) -> Arr:
    """Wedge: base of half-width `half_base` at along = 0, apex at along = depth."""
    if depth <= 0:
        return np.zeros(along.shape, bool)
    return (along >= 0) & (along <= depth) & (np.abs(across) <= half_base * (1 - along / depth))


def lesion_mask(tooth: Tooth, lesion: Lesion, yy: Arr, xx: Arr, rng: np.random.Generator) -> Arr:
    """Rasterise a lesion wedge: enamel only (1), into outer dentin (2), toward pulp (3).

    Proximal lesions sit just below the contact point with their base on the surface;
    occlusal ones start in the central fissure. Grades >= 2 add a dentin wedge whose base
    spreads along the enamel-dentin junction, as the ICCMS radiographic scale describes.
    """
    s, v = local(tooth, yy, xx)
    ch, e = tooth.crown_h, tooth.enamel
    pw = pulp_half_width(tooth)
    if lesion.surface == "occlusal":
        s_f = 0.0
        top = float(occlusal_top(np.array([s_f]), tooth)[0])
        along = v - top
        across = s - s_f
        dentin_span = max(pulp_top(tooth) - top - e, 3.0)
    else:
        side = tooth.mesial_sign if lesion.surface == "mesial" else -tooth.mesial_sign
        v_c = ch * rng.uniform(0.3, 0.48)
        hw = float(crown_half_width(np.array([v_c / ch]), tooth.a0)[0])
        e = float(_enamel_at(np.array([v_c / ch]), tooth.enamel)[0])
        along = hw - side * s
        across = v - v_c
        dentin_span = max(hw - e - pw, 3.0)
    half_base = e * rng.uniform(0.5, 0.9) + 1.0
    if lesion.grade == 1:
        return _triangle(along, across, e * rng.uniform(0.45, 0.9), half_base)
    enamel_part = _triangle(along, across, e + 1.0, half_base)
    frac = rng.uniform(0.2, 0.5) if lesion.grade == 2 else rng.uniform(0.8, 1.15)
    dentin_part = _triangle(along - e, across, frac * dentin_span, half_base * 1.4 + 1.0)
    return enamel_part | dentin_part


def filling_region(tooth: Tooth, filling: Filling, yy: Arr, xx: Arr) -> Arr:
    """A restoration's outline: a box with sharp, regular walls (unlike a caries wedge)."""
    s, v = local(tooth, yy, xx)
    a0, ch = tooth.a0, tooth.crown_h
    top = occlusal_top(s, tooth)
    box = (np.abs(s - filling.centre * a0) <= filling.half_width * a0) & (v >= top)
    box &= v <= filling.depth * ch
    if filling.side:
        hw = crown_half_width(np.clip(v / ch, 0, 1), a0)
        slot = (filling.side * s >= filling.centre * a0) & (v <= 0.55 * ch) & (v >= top)
        slot &= filling.side * s <= hw
        box |= slot
    return box


def bone_texture(shape: tuple[int, int], rng: np.random.Generator) -> Arr:
    """Trabecular pattern: band-passed noise pushed through a sigmoid (marrow spaces)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    band = gaussian_filter(noise, 1.2) - gaussian_filter(noise, 3.5)
    band /= band.std() + 1e-6
    coarse = gaussian_filter(rng.standard_normal(shape).astype(np.float32), 12.0)
    coarse /= coarse.std() + 1e-6
    return 1.0 / (1.0 + np.exp(-1.6 * band - 0.5 * coarse))


def render(maps: dict[str, Arr], rng: np.random.Generator) -> Arr:
    """Attenuation -> exposure -> PSF blur -> quantum + electronic noise -> 12-bit film.

    Brightness is inverted transmission (dense = bright); contrast, gamma and exposure are
    jittered per image so that absolute intensity says little about caries.
    """
    att = sum(MU[k] * v for k, v in maps.items())
    k = rng.uniform(0.85, 1.15)
    transmitted = np.exp(-k * np.asarray(att, np.float64))
    transmitted = gaussian_filter(transmitted, rng.uniform(0.6, 1.2))
    photons = rng.uniform(1500, 5000)
    counts = rng.poisson(transmitted * photons) / photons
    counts = counts + rng.normal(0.0, 0.004, counts.shape)
    density = -np.log(np.clip(counts, 1e-3, None))
    # Auto-windowing as imaging software does: soft tissue near black, the densest
    # 0.5 % near white, with per-image jitter.
    lo = float(np.quantile(density, 0.02)) + rng.uniform(-0.05, 0.25)
    hi = float(np.quantile(density, 0.995)) * rng.uniform(0.95, 1.15)
    b = np.clip((density - lo) / (hi - lo), 0.0, 1.0) ** rng.uniform(0.75, 1.3)
    scale = rng.uniform(0.8, 1.0) * 4095
    return np.round(b * scale).astype(np.uint16)
