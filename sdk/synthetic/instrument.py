"""Instruments drawn per frame in screen space: they come out of the scope's working channel,
so they stay put on screen while the colon moves behind them.

The shaft is a tapered cylinder (perspective makes the far end thinner) shaded in strips
across its width: dark edges, a bright specular line. Forceps end in two cupped jaws that
open and close; a snare is a white plastic sheath with a wire loop.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .scene import InstrumentSpec

_SHIFT = 4                      # fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT
# (v0, v1) bands across the shaft width and the brightness of each: a lit metal cylinder
_V = np.linspace(-1.0, 1.0, 12)
_GAIN = 0.3 + 0.6 * np.sqrt(np.clip(1 - ((_V[:-1] + _V[1:]) / 2) ** 2, 0, 1)) \
    + 0.55 * np.exp(-((((_V[:-1] + _V[1:]) / 2) - 0.25) / 0.2) ** 2)
_BASE = {"forceps": np.array([150, 146, 140], np.float32),   # steel, a touch blue
         "snare": np.array([215, 222, 225], np.float32)}     # white plastic sheath


def _pts(*xy):
    return np.round(np.array(xy, np.float64) * _ONE).astype(np.int32)


def _strip_polys(back, tip, n, w_back, w_tip):
    for k in range(len(_V) - 1):
        v0, v1 = _V[k], _V[k + 1]
        yield k, _pts(back + n * v0 * w_back / 2, back + n * v1 * w_back / 2,
                      tip + n * v1 * w_tip / 2, tip + n * v0 * w_tip / 2)


def draw_instrument(img: np.ndarray, mask: np.ndarray, spec: InstrumentSpec, t: float,
                    centre: tuple, radius: float) -> bool:
    """Draw ``spec`` at segment time ``t`` into ``img`` and its pixels into ``mask``.

    ``centre`` is the field-of-view centre in ``img`` coordinates and ``radius`` its radius in
    pixels. Returns False when the instrument is not in view at ``t``.
    """
    f = spec.insertion(t)
    if f <= 0.0:
        return False
    c = np.array(centre, np.float64)
    e = np.array([math.cos(spec.entry_angle), math.sin(spec.entry_angle)])
    u = np.array([math.cos(spec.heading), math.sin(spec.heading)])
    n = np.array([-u[1], u[0]])
    rim = c + e * radius * 1.02
    back = rim - u * radius * 0.6                  # far behind the rim: the cut is off screen
    reach = f * spec.depth * radius
    tip = rim + u * reach
    w0 = spec.width * radius
    w_tip = w0 * (1.0 - 0.55 * min(1.0, reach / radius))   # perspective: the far end is smaller
    w_back = w0 * 1.25
    base = _BASE[spec.kind]
    for k, poly in _strip_polys(back, tip, n, w_back, w_tip):
        colour = tuple(float(v) for v in np.clip(base * _GAIN[k], 0, 255))
        cv2.fillConvexPoly(img, poly, colour, cv2.LINE_AA, _SHIFT)
    outline = _pts(back + n * w_back / 2, tip + n * w_tip / 2, tip - n * w_tip / 2, back - n * w_back / 2)
    cv2.fillConvexPoly(mask, outline, 255, cv2.LINE_8, _SHIFT)
    if spec.kind == "forceps":
        _jaws(img, mask, tip, u, w_tip, t)
    else:
        _snare(img, mask, tip, u, w_tip, f, radius)
    return True


def _jaws(img, mask, tip, u, w, t):
    # jaws open and close slowly as if the endoscopist were lining up a biopsy
    opening = math.radians(4 + 26 * (0.5 + 0.5 * math.sin(t / 17.0)))
    length = w * 1.35
    heading = math.atan2(u[1], u[0])
    for side in (-1, 1):
        a = heading + side * opening
        d = np.array([math.cos(a), math.sin(a)])
        centre = tip + d * length * 0.5
        axes = (length * 0.55, w * 0.36)
        ang = math.degrees(a)
        ctr = tuple(int(v) for v in _pts(*centre))
        ax = tuple(max(1, int(v)) for v in _pts(*axes))
        cv2.ellipse(img, ctr, ax, ang, 0, 360, (88, 86, 84), -1, cv2.LINE_AA, _SHIFT)
        hl = tuple(int(v) for v in _pts(*(centre + np.array([-d[1], d[0]]) * side * -w * 0.08)))
        ax2 = tuple(max(1, int(v)) for v in _pts(axes[0] * 0.75, axes[1] * 0.4))
        cv2.ellipse(img, hl, ax2, ang, 0, 360, (205, 205, 200), -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(mask, ctr, ax, ang, 0, 360, 255, -1, cv2.LINE_8, _SHIFT)
    # the clevis pin that hinges the jaws
    pin = tuple(int(v) for v in _pts(*tip))
    cv2.circle(img, pin, int(w * 0.32 * _ONE), (60, 60, 62), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(mask, pin, int(w * 0.32 * _ONE), 255, -1, cv2.LINE_8, _SHIFT)


def _snare(img, mask, tip, u, w, f, radius):
    cv2.circle(img, tuple(int(v) for v in _pts(*tip)), int(w * 0.5 * _ONE), (200, 206, 210), -1,
               cv2.LINE_AA, _SHIFT)
    cv2.circle(mask, tuple(int(v) for v in _pts(*tip)), int(w * 0.5 * _ONE), 255, -1, cv2.LINE_8,
               _SHIFT)
    # the wire loop opens as it is pushed out of the sheath
    length = radius * (0.08 + 0.32 * f)
    width = length * 0.55
    centre = tip + u * length * 0.5
    ang = math.degrees(math.atan2(u[1], u[0]))
    ctr = tuple(int(v) for v in _pts(*centre))
    axes = tuple(max(1, int(v)) for v in _pts(length * 0.5, width * 0.5))
    thick = max(1, int(round(radius * 0.006)))
    cv2.ellipse(img, ctr, axes, ang, 0, 360, (45, 45, 48), thick + 1, cv2.LINE_AA, _SHIFT)
    if thick > 1:
        cv2.ellipse(img, ctr, axes, ang, 0, 360, (150, 150, 150), max(1, thick // 2), cv2.LINE_AA, _SHIFT)
    cv2.ellipse(mask, ctr, axes, ang, 0, 360, 255, thick + 1, cv2.LINE_8, _SHIFT)
