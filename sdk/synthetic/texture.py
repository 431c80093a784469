"""One segment's texture: the wall, its polyps, their labels, and wet specular highlights.

This is the expensive part of a segment and is done once per segment; every frame of the
segment is then a cheap affine cut of it. Highlights are baked in (they ride with the
surface), which costs nothing per frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .mucosa import WallLayers, bake, noise, paint_wall
from .polyps import paint_polyp
from .scene import TEXTURE_HALF, Segment


@dataclass
class SegmentTexture:
    """A segment painted at ``px`` texture pixels per world unit."""

    segment: Segment
    px: float
    image: np.ndarray           # (T, T, 4) uint8 BGRA (alpha unused: 4 channels warp faster)
    labels: np.ndarray          # (T, T) uint8: 0 wall, k + 1 = segment.polyps[k] visible here
    boxes: np.ndarray           # (P, 4) world xyxy of each polyp's texture window (for culling)


def _wall_glints(rng, layers: WallLayers, labels: np.ndarray, lumen: tuple) -> list:
    """Highlight ellipses (x, y, a, b, angle_deg, intensity) on the wall, texture pixels."""
    px, n = layers.px, layers.crest.shape[0]
    out = []
    # fold rims and near wall facing the lens: short streaks strung along the fold
    m = int(n * n * 0.012)
    cy, cx = rng.integers(0, n, m), rng.integers(0, n, m)
    crest = layers.crest[cy, cx]
    lit = np.minimum(layers.shade[cy, cx], 1.0)
    fy, fx = 2 * cy + 0.5, 2 * cx + 0.5          # half- to full-resolution pixel centres
    keep = rng.random(m) < 0.12 * crest + 0.001 * np.clip(lit - 0.6, 0, 1)
    keep &= labels[np.minimum(fy.astype(int), labels.shape[0] - 1),
                   np.minimum(fx.astype(int), labels.shape[1] - 1)] == 0
    for y, x, li in zip(fy[keep], fx[keep], lit[keep]):
        # glints string out along the fold, i.e. across the direction to the lumen, in
        # clusters of a few irregular blobs of mixed sizes
        along = math.atan2(y / px - TEXTURE_HALF - lumen[1], x / px - TEXTURE_HALF - lumen[0]) + np.pi / 2
        ux, uy = math.cos(along), math.sin(along)
        base = math.exp(rng.normal(math.log(0.005), 0.45)) * (0.6 + 0.5 * li) * px
        pos = 0.0
        for _ in range(1 + rng.poisson(1.5)):
            a = base * math.exp(rng.normal(0, 0.4))
            pos += a * rng.uniform(1.5, 3.5)
            gx, gy = x + ux * pos + rng.normal(0, a * 0.3), y + uy * pos + rng.normal(0, a * 0.3)
            for _ in range(1 + rng.poisson(0.7)):     # lumpy outline: overlapping ellipses
                ox, oy = rng.normal(0, a * 0.35, 2)
                b = a * rng.uniform(0.6, 1.1)
                out.append((gx + ox, gy + oy, b, b * rng.uniform(0.25, 0.55),
                            math.degrees(along) + rng.normal(0, 15), 1.0))
    return out


def _draw_glints(image: np.ndarray, glints: list, px: float) -> None:
    if not glints:
        return
    layer = np.zeros(image.shape[:2], np.uint8)
    for x, y, a, b, ang, inten in glints:
        centre = (int(round(x * 16)), int(round(y * 16)))
        axes = (max(1, int(round(a * 16))), max(1, int(round(b * 16))))
        cv2.ellipse(layer, centre, axes, float(ang), 0, 360, int(255 * inten), -1, cv2.LINE_AA, 4)
    # bloom: saturated highlights bleed into a soft halo on camera sensors
    glow = cv2.GaussianBlur(layer, (0, 0), max(1.0, px * 0.003))
    # the halo is warm (yellow-white), the core saturates to white
    halo = [cv2.addWeighted(layer, 1.0, glow, w, 0) for w in (0.35, 0.7, 0.8)]
    cv2.add(image, cv2.merge(halo), dst=image)


def build_texture(seg: Segment, px: float) -> SegmentTexture:
    """Paint segment ``seg`` at ``px`` texture pixels per world unit."""
    layers = paint_wall(seg, px)
    size = layers.size
    image = cv2.resize(bake(layers, seg.exposure), (size, size), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng([seg.seed, 2])
    # fine mucosal grain: the only wall detail finer than the half-resolution layers
    grain = noise(rng, (size, size), int(2 * TEXTURE_HALF * 40), octaves=1)
    grain = np.clip(128 + 4.0 * grain, 0, 255).astype(np.uint8)
    cv2.multiply(image, cv2.merge([grain, grain, grain]), dst=image, scale=1 / 128)
    labels = np.zeros((size, size), np.uint8)
    windows, glints = [], []
    for k, p in enumerate(seg.polyps):
        window, g = paint_polyp(image, labels, layers, k + 1, p, rng, seg.exposure)
        windows.append(window)
        glints += g
    glints += _wall_glints(rng, layers, labels, seg.lumen)
    _draw_glints(image, glints, px)
    boxes = np.array([[c0 / px - TEXTURE_HALF, r0 / px - TEXTURE_HALF,
                       c1 / px - TEXTURE_HALF, r1 / px - TEXTURE_HALF]
                      for (r0, r1, c0, c1) in windows], np.float32).reshape(-1, 4)
    return SegmentTexture(seg, px, cv2.cvtColor(image, cv2.COLOR_BGR2BGRA), labels, boxes)
