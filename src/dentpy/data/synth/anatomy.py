"""A lower jaw as signed-distance shapes in millimetres: mandible, teeth, IAN canals.

Anatomical frame (mm): u toward the patient's RIGHT, v anterior, w superior; the same
handedness as NIfTI RAS+ (x = right), so left structures have u < 0. The alveolar crest lies
near w = 0 and the arch of tooth centres passes through (0, 0) at the incisors.

Every shape is a signed distance (negative inside, in mm). The rasteriser turns the same
numbers into partial-volume intensities and into labels, so they agree by construction.
Distances of scaled or blended shapes are approximate away from the surface; that only
softens partial volume, never moves a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

Arr = np.ndarray

# Lower permanent teeth by FDI position (1 central incisor ... 8 third molar):
# kind, mesiodistal and buccolingual crown width, crown height, root length from the CEJ (mm).
TOOTH_TABLE: dict[int, tuple[str, float, float, float, float]] = {
    1: ("incisor", 5.2, 6.0, 9.0, 12.5),
    2: ("incisor", 5.8, 6.4, 9.5, 13.5),
    3: ("canine", 7.0, 7.6, 10.5, 15.0),
    4: ("premolar", 7.0, 7.6, 8.5, 13.0),
    5: ("premolar", 7.2, 8.2, 8.0, 13.0),
    6: ("molar", 11.0, 10.4, 7.5, 13.0),
    7: ("molar", 10.5, 10.0, 7.0, 12.5),
    8: ("molar", 10.0, 9.6, 6.5, 11.0),
}
INTERPROXIMAL_GAP_MM = 0.15
# Instance variation (drawn from its own random stream, see sample_anatomy):
IMPACTED_P = 0.25  # per side, when the third molar is present: mesioangular impaction
IMPACTED_TILT_DEG = (30.0, 70.0)
IMPACTED_TOP_MM = (-1.5, 0.0)  # top of the crown's box, relative to the crest (w = 0)
IMPACTED_GAP_MM = (-0.2, 0.8)  # to the second molar; <= 0 touches, never more than 0.2 mm in
TOUCHING_P = 0.4  # per case: one to three pairs of neighbouring crowns in contact
TOUCH_GAP_MM = (-0.2, 0.0)  # 0 = touching, < 0 = that much overlap at the contact
MIN_GAP_MM = 0.1  # every other pair of neighbours keeps at least this much clearance
TOUCHING_BELOW_MM = 0.05  # a measured gap at or below this is recorded as a contact
CANAL_CLEARANCE_MM = 0.5  # impacted tooth surface to the IAN canal lumen


# --- signed-distance primitives (vectorised over arrays of points) -------------------------


def smin(a: Arr, b: Arr, k: float) -> Arr:
    """Polynomial smooth minimum: a union whose seam is rounded over ~k mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smax(a: Arr, b: Arr, k: float) -> Arr:
    return -smin(-a, -b, k)


def sd_ellipsoid(x: Arr, y: Arr, z: Arr, rx: float, ry: float, rz: float) -> Arr:
    """Ellipsoid distance bound (exact on the surface, close near it)."""
    k0 = np.sqrt((x / rx) ** 2 + (y / ry) ** 2 + (z / rz) ** 2)
    k1 = np.sqrt((x / rx**2) ** 2 + (y / ry**2) ** 2 + (z / rz**2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def sd_round_box(
    x: Arr, y: Arr, z: Arr, hx: Arr | float, hy: Arr | float, hz: float, r: float
) -> Arr:
    qx, qy, qz = np.abs(x) - hx + r, np.abs(y) - hy + r, np.abs(z) - hz + r
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
    return outside + np.minimum(np.maximum(np.maximum(qx, qy), qz), 0.0) - r


def sd_round_cone(x: Arr, y: Arr, z: Arr, a: Arr, b: Arr, r1: float, r2: float) -> Arr:
    """Exact distance to a cone from sphere (a, r1) to sphere (b, r2) (Quilez)."""
    ba = b - a
    l2 = float(ba @ ba)
    rr = r1 - r2
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    px, py, pz = x - a[0], y - a[1], z - a[2]
    yy = px * ba[0] + py * ba[1] + pz * ba[2]
    zz = yy - l2
    x2 = (px * l2 - ba[0] * yy) ** 2 + (py * l2 - ba[1] * yy) ** 2 + (pz * l2 - ba[2] * yy) ** 2
    y2 = yy * yy * l2
    z2 = zz * zz * l2
    k = np.sign(rr) * rr * rr * x2
    tip = np.sqrt(x2 + z2) * il2 - r2
    base = np.sqrt(x2 + y2) * il2 - r1
    side = (np.sqrt(x2 * a2 * il2) + yy * rr) * il2 - r1
    return np.where(np.sign(zz) * a2 * z2 > k, tip, np.where(np.sign(yy) * a2 * y2 < k, base, side))


def smoothstep(lo: float, hi: float, x: Arr) -> Arr:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def rotation(axis: Arr, angle: float) -> Arr:
    """Rodrigues rotation matrix about a unit axis."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


# --- the dental arch: a curve in the (u, v) plane that every other shape hangs on ----------


@dataclass(frozen=True, eq=False)
class Arch:
    """Densely sampled arch of tooth centres; s is signed arc length (> 0 = patient's right)."""

    s: Arr  # (N,)
    points: Arr  # (N, 2) (u, v)
    tangents: Arr  # (N, 2) unit d/ds
    normals: Arr  # (N, 2) unit, buccal (away from the tongue)

    @staticmethod
    def build(half_width: float, depth: float, reach_mm: float = 110.0) -> Arch:
        # An elliptical front (incisors to premolars) continued by straight, slightly
        # diverging posterior arms, as the molar rows of a real mandible run.
        phi_end = np.radians(78.0)
        phi = np.linspace(0.0, phi_end, 4000)
        front = np.stack([half_width * np.sin(phi), depth * (np.cos(phi) - 1.0)], axis=1)
        s_front = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(front, axis=0), axis=1))])
        tangent = np.array([half_width * np.cos(phi_end), -depth * np.sin(phi_end)])
        tangent /= np.linalg.norm(tangent)
        s_arm = np.arange(s_front[-1] + 0.1, reach_mm, 0.1)
        arm = front[-1] + (s_arm - s_front[-1])[:, None] * tangent
        s_right = np.concatenate([s_front, s_arm])
        right = np.concatenate([front, arm])
        # Resample evenly so nearest-sample projection has uniform error.
        s_even = np.arange(0.0, reach_mm, 0.1)
        u = np.interp(s_even, s_right, right[:, 0])
        v = np.interp(s_even, s_right, right[:, 1])
        s = np.concatenate([-s_even[:0:-1], s_even])
        pts = np.stack([np.concatenate([-u[:0:-1], u]), np.concatenate([v[:0:-1], v])], axis=1)
        tan = np.gradient(pts, s, axis=0)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        normals = np.stack([-tan[:, 1], tan[:, 0]], axis=1)
        return Arch(s=s, points=pts, tangents=tan, normals=normals)

    def frame(self, s: Arr | float) -> tuple[Arr, Arr, Arr]:
        """Point, tangent and buccal normal at arc length(s) s; each (..., 2)."""
        s = np.asarray(s, dtype=np.float64)

        def at(table: Arr) -> Arr:
            return np.stack([np.interp(s, self.s, table[:, i]) for i in range(2)], axis=-1)

        tan = at(self.tangents)
        tan /= np.linalg.norm(tan, axis=-1, keepdims=True)
        return at(self.points), tan, np.stack([-tan[..., 1], tan[..., 0]], axis=-1)

    def project_exact(self, u: Arr, v: Arr) -> tuple[Arr, Arr]:
        """Arc length s and signed buccal offset n of points (u, v), via the nearest sample."""
        tree = cKDTree(self.points)
        flat = np.stack([np.ravel(u), np.ravel(v)], axis=1).astype(np.float64)
        _, idx = tree.query(flat, workers=-1)
        d = flat - self.points[idx]
        s = self.s[idx] + np.einsum("ij,ij->i", d, self.tangents[idx])
        n = np.einsum("ij,ij->i", d, self.normals[idx])
        return s.reshape(np.shape(u)), n.reshape(np.shape(u))

    def project(self, u: Arr, v: Arr, step_mm: float = 0.4) -> tuple[Arr, Arr]:
        """(s, n) of many points: exact on a 2D lattice, then bilinear (float32 arrays).

        A nearest-neighbour search per voxel costs seconds at 0.3 mm; s and n are smooth
        wherever the bone is near (bilinear error ~0.002 mm). s jumps only on the arch's
        medial axis, >= 15 mm from the curve, where every shape using s is far away anyway.
        """
        lo_u, hi_u, lo_v, hi_v = float(u.min()), float(u.max()), float(v.min()), float(v.max())
        gu = np.arange(lo_u - step_mm, hi_u + 2 * step_mm, step_mm)
        gv = np.arange(lo_v - step_mm, hi_v + 2 * step_mm, step_mm)
        lat_s, lat_n = self.project_exact(*np.meshgrid(gu, gv, indexing="ij"))
        coords = [
            (u - np.float32(gu[0])) / np.float32(step_mm),
            (v - np.float32(gv[0])) / np.float32(step_mm),
        ]
        s = map_coordinates(lat_s.astype(np.float32), coords, order=1, mode="nearest")
        n = map_coordinates(lat_n.astype(np.float32), coords, order=1, mode="nearest")
        return s, n

    def lift(self, s: Arr, n: Arr, w: Arr) -> Arr:
        """(s, n, w) curve coordinates -> anatomical (u, v, w) points, shape (..., 3)."""
        p, _, normal = self.frame(s)
        uv = p + np.asarray(n)[..., None] * normal
        return np.concatenate([uv, np.asarray(w)[..., None]], axis=-1)


# --- mandible -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Mandible:
    """Body swept along the arch (tall rounded cross-section) with a short ramus stub."""

    height_front: float
    height_molar: float
    half_top_front: float
    half_top_molar: float
    half_bottom_front: float
    half_bottom_molar: float
    cortex_mm: float
    ramus_start: float  # |s| where the anterior border of the ramus starts to rise
    ramus_end: float  # |s| of the posterior cap (the FOV keeps the rest of the ramus out)
    ramus_slope: float
    ramus_top: float
    ramus_half: float
    dips: tuple[tuple[float, float, float], ...]  # (s, depth, width): healed sockets

    def _profile(self, s: Arr) -> tuple[Arr, Arr, Arr, Arr, Arr]:
        sa = np.abs(s)
        t = smoothstep(8.0, 32.0, sa)  # 0 at the incisors, 1 in the molar region
        height = self.height_front + (self.height_molar - self.height_front) * t
        top = np.zeros_like(s)
        for centre, depth, width in self.dips:
            top -= depth * np.exp(-0.5 * ((s - centre) / width) ** 2)
        ramus = np.maximum(sa - self.ramus_start, 0.0)
        top = smin(top + self.ramus_slope * ramus, np.full_like(s, self.ramus_top), 3.0)
        # The inferior border rises a little under the ramus (antegonial notch).
        bottom = -height + 2.0 * smoothstep(self.ramus_start, self.ramus_end, sa)
        half_top = self.half_top_front + (self.half_top_molar - self.half_top_front) * t
        half_bot = self.half_bottom_front + (self.half_bottom_molar - self.half_bottom_front) * t
        r = smoothstep(self.ramus_start, self.ramus_start + 6.0, sa)
        half_top = half_top + (self.ramus_half - half_top) * r
        half_bot = half_bot + (self.ramus_half + 1.0 - half_bot) * r
        return top, bottom, half_top, half_bot, t

    def half_extent(self, s: Arr) -> Arr:
        """Largest buccolingual distance from the arch the bone reaches at s (mm)."""
        _, _, half_top, half_bot, t = self._profile(s)
        return np.maximum(half_top, half_bot) + 0.8 * t

    def sdf(self, s: Arr, n: Arr, w: Arr) -> Arr:
        top, bottom, half_top, half_bot, t = self._profile(s)
        # Teardrop cross-section: narrow alveolar crest, widest in the lower third, slightly
        # narrower again at the rounded inferior border.
        depth = np.clip((top - w) / (top - bottom), 0.0, 1.0)
        widen = np.sin(0.5 * np.pi * np.minimum(depth / 0.7, 1.0))
        taper = 1.0 - 0.12 * (np.maximum(depth - 0.7, 0.0) / 0.3) ** 2
        half = (half_top + (half_bot - half_top) * widen) * taper
        centre = -0.8 * t  # the molar body sits slightly lingual of the teeth
        dn = np.abs(n - centre) - half
        dw = np.maximum(w - top, bottom - w)
        r = 2.5
        qn, qw = dn + r, dw + r
        d = np.sqrt(np.maximum(qn, 0) ** 2 + np.maximum(qw, 0) ** 2)
        d = d + np.minimum(np.maximum(qn, qw), 0.0) - r
        return smax(d, np.abs(s) - self.ramus_end, 2.0).astype(np.float32)

    def cortex(self, s: Arr, w: Arr) -> Arr:
        """Cortical thickness (mm): thicker toward the inferior border, as in real jaws."""
        _, bottom, _, _, _ = self._profile(s)
        return (self.cortex_mm + 1.2 * np.clip((bottom + 6.0 - w) / 6.0, 0.0, 1.0)).astype(
            np.float32
        )


# --- teeth ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToothFields:
    tooth: Arr
    pulp: Arr
    enamel: Arr
    metal: Arr | None


@dataclass(frozen=True, eq=False)
class Tooth:
    fdi: int
    kind: str
    origin: Arr  # CEJ centre, anatomical mm
    axes: Arr  # (3, 3) rows: mesial, buccal, occlusal unit vectors (anatomical)
    md: float
    bl: float
    crown_h: float
    root_len: float
    restoration: str | None  # None, "filling" or "crown"

    def local(self, u: Arr, v: Arr, w: Arr) -> tuple[Arr, Arr, Arr]:
        du, dv, dw = u - self.origin[0], v - self.origin[1], w - self.origin[2]
        ax = self.axes
        a, b, h = (
            (ax[i, 0] * du + ax[i, 1] * dv + ax[i, 2] * dw).astype(np.float32) for i in range(3)
        )
        return a, b, h

    def _roots(self) -> list[tuple[Arr, Arr, float, float]]:
        """(top, apex, r_top, r_apex) in local (a, b', h) with b' = b * root_squash."""
        md, length = self.md, self.root_len
        if self.kind == "molar":
            r = 0.17 * md
            return [
                (np.array([0.24 * md, 0, -2.0]), np.array([0.2 * md, 0, -length]), r, 0.8),
                (np.array([-0.24 * md, 0, -2.0]), np.array([-0.27 * md, 0, -length + 1]), r, 0.8),
            ]
        frac = {"incisor": 0.34, "canine": 0.36, "premolar": 0.34}[self.kind]
        return [(np.array([0.0, 0, 1.0]), np.array([-0.6, 0, -length]), frac * md, 0.7)]

    @property
    def root_squash(self) -> float:
        # Roots are wider buccolingually than mesiodistally: scale b before the round cone.
        return {"incisor": 0.62, "canine": 0.74, "premolar": 0.72, "molar": 0.45}[self.kind]

    def apices(self) -> Arr:
        """Root apices in anatomical coordinates, (n_roots, 3)."""
        return np.stack([self.origin + apex @ self.axes for _, apex, _, _ in self._roots()])

    def extent(self) -> Arr:
        """Corners of a local box that contains the tooth (+ margin), anatomical (8, 3)."""
        a, b = self.md / 2 + 1.0, self.bl / 2 + 1.0
        lo, hi = -self.root_len - 1.5, self.crown_h + 1.0
        corners = np.array([[x, y, z] for x in (-a, a) for y in (-b, b) for z in (lo, hi)])
        return self.origin + corners @ self.axes

    def sdf(self, a: Arr, b: Arr, h: Arr) -> Arr:
        """Distance to the whole tooth (crown and roots) at local coordinates."""
        ch, md, bl = self.crown_h, self.md, self.bl
        # Crown: rounded box narrowing toward the CEJ, and toward the incisal edge/cusp tip
        # for incisors, canines and premolars.
        cervical = 1.0 - 0.18 * np.clip(1.0 - h / (0.4 * ch), 0.0, 1.0)
        rise = np.clip((h - 0.4 * ch) / (0.6 * ch), 0.0, 1.0)
        narrow_b = {"incisor": 0.55, "canine": 0.45, "premolar": 0.25, "molar": 0.05}[self.kind]
        narrow_a = 0.45 if self.kind == "canine" else 0.0
        sa, sb = cervical * (1.0 - narrow_a * rise), cervical * (1.0 - narrow_b * rise)
        crown = sd_round_box(a / sa, b / sb, h - ch / 2, md / 2, bl / 2, ch / 2, 0.3 * min(md, bl))
        crown = crown * np.minimum(sa, sb)
        if self.kind in ("molar", "premolar"):
            # Central fossa between the cusps.
            deep = 1.0 if self.kind == "molar" else 0.6
            fossa = sd_ellipsoid(a, b, h - ch - 1.6 + deep, 0.26 * md, 0.2 * bl, 1.6)
            crown = smax(crown, -fossa, 0.5)
        squash = self.root_squash
        bs = b * squash
        roots = [sd_round_cone(a, bs, h, top, apex, r1, r2) for top, apex, r1, r2 in self._roots()]
        root = roots[0] if len(roots) == 1 else np.minimum(roots[0], roots[1])
        if self.kind == "molar":
            trunk = sd_round_box(a, b, h + 1.2, 0.36 * md, 0.34 * bl, 2.6, 1.2)
            root = smin(root, trunk, 1.0)
        return smin(crown, root, 1.2)

    def at(self, points: Arr) -> Arr:
        """Distance to the tooth at anatomical points (..., 3)."""
        a, b, h = self.local(points[..., 0], points[..., 1], points[..., 2])
        return self.sdf(a, b, h)

    def fields(self, a: Arr, b: Arr, h: Arr) -> ToothFields:
        ch, md, bl = self.crown_h, self.md, self.bl
        tooth = self.sdf(a, b, h)
        bs = b * self.root_squash
        enamel_t = {"incisor": 1.1, "canine": 1.3, "premolar": 1.5, "molar": 1.8}[self.kind]
        enamel = np.maximum(np.maximum(tooth, -(tooth + enamel_t)), -h)
        # Pulp: chamber near the CEJ, tapering canals to just short of each apex, and always
        # inside at least 0.9 mm of dentin.
        anterior = self.kind in ("incisor", "canine")
        hp = (0.25 if anterior else 0.1) * ch
        pulp = sd_ellipsoid(
            a,
            b,
            h - hp,
            (0.16 if anterior else 0.2) * md,
            0.18 * bl,
            (0.38 if anterior else 0.3) * ch,
        )
        for top, apex, r1, _ in self._roots():
            start = np.array([top[0], 0.0, hp])
            end = apex + 0.6 * (top - apex) / np.linalg.norm(top - apex)
            pulp = smin(pulp, sd_round_cone(a, bs, h, start, end, 0.32 * r1, 0.22), 0.8)
        pulp = np.maximum(pulp, tooth + 0.9)
        metal = None
        if self.restoration == "filling":
            metal = np.maximum(sd_ellipsoid(a, b, h - ch - 0.2, 0.27 * md, 0.2 * bl, 2.4), tooth)
        elif self.restoration == "crown":
            metal = np.maximum(np.maximum(tooth, -(tooth + 1.5)), 0.5 - h)
        f32 = np.float32
        return ToothFields(
            tooth=tooth.astype(f32),
            pulp=pulp.astype(f32),
            enamel=enamel.astype(f32),
            metal=None if metal is None else metal.astype(f32),
        )


# --- inferior alveolar nerve canal ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Canal:
    side: str  # "left" or "right" (the patient's)
    centreline: Arr  # (M, 3) anatomical, sampled every <= 0.1 mm
    radius: Arr  # (M,)
    wall_mm: float

    def sdf(self, u: Arr, v: Arr, w: Arr) -> Arr:
        """Distance to the tube (nearest centreline sample minus its radius)."""
        tree = cKDTree(self.centreline)
        pts = np.stack([u.ravel(), v.ravel(), w.ravel()], axis=1).astype(np.float64)
        dist, idx = tree.query(pts, workers=-1)
        return (dist - self.radius[idx]).reshape(u.shape).astype(np.float32)

    def bounds(self, margin: float) -> tuple[Arr, Arr]:
        r = float(self.radius.max()) + self.wall_mm + margin
        return self.centreline.min(axis=0) - r, self.centreline.max(axis=0) + r


def canal_path(
    arch: Arch, control: list[tuple[float, float, float]], radius: float, side: str, wall: float
) -> Canal:
    """Smooth (monotone cubic) path through (|s|, n, w) control points, foramen to foramen."""
    pts = np.array(control, dtype=np.float64)
    if side == "left":
        pts[:, 0] = -pts[:, 0]
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    curve = PchipInterpolator(chord, pts, axis=0)
    t = np.linspace(0.0, chord[-1], int(np.ceil(chord[-1] / 0.1)) + 1)
    snw = curve(t)
    xyz = arch.lift(snw[:, 0], snw[:, 1], snw[:, 2])
    # Slightly narrower toward the mental foramen, as the nerve gives off branches.
    r = radius * (1.0 - 0.15 * t / chord[-1])
    return Canal(side=side, centreline=xyz, radius=r, wall_mm=wall)


# --- the whole jaw ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Anatomy:
    arch: Arch
    mandible: Mandible
    teeth: tuple[Tooth, ...]
    canals: tuple[Canal, Canal]  # (left, right)
    tongue: tuple[Arr, Arr]  # ellipsoid centre, radii (anatomical)
    soft_margin_mm: float
    cheek_offset_mm: float
    lo: Arr  # anatomical bounding box of every labelled structure
    hi: Arr
    record: dict[str, Any] = field(default_factory=dict)  # JSON-safe: what was drawn


def _tooth_slots(scale: float) -> dict[int, tuple[float, float]]:
    """Arc-length centre and mesiodistal width of each tooth position (both sides alike)."""
    slots, edge = {}, INTERPROXIMAL_GAP_MM / 2
    for pos in range(1, 9):
        width = TOOTH_TABLE[pos][1] * scale
        slots[pos] = (edge + width / 2, width)
        edge += width + INTERPROXIMAL_GAP_MM
    return slots


def sample_anatomy(
    rng: np.random.Generator, variation: np.random.Generator | None = None
) -> Anatomy:
    """Draw one patient's jaw. All sizes in mm; ranges follow DATA.md §2.

    `variation` draws the instance variation (impacted third molars, touching crowns). It
    is a separate stream so that adding it left every earlier draw of `rng` (and so every
    case without such variation) as it was; None gives a jaw without it.
    """
    arch = Arch.build(rng.uniform(28.5, 31.0), rng.uniform(40.0, 46.0))
    scale = rng.uniform(0.92, 1.04)
    slots = _tooth_slots(scale)

    # Missing teeth: third molars often (agenesis or extraction), others rarely.
    missing: set[tuple[str, int]] = set()
    for side in ("left", "right"):
        if rng.random() < 0.45:
            missing.add((side, 8))
        for pos in range(1, 8):
            if rng.random() < 0.035 and len(missing) < 4:
                missing.add((side, pos))

    every = _sample_teeth(rng, arch, slots, scale)
    # The canal runs below where the molar apices are, whether or not the tooth is present.
    nominal_apex = {key: float(t.apices()[:, 2].min()) for key, t in every.items()}
    draws = _draw_variation(variation)
    present = {key: t for key, t in every.items() if key not in missing}
    impacted = _arrange(present, draws)
    teeth = list(present.values())

    # Metal restorations on a few posterior teeth.
    posterior = [i for i, t in enumerate(teeth) if t.kind in ("premolar", "molar")]
    count = int(rng.choice([0, 0, 1, 1, 1, 2, 2, 3]))
    for i in rng.permutation(posterior)[:count]:
        kind = "filling" if rng.random() < 0.7 else "crown"
        # The draw still happens (keeps the stream), but an unerupted tooth is never restored.
        if (_side(teeth[int(i)].fdi), teeth[int(i)].fdi % 10) not in impacted:
            teeth[int(i)] = replace(teeth[int(i)], restoration=kind)

    # A healed socket leaves the alveolar ridge lower (third molars usually never erupted).
    dips = []
    for side, pos in sorted(missing):
        if pos < 8:
            centre = slots[pos][0] * (-1.0 if side == "left" else 1.0)
            dips.append((centre, rng.uniform(1.5, 3.5), slots[pos][1] / 2))
    ramus_start = slots[8][0] + slots[8][1] / 2 + 1.5
    mandible = Mandible(
        height_front=rng.uniform(27.0, 30.5),
        height_molar=rng.uniform(24.0, 27.5),
        half_top_front=rng.uniform(3.8, 4.6),
        half_top_molar=rng.uniform(5.0, 5.8),
        half_bottom_front=rng.uniform(6.0, 7.0),
        half_bottom_molar=rng.uniform(6.8, 8.0),
        cortex_mm=rng.uniform(1.6, 2.4),
        ramus_start=ramus_start,
        ramus_end=ramus_start + rng.uniform(6.0, 8.0),
        ramus_slope=rng.uniform(1.0, 1.5),
        ramus_top=rng.uniform(7.0, 9.5),
        ramus_half=rng.uniform(3.8, 4.6),
        dips=tuple(dips),
    )

    # Under an impacted molar the canal stays below the tooth until it turns up to the
    # foramen (the ramus stub is too short for the slope it would otherwise take).
    ceiling = {key[0]: _lowest(present[key]) - 2.0 for key in impacted}
    canals = tuple(
        _sample_canal(rng, arch, mandible, slots, nominal_apex, side, ceiling.get(side))
        for side in ("left", "right")
    )
    by_key = {(_side(t.fdi), t.fdi % 10): i for i, t in enumerate(teeth)}
    for key in list(impacted):
        canal = canals[0] if key[0] == "left" else canals[1]
        seven = present.get((key[0], 7))
        placed = _clear_of_canal(teeth[by_key[key]], seven, canal, impacted[key])
        if placed is None:  # no lift keeps it clear: this one erupts normally after all
            teeth[by_key[key]] = _fit_gap(every[key], seven, MIN_GAP_MM, only_if_closer=True)
            del impacted[key]
        else:
            teeth[by_key[key]] = placed

    # Tongue fills the arch; lips and cheeks lie against the buccal surfaces.
    p_m1, _, _ = arch.frame(slots[6][0])
    v_back = float(arch.frame(mandible.ramus_end)[0][1])
    tongue = (
        np.array([0.0, 0.5 * (v_back - 6.0), -6.0]),
        np.array([float(p_m1[0]) - 4.0, 0.5 * (-6.0 - v_back) + 6.0, 11.0]),
    )

    lo, hi = _bounds(arch, mandible, teeth)
    record = _record(teeth, missing, impacted)
    return Anatomy(
        arch=arch,
        mandible=mandible,
        teeth=tuple(teeth),
        canals=(canals[0], canals[1]),
        tongue=tongue,
        soft_margin_mm=rng.uniform(7.0, 10.0),
        cheek_offset_mm=rng.uniform(4.0, 5.5),
        lo=lo,
        hi=hi,
        record=record,
    )


def _sample_teeth(
    rng: np.random.Generator, arch: Arch, slots: dict[int, tuple[float, float]], scale: float
) -> dict[tuple[str, int], Tooth]:
    """All 16 lower teeth on the arch, keyed by (side, FDI position)."""
    teeth: dict[tuple[str, int], Tooth] = {}
    for side, sign in (("left", -1.0), ("right", 1.0)):
        for pos in range(1, 9):
            kind, md, bl, crown_h, root_len = TOOTH_TABLE[pos]
            jitter = rng.uniform(0.97, 1.03)
            p, tangent, normal = arch.frame(sign * slots[pos][0])
            mesial = np.array([*(-sign * tangent), 0.0])  # toward the midline along the arch
            buccal = np.array([*normal, 0.0])
            up = np.array([0.0, 0.0, 1.0])
            # Tilts: mesiodistal about the buccal axis, buccolingual about the mesial axis
            # (lower molars lean lingually), twist about the long axis.
            tilt_md = np.radians(rng.uniform(-4, 6) if kind == "molar" else rng.uniform(-5, 5))
            tilt_bl = np.radians(rng.uniform(-8, 2) if kind == "molar" else rng.uniform(-5, 5))
            twist = np.radians(rng.uniform(-10, 10))
            rot = rotation(buccal, tilt_md) @ rotation(mesial, tilt_bl) @ rotation(up, twist)
            teeth[(side, pos)] = Tooth(
                fdi=(30 if side == "left" else 40) + pos,
                kind=kind,
                origin=np.array([p[0], p[1], 1.0 + rng.uniform(-0.4, 0.4)]),  # CEJ above crest
                axes=np.stack([mesial, buccal, up]) @ rot.T,
                md=md * scale * jitter,
                bl=bl * scale * jitter,
                crown_h=crown_h * scale,
                root_len=root_len * scale * rng.uniform(0.92, 1.08),
                restoration=None,
            )
    return teeth


# --- instance variation: impacted third molars, touching crowns -------------------------------

Key = tuple[str, int]  # (side, FDI position)
# Neighbouring teeth, each pair (mesial, distal), in the order they are arranged: across the
# midline first, then outward along each side, so a tooth only moves after its mesial
# neighbour has settled and never disturbs a contact already set.
NEIGHBOURS: tuple[tuple[Key, Key], ...] = (
    (("left", 1), ("right", 1)),
    *((("left", p), ("left", p + 1)) for p in range(1, 8)),
    *((("right", p), ("right", p + 1)) for p in range(1, 8)),
)


def _side(fdi: int) -> str:
    return "left" if fdi // 10 == 3 else "right"


def _fdi(key: Key) -> int:
    return (30 if key[0] == "left" else 40) + key[1]


def _draw_variation(rng: np.random.Generator | None) -> dict[str, Any]:
    """Every draw is made whatever the outcome, so one choice never shifts the others."""
    if rng is None:
        return {"impacted": {}, "touch_count": 0, "touch_order": [], "touch_gap": []}
    impacted = {}
    for side in ("left", "right"):
        hit = rng.random() < IMPACTED_P
        params = (
            float(rng.uniform(*IMPACTED_TILT_DEG)),
            float(rng.uniform(*IMPACTED_TOP_MM)),
            float(rng.uniform(0.4, 0.7)),  # roots of an unerupted molar are still forming
            float(rng.uniform(*IMPACTED_GAP_MM)),
        )
        if hit:
            impacted[side] = params
    touching = rng.random() < TOUCHING_P
    count = int(rng.integers(1, 4))
    order = [int(i) for i in rng.permutation(len(NEIGHBOURS))]
    gaps = [float(g) for g in rng.uniform(*TOUCH_GAP_MM, size=len(NEIGHBOURS))]
    return {
        "impacted": impacted,
        "touch_count": count if touching else 0,
        "touch_order": order,
        "touch_gap": gaps,
    }


def _arrange(present: dict[Key, Tooth], draws: dict[str, Any]) -> dict[Key, tuple]:
    """Space the present teeth (in place): chosen neighbours touch, the others keep a small
    gap, impacted third molars are tilted and sunk. Returns the impacted keys' parameters."""
    impacted = {
        (side, 8): params for side, params in draws["impacted"].items() if (side, 8) in present
    }
    eligible = [
        i
        for i, (a, b) in enumerate(NEIGHBOURS)
        if a in present and b in present and a not in impacted and b not in impacted
    ]
    # The first eligible pairs in the drawn order touch, so a missing tooth does not turn a
    # touching case into one without contacts.
    ranked = [i for i in draws["touch_order"] if i in eligible][: draws["touch_count"]]
    for i in eligible:
        mesial, distal = NEIGHBOURS[i]
        if i in ranked:
            present[distal] = _fit_gap(present[distal], present[mesial], draws["touch_gap"][i])
        else:
            present[distal] = _fit_gap(
                present[distal], present[mesial], MIN_GAP_MM, only_if_closer=True
            )
    for key, params in impacted.items():
        present[key] = _impact(present[key], present.get((key[0], 7)), params)
    return impacted


def tooth_gap(t1: Tooth, t2: Tooth) -> float:
    """Clearance between two teeth in mm (negative: depth of overlap at the contact).

    For two shapes `a` gap apart the deepest point of max(sdf1, sdf2) lies midway at
    gap / 2, and inside an overlap at about -overlap / 2; a coarse grid finds it, a fine
    grid around it measures it.
    """
    e1, e2 = t1.extent(), t2.extent()
    lo = np.maximum(e1.min(axis=0), e2.min(axis=0))
    hi = np.minimum(e1.max(axis=0), e2.max(axis=0))
    if np.any(hi <= lo):
        return 5.0  # boxes (with their 1 mm margin) apart: far from touching

    def grid(lo: Arr, hi: Arr, step: float) -> Arr:
        axes = [np.arange(lo[d], hi[d] + step / 2, step) for d in range(3)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)

    def deepest(pts: Arr, keep: int) -> tuple[float, Arr]:
        d = np.maximum(t1.at(pts), t2.at(pts))
        order = np.argsort(d, kind="stable")[:keep]
        return float(d[order[0]]), pts[order]

    # max(sdf1, sdf2) changes by at most the step per step, so each finer level searches
    # around the coarser one's best points; several of them, because a contact strip along
    # the crowns has many shallow minima and the coarse grid may rank the wrong one first.
    _, seeds = deepest(grid(lo, hi, 0.7), keep=6)
    patch = grid(np.full(3, -0.7), np.full(3, 0.7), 0.175)
    _, best = deepest((seeds[:, None, :] + patch[None]).reshape(-1, 3), keep=1)
    value, _ = deepest(best[0] + grid(np.full(3, -0.175), np.full(3, 0.175), 0.035), keep=1)
    return 2.0 * value


def _distal(tooth: Tooth) -> Arr:
    """Horizontal unit vector away from the midline along the arch at this tooth."""
    m = np.array([tooth.axes[0, 0], tooth.axes[0, 1], 0.0])
    return -m / np.linalg.norm(m)


def _fit_gap(
    moving: Tooth, fixed: Tooth | None, target: float, *, only_if_closer: bool = False
) -> Tooth:
    """Slide `moving` along the arch until its gap to `fixed` is `target` (mm)."""
    if fixed is None:
        return moving
    away = _distal(moving)
    gap = tooth_gap(moving, fixed)
    if only_if_closer and gap >= target:
        return moving
    for _ in range(8):
        if abs(gap - target) < 0.02:
            break
        # An oblique contact opens more slowly than the slide; iterating converges anyway.
        moving = replace(moving, origin=moving.origin + away * (target - gap))
        gap = tooth_gap(moving, fixed)
    return moving


def _crown_top(tooth: Tooth) -> float:
    """Highest w of the crown's box (the rounded crown itself stays a little below)."""
    a, b = tooth.md / 2, tooth.bl / 2
    corners = np.array([[x, y, z] for x in (-a, a) for y in (-b, b) for z in (0.0, tooth.crown_h)])
    return float((tooth.origin + corners @ tooth.axes)[:, 2].max())


def _impact(tooth: Tooth, seven: Tooth | None, params: tuple) -> Tooth:
    """Mesioangular impaction: tip the crown toward the second molar about the buccal axis,
    sink it to the crest or below, and slide it distally so it meets, but does not sink
    into, the second molar."""
    tilt, top, roots, gap = params
    toward = -_distal(tooth)
    axis = np.cross(np.array([0.0, 0.0, 1.0]), toward)  # rotating about it tips up -> toward
    rot = rotation(axis, np.radians(tilt))
    tipped = replace(
        tooth, axes=tooth.axes @ rot.T, root_len=tooth.root_len * roots, restoration=None
    )
    tipped = replace(tipped, origin=tipped.origin + np.array([0.0, 0.0, top - _crown_top(tipped)]))
    return _fit_gap(tipped, seven, gap)


def _lowest(tooth: Tooth) -> float:
    """Lowest w of any point of the tooth, to 0.5 mm."""
    e = tooth.extent()
    axes = [np.arange(e[:, d].min(), e[:, d].max() + 0.25, 0.5) for d in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = pts[tooth.at(pts) < 0]
    return float(inside[:, 2].min()) if len(inside) else float(tooth.origin[2])


def _canal_clearance(tooth: Tooth, canal: Canal) -> float:
    e = tooth.extent()
    reach = float(canal.radius.max()) + 1.0
    near = np.all(
        (canal.centreline >= e.min(axis=0) - reach) & (canal.centreline <= e.max(axis=0) + reach),
        axis=1,
    )
    if not near.any():
        return float("inf")
    return float(np.min(tooth.at(canal.centreline[near]) - canal.radius[near]))


def _clear_of_canal(tooth: Tooth, seven: Tooth | None, canal: Canal, params: tuple) -> Tooth | None:
    """The impacted tooth, lifted in 0.5 mm steps until it clears the IAN canal (the labels
    stay unambiguous: a tooth voxel never hides the canal); None if 4 mm do not suffice."""
    for lift in np.arange(0.0, 4.01, 0.5):
        moved = tooth
        if lift:
            moved = replace(tooth, origin=tooth.origin + np.array([0.0, 0.0, lift]))
            moved = _fit_gap(moved, seven, params[3])
        if _canal_clearance(moved, canal) >= CANAL_CLEARANCE_MM:
            return moved
    return None


def _record(teeth: list[Tooth], missing: set[Key], impacted: dict[Key, tuple]) -> dict[str, Any]:
    """What was drawn, JSON-safe: FDI numbers present, missing, impacted, touching pairs."""
    by_key = {(_side(t.fdi), t.fdi % 10): t for t in teeth}
    touching = []
    for a, b in NEIGHBOURS:
        if a in by_key and b in by_key and tooth_gap(by_key[a], by_key[b]) <= TOUCHING_BELOW_MM:
            touching.append(sorted((_fdi(a), _fdi(b))))
    return {
        "present": sorted(t.fdi for t in teeth),
        "missing": sorted(_fdi(k) for k in missing),
        "impacted": sorted(_fdi(k) for k in impacted),
        "impaction": {
            str(_fdi(k)): {
                "tilt_deg": round(impacted[k][0], 1),
                "crown_top_mm": round(_crown_top(by_key[k]), 2),
            }
            for k in sorted(impacted)
        },
        "touching": sorted(touching),
    }


def _sample_canal(
    rng: np.random.Generator,
    arch: Arch,
    mandible: Mandible,
    slots: dict[int, tuple[float, float]],
    nominal_apex: dict[tuple[str, int], float],
    side: str,
    ceiling: float | None = None,
) -> Canal:
    """IAN canal: lingual ramus (mandibular foramen) -> below the molar apices (3.5-5 mm)
    -> buccal exit near the second premolar (mental foramen). `ceiling` (w, mm) keeps the
    canal's centre below it up to 4 mm before the ramus end (under an impacted molar)."""
    radius = rng.uniform(1.2, 1.9)
    gap = rng.uniform(3.5, 5.0)
    wall = rng.uniform(0.6, 1.0)
    floor = -mandible.height_molar + radius + 3.5  # stays clear of the inferior cortex

    def below(pos: int, extra: float) -> float:
        return max(nominal_apex[(side, pos)] - extra - radius + rng.uniform(-0.3, 0.3), floor)

    end = mandible.ramus_end
    foramen_w = rng.uniform(-6.0, -3.0)
    pm2 = slots[5][0]
    exit_half = mandible.half_top_molar + 2.0
    wiggle = lambda: rng.uniform(-0.4, 0.4)  # noqa: E731
    control = [
        (end - 1.0, -(mandible.ramus_half + 3.0), foramen_w + 1.0),
        (end - 4.0, -1.0 + wiggle(), foramen_w),
        (slots[8][0], -0.6 + wiggle(), below(8, gap)),
        (slots[7][0], -0.4 + wiggle(), below(7, gap)),
        (slots[6][0], 0.2 + wiggle(), below(6, gap)),
        (pm2 + 3.5, 1.2 + wiggle(), below(5, 2.5)),
        (pm2 - 0.5, exit_half - 1.0, below(5, 1.5)),
        (pm2 - 1.5, exit_half + 2.5, below(5, 0.5)),
    ]
    if ceiling is not None:
        # Never below the floor: the inferior cortex wins; the caller checks the clearance.
        top = max(ceiling - radius, floor)
        control[1] = (control[1][0], control[1][1], min(control[1][2], top))
        control[2] = (control[2][0], control[2][1], min(control[2][2], top))
    return canal_path(arch, control, radius, side, wall)


def _bounds(arch: Arch, mandible: Mandible, teeth: list[Tooth]) -> tuple[Arr, Arr]:
    s = np.linspace(-mandible.ramus_end, mandible.ramus_end, 400)
    half = mandible.half_extent(s) + 0.5
    pts = np.concatenate([arch.lift(s, sign * half, np.zeros_like(s)) for sign in (-1, 1)])
    tooth_pts = np.concatenate([t.extent() for t in teeth])
    lo = np.minimum(pts.min(axis=0), tooth_pts.min(axis=0))
    hi = np.maximum(pts.max(axis=0), tooth_pts.max(axis=0))
    lo[2] = min(lo[2], -max(mandible.height_front, mandible.height_molar) - 0.5)
    hi[2] = max(hi[2], mandible.ramus_top + 0.5)
    return lo, hi
