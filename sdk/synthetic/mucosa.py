"""The colon wall of one segment, painted once into a large texture that frames are cut from.

Light and relief come from the 3D tube model (:mod:`.tube`). Vessels are painted on the
unrolled wall (angle x log depth), so they shrink with distance and are hidden by folds like
the real thing; slow colour drift is painted on the texture grid directly.

The wall is smooth, so it is computed at half the texture's resolution and upsampled once,
after the tone curve; what needs full resolution (polyps, glints, fine grain) is added on
top of the upsampled image (see :mod:`.texture`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .scene import TEXTURE_HALF, Segment
from .tube import Z_MAX, Z_MIN, flat_light, tube_layers

TONE = 190.0                    # shoulder of the sensor's tone curve (see :func:`bake`)
UNROLL_COLS = 2048              # texels around the circumference of the unrolled wall


@dataclass
class WallLayers:
    """The wall at half the texture's resolution: float32 arrays indexed [row=y, col=x]."""

    segment: Segment
    px: float                   # full-resolution texture pixels per world unit
    albedo: np.ndarray          # (n, n, 3) BGR reflectance, 0..255 (linear, before tone curve)
    shade: np.ndarray           # (n, n) light reaching the eye per unit albedo
    sheen: np.ndarray           # (n, n) broad specular sheen of the wet surface, 0..1
    crest: np.ndarray           # (n, n) 0..1, where small glints may sit
    logz: np.ndarray            # (n, n) log depth of the visible wall (a depth buffer)

    @property
    def size(self) -> int:
        """Side of the full-resolution texture in pixels (twice the layers' side)."""
        return 2 * self.shade.shape[0]

    def full(self, layer: np.ndarray, window: tuple) -> np.ndarray:
        """``layer`` upsampled to full resolution over ``window`` = (row0, row1, col0, col1).

        Same sampling as ``cv2.resize(layer, 2x, INTER_LINEAR)``, so pieces agree with the
        upsampled whole.
        """
        r0, r1, c0, c1 = window
        xs = (np.arange(c0, c1, dtype=np.float32) - 0.5) * 0.5
        ys = (np.arange(r0, r1, dtype=np.float32) - 0.5) * 0.5
        mx = np.ascontiguousarray(np.broadcast_to(xs[None, :], (r1 - r0, c1 - c0)))
        my = np.ascontiguousarray(np.broadcast_to(ys[:, None], (r1 - r0, c1 - c0)))
        return cv2.remap(layer, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def flat_light(self, X, Y):
        """Light a straight, fold-free wall would get at world points (X, Y)."""
        lx, ly = self.segment.lumen
        return flat_light(self.segment, np.hypot(X - lx, Y - ly)).astype(np.float32)


def noise(rng: np.random.Generator, shape: tuple, cells: int, octaves: int = 3,
          persistence: float = 0.5) -> np.ndarray:
    """Smooth value noise with unit spread: random grids upsampled by bicubic resize."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp = 1.0
    for o in range(octaves):
        n = max(2, int(cells * 2 ** o))
        grid = rng.standard_normal((n + 1, n + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    return out * (1.0 / math.sqrt(sum(persistence ** (2 * o) for o in range(octaves))))


def _walk(rng, pos, ang, width, steps, out, budget):
    # one vessel and, recursively, the thinner ones that fork off it
    turns = ang + np.cumsum(rng.normal(0, 0.2, steps))
    pts = pos + np.cumsum(np.stack([np.cos(turns), np.sin(turns)], 1) * 5.0, axis=0)
    out.append((np.vstack([pos, pts]), width))
    if width > 0.3 and budget > 0:
        for k in np.flatnonzero(rng.random(steps) < 0.05)[:3]:
            side = rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
            _walk(rng, pts[k], turns[k] + side, width * 0.65, max(4, int(steps * 0.6)), out, budget - 1)


def _vessels(rng: np.random.Generator, density: float, cols: int):
    """Branching submucosal vessels on the unrolled wall: (sharp, blurred) float32 maps.

    The wall is ``cols`` texels around; rows run along log depth at the same texel size.
    Vessels are laid out on a fixed 2048-texel grid and scaled, so a seed draws the same
    vessels at every resolution.
    """
    full_rows = math.log(Z_MAX / Z_MIN) * UNROLL_COLS / (2 * np.pi)
    scale = cols / UNROLL_COLS
    layer = np.zeros((int(math.ceil(full_rows * scale)), cols), np.uint8)
    lines = []
    for _ in range(int(110 * density)):
        _walk(rng, rng.uniform([0, 0], [UNROLL_COLS, full_rows]), rng.uniform(0, 2 * np.pi),
              rng.uniform(0.5, 1.0), int(rng.integers(30, 110)), lines, 3)
    for pts, width in lines:
        poly = (pts * (16 * scale)).astype(np.int32)     # 4 fractional bits
        thick = max(1, int(round((1 if width < 0.75 else 2) * scale)))
        for wrap in (-cols * 16, 0, cols * 16):           # seamless around the tube
            cv2.polylines(layer, [poly + [wrap, 0]], False, int(80 + 150 * width), thick,
                          cv2.LINE_AA, shift=4)
    sharp = cv2.GaussianBlur(layer, (0, 0), 0.7).astype(np.float32) * (1 / 255.0)
    # a pre-blurred copy stands in for mip-mapping: far wall shrinks vessels below a pixel
    return sharp, cv2.GaussianBlur(sharp, (0, 0), 3.0 * scale + 0.5)


def paint_wall(seg: Segment, px: float) -> WallLayers:
    """Paint the mucosa of ``seg`` for a texture of ``px`` pixels per world unit."""
    rng = np.random.default_rng([seg.seed, 1])
    n = int(math.ceil(TEXTURE_HALF * px))          # half-resolution side
    # half-resolution pixel i sits between full-resolution pixels 2i and 2i + 1
    axis = (2 * np.arange(n, dtype=np.float32) + 0.5) / px - TEXTURE_HALF
    light, sheen, crest, logz, theta = tube_layers(seg, rng, axis)
    lo = max(8, n // 2)
    cells = int(2 * TEXTURE_HALF * 2.5)
    # slow blotches of light: the wall is not a smooth pipe
    shade = cv2.resize(noise(rng, (lo, lo), cells, octaves=3) * 0.07 + 1.0, (n, n))
    shade *= light
    base = np.array(seg.mucosa, np.float32)
    # colour drifts slowly over the wall (patches more orange, more pink, paler)
    tint = np.stack([noise(rng, (lo, lo), cells // 2 + 1, octaves=3) for _ in range(3)], -1)
    albedo = cv2.resize(tint, (n, n))
    albedo *= 0.05
    albedo += 1.0
    albedo *= base
    # deep in the lumen the colour turns murky brown
    murk = np.clip((logz - 0.6) / 1.5, 0, 1)[..., None]
    albedo *= 1.0 + murk * np.array([0.2, 0.35, -0.3], np.float32)
    cols = max(512, min(UNROLL_COLS, int(2 * n)))
    sharp, blurred = _vessels(rng, seg.vessel_density, cols)
    vis = np.clip(0.55 + 0.5 * cv2.resize(noise(rng, (64, 64), 4, octaves=2), sharp.shape[::-1]), 0.1, 1)
    map_x = theta * np.float32(cols / (2 * np.pi))
    map_y = (logz - math.log(Z_MIN)) * np.float32(cols / (2 * np.pi))
    v_sharp = cv2.remap(sharp * vis, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    v_blur = cv2.remap(blurred * vis, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    far = np.clip(logz * 0.9 + 0.2, 0, 1)        # beyond ~1 tube radius, use the blurred copy
    vessels = v_sharp + (v_blur - v_sharp) * far
    albedo *= 1.0 - vessels[..., None] * np.array([0.42, 0.55, 0.25], np.float32)
    # fine striations running around the tube (along the folds), as on real mucosa: noise
    # stretched along the circumference of the unrolled wall
    rows = sharp.shape[0]
    striae = cv2.resize(rng.standard_normal((max(2, rows // 3), max(2, cols // 20))).astype(np.float32),
                        (cols, rows), interpolation=cv2.INTER_CUBIC)
    striae = cv2.remap(striae, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    albedo *= (1.0 + 0.045 * np.clip(striae, -2.5, 2.5) * (1 - far))[..., None]
    return WallLayers(seg, px, albedo, shade, sheen, crest, logz)


def tone(v: np.ndarray) -> np.ndarray:
    """Sensor tone curve ``255 (1 - exp(-v / TONE))``, rescaled so 255 maps to 255; float32.

    Its soft shoulder makes the red channel saturate first on bright near wall, which then
    turns pale peach rather than clipping to flat red, as on real scopes.
    """
    out = cv2.exp(v * np.float32(-1.0 / TONE))
    out = (1.0 - out) * np.float32(255.0 / (1.0 - math.exp(-255.0 / TONE)))
    return np.clip(out, 0, 255, out=out)


def radiance(albedo, shade, sheen, exposure: float):
    """Linear light leaving the wall: albedo x light plus the wet sheen."""
    v = albedo * (shade * exposure)[..., None]
    v += (sheen * 200.0)[..., None]
    return v


def bake(layers: WallLayers, exposure: float) -> np.ndarray:
    """The half-resolution wall as a BGR uint8 image."""
    return tone(radiance(layers.albedo, layers.shade, layers.sheen, exposure)).astype(np.uint8)
