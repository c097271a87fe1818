"""Procedural panoramic radiographs (orthopantomograms) with numbered teeth and graded caries.

`generate_panoramic(seed, index)` draws one image on a 256 x 640 pixel grid at 0.3 mm per
pixel (77 x 192 mm) from a numpy Generator seeded with (seed, index): same arguments, same
pixels. All 32 permanent teeth sit along a smile-shaped occlusal curve, each tilted
perpendicular to it (plus jitter), rendered with the attenuation model of the intraoral
generator (`xray_anatomy`): enamel caps, dentin, pulp chambers and canals, one or two roots.
Around them: maxilla with sinus floors, hard palate and nasal cavity, mandible with rami,
cortical lower border and mandibular canals, a blurred spine ghost, the palatoglossal air
space and a soft background gradient. Per image: missing teeth (third molars often, others
rarely), size / tilt / position jitter, fillings and metal crowns (bright, not caries) and
radiolucent caries graded as in `xray.py`, so tooth boxes (class = FDI number) and lesion
boxes both exist.

Radiological convention: the patient's right is on the image's left, so FDI quadrant 1 is
upper left, 2 upper right, 3 lower right and 4 lower left of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from dentpy.data.synth.xray import XrayLesion, XraySample, XrayTooth
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

Arr = np.ndarray
SHAPE = (256, 640)  # (height, width) pixels
MM = 0.3  # mm per pixel
# FDI numbers in class order: quadrants 1..4, teeth 1..8.
FDI_ORDER = tuple(q * 10 + t for q in range(1, 5) for t in range(1, 9))
# Per tooth position 1..8: mesiodistal crown width, crown height, root length (mm).
_UPPER = {
    1: (8.5, 10.5, 13.0),
    2: (6.5, 9.0, 13.0),
    3: (7.5, 10.0, 17.0),
    4: (7.0, 8.5, 14.0),
    5: (6.5, 7.8, 14.0),
    6: (10.0, 7.5, 12.5),
    7: (9.0, 7.0, 12.0),
    8: (8.5, 6.5, 10.5),
}
_LOWER = {
    1: (5.2, 9.0, 12.5),
    2: (5.8, 9.5, 14.0),
    3: (7.0, 11.0, 16.0),
    4: (7.0, 8.5, 14.0),
    5: (7.0, 8.0, 14.5),
    6: (11.0, 7.5, 14.0),
    7: (10.5, 7.0, 13.0),
    8: (10.0, 7.0, 11.0),
}
# Buccolingual / mesiodistal ratio by position (incisors are thin mesiodistally).
_BL = {1: 0.85, 2: 1.0, 3: 1.08, 4: 1.25, 5: 1.2, 6: 1.05, 7: 1.05, 8: 1.05}
# Tooth-level worst grade: sound, mild, moderate, severe (a panoramic has 32 teeth).
WORST_GRADE_P = (0.86, 0.07, 0.05, 0.02)
_LOSS = {1: (0.25, 0.5), 2: (0.35, 0.65), 3: (0.45, 0.8)}


@dataclass(frozen=True, eq=False)
class PanoramicSample(XraySample):
    """An `XraySample` plus, per tooth, its own pixels cropped to its box (overlapping
    teeth share pixels, so `tooth_map` alone cannot show a tooth's full outline)."""

    tooth_masks: tuple[Arr, ...] = ()


def patient_of(index: int) -> str:
    """One panoramic per synthetic patient."""
    return f"patient_{index:03d}"


def _curve(x: Arr | float, mid: float, centre: float, depth: float, half: float) -> Arr:
    """Smile-shaped occlusal curve: lowest at the midline, rising toward the molars."""
    u = (np.asarray(x, np.float64) - centre) / half
    return mid - depth * u**2


def _missing(rng: np.random.Generator, pos: int) -> bool:
    if pos == 8:
        return bool(rng.random() < 0.4)
    if pos in (6, 7):
        return bool(rng.random() < 0.04)
    return bool(rng.random() < 0.015)


@dataclass
class _Placed:
    tooth: Tooth
    angle: float  # radians; tooth axis perpendicular to the curve plus jitter
    present: bool
    anterior: bool


def _layout(rng: np.random.Generator) -> tuple[list[_Placed], dict[str, float]]:
    height, width = SHAPE
    centre = width / 2 + rng.uniform(-10, 10)
    mid = height * 0.52 + rng.uniform(-6, 6)
    depth = rng.uniform(6.0, 9.0) / MM
    half = 205.0
    gap = rng.uniform(0.5, 2.0) / MM
    scale = rng.uniform(0.95, 1.05)
    geo = {"centre": centre, "mid": mid, "depth": depth, "half": half, "gap": gap}
    placed: list[_Placed] = []
    for upper in (True, False):
        table = _UPPER if upper else _LOWER
        for right in (True, False):  # patient's right = image left
            quadrant = (1 if right else 2) if upper else (4 if right else 3)
            mesial_sign = 1 if right else -1
            edge = centre - mesial_sign * rng.uniform(0.0, 0.4) / MM
            for pos in range(1, 9):
                w_mm, crown_mm, root_mm = table[pos]
                a0 = w_mm * scale / MM / 2 * rng.uniform(0.94, 1.06)
                slope = -2.0 * depth * (edge - mesial_sign * a0 - centre) / half**2
                tilt = math.atan(slope)
                step = a0 * math.cos(tilt)
                cx = edge - mesial_sign * step
                shift = gap / 2 + (1.0 / MM) * ((cx - centre) / half) ** 2
                plane = float(_curve(cx, mid, centre, depth, half))
                y_occ = plane - shift if upper else plane + shift
                y_occ += rng.uniform(-0.4, 0.4) / MM
                molar = pos >= 6
                anterior = pos <= 3
                if pos in (1, 2):
                    cusp = rng.uniform(0.2, 0.5)
                elif pos == 3:
                    cusp = rng.uniform(1.5, 2.3)
                else:
                    cusp = rng.uniform(0.8, 1.5)
                tooth = Tooth(
                    fdi=quadrant * 10 + pos,
                    cx=float(cx),
                    y_occ=float(y_occ),
                    upper=upper,
                    a0=float(a0),
                    crown_h=crown_mm * scale * rng.uniform(0.93, 1.07) / MM,
                    enamel=float(rng.uniform(1.1, 1.6) / MM),
                    bl=_BL[pos] * float(rng.uniform(0.93, 1.07)),
                    molar=molar,
                    mesial_sign=mesial_sign,
                    cusp=float(cusp / MM),
                    root_len=root_mm * scale * rng.uniform(0.9, 1.08) / MM,
                )
                # Roots of posterior teeth lean distally a little; every tooth jitters.
                lean = (0.06 if molar else 0.02) * mesial_sign * (1 if upper else -1)
                angle = tilt + lean + rng.normal(0.0, 0.035)
                present = not _missing(rng, pos)
                placed.append(_Placed(tooth, float(angle), present, anterior))
                # Contacts: tight, slightly overlapping (bright band) or slightly open.
                edge = cx - mesial_sign * (step - rng.uniform(-0.3, 0.5) / MM)
    return placed, geo


def _frame(p: _Placed, yy: Arr, xx: Arr) -> tuple[Arr, Arr]:
    """Image coordinates -> the tooth's upright frame (rotated about its occlusal centre)."""
    t = p.tooth
    c, s = math.cos(p.angle), math.sin(p.angle)
    dx, dy = xx - t.cx, yy - t.y_occ
    return t.y_occ - dx * s + dy * c, t.cx + dx * c + dy * s


def _window(p: _Placed) -> tuple[slice, slice]:
    t = p.tooth
    length = t.crown_h + t.root_len + 4.0
    reach = t.a0 * 1.3 + abs(math.sin(p.angle)) * length + 4.0
    x0, x1 = int(t.cx - reach), int(t.cx + reach) + 2
    if t.upper:
        y0, y1 = int(t.y_occ - length - t.a0 * abs(math.sin(p.angle))) - 2, int(t.y_occ + reach)
    else:
        y0, y1 = int(t.y_occ - reach), int(t.y_occ + length + t.a0 * abs(math.sin(p.angle))) + 2
    height, width = SHAPE
    return slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width))


def _sample_grades(rng: np.random.Generator, anterior: bool) -> dict[str, int]:
    worst = int(rng.choice(4, p=WORST_GRADE_P))
    grades = dict.fromkeys(SURFACES, 0)
    if worst == 0:
        return grades
    surfaces = ("mesial", "distal") if anterior else SURFACES
    p = (0.5, 0.5) if anterior else (0.4, 0.4, 0.2)
    primary = str(rng.choice(surfaces, p=p))
    grades[primary] = worst
    for surface in surfaces:
        if surface != primary and rng.random() < 0.15:
            grades[surface] = int(rng.integers(1, worst + 1))
    return grades


def _sample_fillings(rng: np.random.Generator, tooth: Tooth, anterior: bool) -> list[Filling]:
    r = rng.random()
    if not anterior and r < 0.04:  # full metal crown
        return [Filling("amalgam", 0, 0.0, 1.2, 1.02, float(rng.uniform(0.8, 0.95)))]
    if r > (0.06 if anterior else 0.18):
        return []
    if anterior:  # class III composite on a proximal surface
        side = tooth.mesial_sign if rng.random() < 0.5 else -tooth.mesial_sign
        return [Filling("composite", side, side * 0.5, 0.35, 0.5, float(rng.uniform(0.5, 0.8)))]
    material = "amalgam" if rng.random() < 0.6 else "composite"
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
            fill=float(rng.uniform(0.5, 0.85)),
        )
    ]


def _bbox(region: Arr, y_offset: int, x_offset: int) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return (x_offset, y_offset, x_offset + 1, y_offset + 1)
    return (
        int(cols[0]) + x_offset,
        int(rows[0]) + y_offset,
        int(cols[-1]) + 1 + x_offset,
        int(rows[-1]) + 1 + y_offset,
    )


def _smooth(x: Arr) -> Arr:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _anatomy(
    rng: np.random.Generator,
    placed: list[_Placed],
    geo: dict[str, float],
    roots: Arr,
    yy: Arr,
    xx: Arr,
) -> tuple[Arr, Arr]:
    """Bone path (mm) and soft-tissue path (mm) of everything around the teeth."""
    height, width = SHAPE
    x = xx[0]
    centre, half = geo["centre"], geo["half"]
    d = np.abs(xx - centre)  # distance from the midline (the jaws are near-symmetric)
    u = (x - centre) / half
    tex = bone_texture(SHAPE, rng)
    fine = bone_texture(SHAPE, rng)
    bone = np.zeros(SHAPE)
    # Alveolar crests 1-2 mm beyond each tooth's neck, interpolated between teeth; the
    # ridge sinks where a tooth is missing.
    socket = (roots > 0.2).astype(np.float64)
    lamina = np.clip(gaussian_filter(socket, 1.0) - socket, 0.0, None)
    jaws = {}
    for upper in (True, False):
        jaw = sorted((p for p in placed if p.tooth.upper == upper), key=lambda p: p.tooth.cx)
        xs = np.array([p.tooth.cx for p in jaw])
        neck = np.array(
            [
                p.tooth.y_occ + (-1 if upper else 1) * (p.tooth.crown_h + 1.5 / MM)
                if p.present
                else p.tooth.y_occ + (-1 if upper else 1) * (p.tooth.crown_h + 4.0 / MM)
                for p in jaw
            ]
        )
        crest = np.interp(x, xs, neck)
        crest = gaussian_filter(crest, 3.0)
        crest += gaussian_filter(rng.standard_normal(width), 20) * 4.0
        for p in jaw:  # interdental septa rise toward the contacts
            t = p.tooth
            crest += (
                (1 if upper else -1)
                * 0.8
                / MM
                * np.exp(-(((np.abs(x - t.cx) - t.a0) / (0.3 * t.a0)) ** 2))
            )
        jaws["upper" if upper else "lower"] = crest
    up_crest, lo_crest = jaws["upper"], jaws["lower"]
    # Behind the last molars the lower ridge climbs into the ramus' anterior border
    # (coronoid process); the upper ridge ends at the tuberosity.
    beyond = np.clip((np.abs(u) - 1.02) / 0.14, 0.0, None)
    lo_crest = np.maximum(lo_crest - beyond**1.3 * 160.0, 12.0)
    up_crest = up_crest + np.clip((np.abs(u) - 1.02) / 0.15, 0.0, None) ** 2 * 25.0

    # Maxilla: from the crest up; fades out past the tuberosity.
    above = up_crest[None, :] - yy
    maxilla = _smooth(above / (1.0 / MM)) * _smooth((half * 1.16 - d) / 25.0)
    thick_up = rng.uniform(8.0, 11.0)
    # Maxillary sinuses: radiolucent domes over the premolar/molar roots.
    sinus = np.zeros(SHAPE)
    wobble = gaussian_filter(rng.standard_normal(SHAPE), 10.0)
    wobble /= wobble.std() + 1e-6
    apex_y = float(np.interp(centre, x, up_crest)) - rng.uniform(17.0, 20.0) / MM
    for side in (-1, 1):
        sx = centre + side * half * rng.uniform(0.6, 0.7)
        sy = apex_y - rng.uniform(8.0, 20.0)
        rx, ry = rng.uniform(75, 95), rng.uniform(35, 45)
        inside = ((xx - sx) / rx) ** 2 + ((yy - sy) / ry) ** 2
        inside = inside + 0.08 * wobble  # irregular, lobed outline
        sinus = np.maximum(sinus, _smooth((1.0 - inside) / 0.35))
        floor = np.exp(-(((np.sqrt(np.clip(inside, 0, None)) - 1.0) / 0.04) ** 2))
        bone += 1.8 * floor * _smooth((yy - sy) / (0.4 * ry))
    # Nasal cavity above the incisors and the hard palate line above the apices.
    nasal = _smooth((apex_y - 6 - yy) / 10.0) * _smooth((75.0 - d) / 25.0)
    palate_y = apex_y + 0.0006 * (xx - centre) ** 2 + rng.uniform(-3, 3)
    palate = np.exp(-(((yy - palate_y) / 3.5) ** 2)) * _smooth((half * 1.15 - d) / 40.0)
    bone += 2.5 * palate
    density_up = 0.4 + 0.2 * tex
    bone += maxilla * thick_up * density_up * (1.0 - 0.55 * sinus) * (1.0 - 0.6 * nasal)

    # Mandible: from the crest (climbing into the ramus) down to the cortical lower border,
    # out to the posterior ramus border.
    border = (
        height + rng.uniform(-4, 10) - (np.clip(np.abs(u), 0, 1.4) ** 2) * rng.uniform(24.0, 34.0)
    )
    post = half * rng.uniform(1.44, 1.5) - 0.06 * (
        height - yy
    )  # posterior ramus border (distance from centre)
    mandible = _smooth((yy - lo_crest[None, :]) / (1.0 / MM))
    mandible = mandible * _smooth((border[None, :] - yy) / 2.0) * _smooth((post - d) / 3.0)
    # Sigmoid notch between the coronoid process (front) and the condyle (back).
    notch_d = half * rng.uniform(1.3, 1.34)
    notch = 8.0 + rng.uniform(35.0, 50.0) * np.exp(-(((d - notch_d) / 16.0) ** 2))
    mandible = mandible * _smooth((yy - notch) / 4.0)
    thick_lo = rng.uniform(10.0, 13.0)
    # Mandibular canals: dark bands with thin bright walls, ramus down under the molars.
    canal_y = border[None, :] - rng.uniform(9.0, 12.0) / MM + 0.004 * (d - half * 1.2) ** 2
    canal_y = np.minimum(canal_y, border[None, :] - 6.0 / MM)
    dist = yy - canal_y
    reach = _smooth((d - half * 0.5) / 25.0) * _smooth((half * 1.3 - d) / 15.0)
    in_canal = np.exp(-((dist / 4.0) ** 2)) * reach
    walls = np.exp(-(((np.abs(dist) - 5.0) / 1.2) ** 2)) * reach
    cortex = np.exp(-(((border[None, :] - yy - 3.0) / 3.0) ** 2))
    cortex += np.exp(-(((post - d - 3.0) / 3.0) ** 2)) * (yy < border[None, :])
    density_lo = 0.4 + 0.2 * fine
    bone += mandible * thick_lo * density_lo * (1.0 - 0.45 * in_canal)
    bone += mandible * (2.0 * walls + 3.5 * cortex)
    # Ghost shadows: the contralateral mandible, projected higher, wider and blurred, and a
    # faint haze of out-of-layer structures.
    lift = int(rng.integers(25, 40))
    ghost = np.zeros(SHAPE)
    ghost[: height - lift] = gaussian_filter(mandible[lift:, ::-1], 9.0)
    bone += ghost * rng.uniform(1.2, 2.0) + rng.uniform(0.6, 1.2)
    # Lamina dura and crest cortex.
    bone += 2.0 * lamina * (maxilla + mandible)
    # Spine ghost: a blurred vertical radiopacity over the midline, stronger low down.
    spine = np.exp(-(((xx - centre) / rng.uniform(28.0, 40.0)) ** 2)) * _smooth(yy / height)
    bone += spine * rng.uniform(4.0, 7.0)
    # Soft tissue: head thickness with a low-frequency gradient; the palatoglossal air space
    # (dark band under the palate) and darker corners.
    soft = np.full(SHAPE, rng.uniform(22.0, 32.0))
    soft += gaussian_filter(rng.standard_normal(SHAPE), 40.0) * 200.0
    soft -= 10.0 * ((xx - centre) / (width / 2)) ** 2 + 6.0 * (1.0 - yy / height) ** 2
    air_y = palate_y + rng.uniform(6.0, 12.0)
    air = np.exp(-(((yy - air_y) / rng.uniform(5.0, 9.0)) ** 2)) * _smooth((half * 1.05 - d) / 40)
    soft -= rng.uniform(8.0, 14.0) * air * (d > 40)
    # Tongue and soft palate fill the space between the jaws below the air space.
    tongue = _smooth((yy - air_y - 6.0) / 12.0) * _smooth((half * 1.25 - d) / 30.0)
    soft += rng.uniform(15.0, 25.0) * tongue
    return bone, np.clip(soft, 3.0, None)


def generate_panoramic(seed: int, index: int) -> PanoramicSample:
    """One synthetic panoramic: image, lesion mask, numbered teeth. Pure function of inputs."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), 7])
    placed, geo = _layout(rng)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float64)
    enamel, dentin, pulp = np.zeros(SHAPE), np.zeros(SHAPE), np.zeros(SHAPE)
    composite, amalgam, roots = np.zeros(SHAPE), np.zeros(SHAPE), np.zeros(SHAPE)
    mask = np.zeros(SHAPE, np.uint8)
    tooth_map = np.zeros(SHAPE, np.uint8)
    teeth: list[tuple[XrayTooth, Arr]] = []
    lesions: list[XrayLesion] = []
    for p in placed:
        if not p.present:
            continue
        tooth = p.tooth
        tooth.grades = _sample_grades(rng, p.anterior)
        tooth.fillings = _sample_fillings(rng, tooth, p.anterior)
        win = _window(p)
        ty, tx = _frame(p, yy[win], xx[win])
        maps = tooth_maps(tooth, ty, tx, MM)
        union = np.zeros(ty.shape, bool)
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
            union |= region
            keep = 1.0 - lesion.loss * np.clip(
                gaussian_filter(region.astype(np.float64), 0.8) * 1.6, 0.0, 1.0
            )
            maps.enamel *= keep
            maps.dentin *= keep
        for filling in tooth.fillings:
            region = filling_region(tooth, filling, ty, tx) & maps.crown & ~union
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
        tooth_map[win][maps.inside] = len(teeth) + 1
        y0, x0 = win[0].start, win[1].start
        for lesion in sorted(tooth.lesions, key=lambda les: les.grade):
            region = lesion.mask if lesion.mask is not None else np.zeros(ty.shape, bool)
            mask[win][region] = np.maximum(mask[win][region], lesion.grade)
            lesions.append(
                XrayLesion(tooth.fdi, lesion.surface, lesion.grade, _bbox(region, y0, x0))
            )
        box = _bbox(maps.inside, y0, x0)
        own = maps.inside[box[1] - y0 : box[3] - y0, box[0] - x0 : box[2] - x0].copy()
        teeth.append((XrayTooth(tooth.fdi, dict(tooth.grades), box), own))
    bone, soft = _anatomy(rng, placed, geo, roots, yy, xx)
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
    order = sorted(range(len(teeth)), key=lambda i: FDI_ORDER.index(teeth[i][0].fdi))
    remap = np.zeros(len(teeth) + 1, np.uint8)
    for new, old in enumerate(order, start=1):
        remap[old + 1] = new
    return PanoramicSample(
        image,
        mask,
        tuple(teeth[i][0] for i in order),
        tuple(sorted(lesions, key=lambda les: FDI_ORDER.index(les.fdi))),
        remap[tooth_map],
        patient_of(index),
        "panoramic",
        tuple(teeth[i][1] for i in order),
    )


__all__ = ["FDI_ORDER", "MM", "SHAPE", "PanoramicSample", "generate_panoramic"]
