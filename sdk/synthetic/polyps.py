"""Polyps painted onto the texture: domes and stalked heads, hidden in part by folds.

Each polyp is drawn at full resolution in a small window of the texture, over the wall. It
gets the light a plain wall would get at its place (a polyp far down the lumen is as dim as
the wall there) and is shaded as a height field lit from the scope, like the folds. A depth
test against the wall's depth buffer hides the parts behind a nearer fold. Its label is
written where it is drawn at >= 50 % coverage after that test, so the truth is exactly the
visible part.
"""
from __future__ import annotations

import math

import numpy as np

from .mucosa import WallLayers, noise, radiance, tone
from .scene import TEXTURE_HALF, PolypSpec

# colour word -> (gain, offset) applied to the mucosa's BGR albedo: polyps are tissue too,
# so their colour is a shift of the wall's rather than an absolute paint
_TINTS = {
    "pink": ((1.0, 1.05, 1.05), (14, 10, 10)),
    "red": ((0.7, 0.6, 1.05), (0, 0, 0)),
    "pale": ((0.6, 0.62, 0.6), (70, 88, 115)),
    "orange": ((0.6, 1.2, 1.05), (0, 6, 4)),
}


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _cover(dist_inside, px):
    # coverage with a ~1 px antialiased edge; dist_inside is in world units (>0 inside)
    return np.clip(dist_inside * px / 1.2 + 0.5, 0.0, 1.0).astype(np.float32)


def _extent(p: PolypSpec) -> float:
    return p.radius * (p.stalk_length + 0.8 if p.kind == "pedunculated" else 1.0)


def _grid(p: PolypSpec, layers: WallLayers):
    reach = _extent(p) * 1.45 + p.radius * 0.4
    size = layers.size
    c0 = max(0, int((p.x - reach + TEXTURE_HALF) * layers.px))
    c1 = min(size, int((p.x + reach + TEXTURE_HALF) * layers.px) + 2)
    r0 = max(0, int((p.y - reach + TEXTURE_HALF) * layers.px))
    r1 = min(size, int((p.y + reach + TEXTURE_HALF) * layers.px) + 2)
    xs = np.arange(c0, c1, dtype=np.float32) / layers.px - TEXTURE_HALF
    ys = np.arange(r0, r1, dtype=np.float32) / layers.px - TEXTURE_HALF
    X, Y = np.meshgrid(xs, ys)
    return (r0, r1, c0, c1), X, Y


def _head(p: PolypSpec, X, Y):
    """Normalised elliptic distance (1 = rim) with a lobulated rim, and the dome height."""
    c, s = math.cos(p.orientation), math.sin(p.orientation)
    xr = (X - p.x) * c + (Y - p.y) * s
    yr = -(X - p.x) * s + (Y - p.y) * c
    d = np.sqrt((xr / p.radius) ** 2 + (yr * p.elongation / p.radius) ** 2)
    ang = np.arctan2(yr * p.elongation, xr)
    wob = np.ones_like(d)
    for j, (a, ph) in enumerate(p.lobes, start=2):
        wob += a * np.cos(j * ang + ph)
    de = d / wob
    # sessile domes rise gently out of the wall; a stalked head is a rounder ball
    power = 0.9 if p.kind == "sessile" else 0.7
    h = p.height * np.clip(1.0 - de * de, 0.0, 1.0) ** power
    return de, h


def _light(p: PolypSpec, lumen) -> tuple:
    # tilt of the scope's light along the wall: grows with depth (see mucosa), points away
    # from the lumen; plus a little jitter so domes are not all lit alike
    rx, ry = p.x - lumen[0], p.y - lumen[1]
    rho = max(math.hypot(rx, ry), 1e-3)
    # a dome sticks up towards the lens, so it sees the light more head-on than the wall
    k = min(1.0, max(0.05, 0.2 / rho))
    return k * rx / rho + p.light[0] * 0.3, k * ry / rho + p.light[1] * 0.3


def _lit(height_px, light):
    """(relief relative to flat wall, cosine to the light) of a height field in pixels."""
    gy, gx = np.gradient(height_px)
    lx, ly = light
    norm = np.sqrt(1 + gx * gx + gy * gy)
    dot = 1.0 - gx * lx - gy * ly
    relief = np.clip(dot / norm, 0.05, None)
    cosang = np.clip(dot / (norm * math.sqrt(1 + lx * lx + ly * ly)), 0.0, 1.0)
    return relief.astype(np.float32), cosang.astype(np.float32)


def _tint(base, colour, jitter):
    gain, add = _TINTS[colour]
    return np.asarray(base, np.float32) * np.array(gain, np.float32) + np.array(add, np.float32) + jitter


def _visibility(p: PolypSpec, logz, lumen, X, Y, footprint):
    """Fraction of each pixel where the polyp is not behind a nearer fold (depth test).

    The polyp is seated on the wall seen at its centre, or, when a fold was placed in front
    of it (``occluded_at``), on the far wall behind that fold. A pixel whose visible wall is
    clearly nearer than the seat (after undoing the perspective change of depth across the
    footprint) shows a fold in front of the polyp; deeper wall is behind it.
    """
    rho = np.hypot(X - lumen[0], Y - lumen[1])
    rho_p = max(math.hypot(p.x - lumen[0], p.y - lumen[1]), 1e-3)
    q = logz + np.log(np.maximum(rho, 1e-3) / rho_p)
    inside = q[footprint > 0.5]
    if p.occluded_at is not None and inside.size:
        seat = float(np.percentile(inside, 90))
    else:
        cy, cx = np.unravel_index(np.argmin(np.hypot(X - p.x, Y - p.y)), X.shape)
        seat = float(q[cy, cx])
    return np.clip((q - (seat - 0.15)) / 0.04 + 0.5, 0, 1).astype(np.float32)


def paint_polyp(image: np.ndarray, labels: np.ndarray, layers: WallLayers, label: int,
                p: PolypSpec, rng: np.random.Generator, exposure: float):
    """Paint polyp ``p`` onto ``image`` and write ``label`` where it is visible.

    Returns (window, glints): the texture window (row0, row1, col0, col1) that holds all of
    the polyp, for culling, and its highlight ellipses (x, y, a, b, angle_deg, intensity) in
    texture pixels.
    """
    seg = layers.segment
    lumen, mucosa = seg.lumen, seg.mucosa
    window, X, Y = _grid(p, layers)
    r0, r1, c0, c1 = window
    px = layers.px
    wall_alb = layers.full(layers.albedo, window)
    light = layers.flat_light(X, Y)
    lvec = _light(p, lumen)
    fine = noise(rng, X.shape, max(6, X.shape[1] // 4), octaves=2)
    de, h = _head(p, X, Y)
    a_h = _cover((1.0 - de) * p.radius, px)
    a_s = np.zeros_like(a_h)
    if p.kind == "pedunculated":
        # stalk: a thick, mucosa-coloured cylinder from its base to the head
        ux, uy = math.cos(p.stalk_angle), math.sin(p.stalk_angle)
        length = p.stalk_length * p.radius
        bx, by = p.x - ux * length, p.y - uy * length
        t = np.clip(((X - bx) * ux + (Y - by) * uy) / length, 0.0, 1.0)
        dist = np.hypot(X - (bx + t * ux * length), Y - (by + t * uy * length))
        width = p.radius * (0.7 - 0.12 * t)
        a_s = _cover(width - dist, px)
    vis = _visibility(p, layers.full(layers.logz, window), lumen, X, Y, np.maximum(a_h, a_s))

    out = image[r0:r1, c0:c1].astype(np.float32)
    # soft contact shadow around the rim, stronger on the side facing the lumen
    away = math.atan2(p.y - lumen[1], p.x - lumen[0])
    side = 0.6 + 0.4 * np.cos(np.arctan2(Y - p.y, X - p.x) - away - np.pi)
    ring = 0.3 * np.exp(-(((de - 1.0) / 0.15) ** 2)) * (de > 1.0) * side * vis
    out *= (1.0 - ring)[..., None]
    if p.kind == "pedunculated":
        hs = np.sqrt(np.clip(1.0 - (dist / width) ** 2, 0, 1)) * width * (0.6 + 0.6 * t)
        rel, _ = _lit(hs * px, lvec)
        s_alb = wall_alb * 0.85 + _tint(mucosa, p.colour, 0) * 0.15
        colour = tone(radiance(s_alb, light * rel * (0.85 + 0.25 * t), np.zeros_like(light), exposure))
        a = (a_s * vis)[..., None]
        out = out * (1 - a) + colour * a

    # the fine noise in the height reads as the polyp's surface texture under the light
    rel, cosang = _lit((h + 0.0008 * fine) * p.radius * px, lvec)
    h_alb = _tint(mucosa, p.colour, rng.normal(0, 4, 3).astype(np.float32))
    h_alb = h_alb * (1.0 + 0.05 * noise(rng, X.shape, 4, octaves=2))[..., None]
    # pit pattern and surface capillaries: a fine speckle of red dots and paler pits,
    # denser on red polyps
    speck = noise(rng, X.shape, max(8, X.shape[1] // 2), octaves=1)
    dots = np.clip((speck - (0.7 if p.colour == "red" else 1.0)) * 0.8, 0, 1)[..., None]
    h_alb *= 1.0 - dots * np.array([0.3, 0.35, 0.05], np.float32)
    pits = np.clip((-speck - 1.4) * 0.8, 0, 1)[..., None]
    h_alb += pits * np.array([30, 28, 18], np.float32)
    # the dome grows out of the mucosa: near its rim it takes on the wall's colour
    rim = _smooth((1.0 - de) / 0.15)[..., None]
    h_alb = h_alb * rim + wall_alb * (1.0 - rim)
    sheen = 0.45 * cosang ** 30 * np.clip(light, 0, 1)
    colour = tone(radiance(h_alb, light * rel * (1.0 + 0.15 * h), sheen, exposure))
    a = a_h * vis
    out = out * (1 - a[..., None]) + colour * a[..., None]
    image[r0:r1, c0:c1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    visible = np.maximum(a_h, a_s) * vis
    labels[r0:r1, c0:c1][visible >= 0.5] = label

    # wet glints: a sparkle of small ones and one or two larger where the dome faces the light
    gloss = np.clip((cosang - 0.9) / 0.1, 0, 1) ** 2 * (a > 0.95)
    ys, xs = np.nonzero(gloss > rng.random(gloss.shape) * 1.5)
    glints = []
    if ys.size:
        pick = rng.choice(ys.size, size=min(ys.size, int(rng.integers(5, 16))), replace=False)
        rad = p.radius * px
        for j, k in enumerate(pick):
            big = j == 0 and rng.random() < 0.6
            g = rad * (rng.uniform(0.05, 0.09) if big else rng.uniform(0.01, 0.03))
            glints.append((c0 + xs[k], r0 + ys[k], g, g * rng.uniform(0.3, 0.8), rng.uniform(0, 180), 1.0))
    return window, glints
