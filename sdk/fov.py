"""Field of view: where the round (or octagonal) scope image sits inside the black border.

Endoscopy frames show the scope's image inside a black surround, often with text and an
inset (scope position, time) drawn on the surround. ``find_fov`` returns the rectangle around
the image, so ``preprocess(frame, crop=find_fov(frame))`` gives the model the image and not
the border. It reads a grid of about 256 samples along the shorter side (about 0.4 ms on a
1080p or 4K frame, native), cheap enough to run every N frames and reuse the rectangle between.

The rule, identical in the native build and the numpy twin: a pixel is *lit* when its
brightest colour channel is above ``threshold``; a sampled row belongs to the field of view
when at least ``ceil(min_fill * m)`` of its samples are lit, ``m`` being the most lit samples
of any row (columns alike); the field of view spans the longest run of such rows and of such
columns, and each of its four edges is then refined to the pixel with the same test. Text
and insets separated from the image by the border are left out; an inset drawn touching the
image is inside the rectangle. A frame with nothing lit gives the whole frame.
"""
from __future__ import annotations

import math

import numpy as np

from . import native as _native
from .frames import check_frame


def find_fov(frame, *, threshold: int = 40, min_fill: float = 0.1, step: int | None = None) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the scope image in ``frame`` (HxWx3 or HxWx4 uint8, any channel order).

    threshold: brightest-channel value above which a pixel counts as image (the black of
        video borders is 0-20, JPEG ringing included).
    min_fill: share of the fullest row (column) a row (column) must reach.
    step: sampling step in pixels; by default ``max(1, min(H, W) // 256)``.

    >>> f = np.zeros((100, 200, 3), np.uint8); f[10:90, 60:140] = 120
    >>> find_fov(f)
    (60, 10, 80, 80)
    """
    check_frame(frame)
    h, w = frame.shape[:2]
    threshold, min_fill, step = _check_options(threshold, min_fill, step, h, w)
    mod = _native.native()
    if mod is None:
        return find_fov_numpy(frame, threshold, min_fill, step)
    if frame.strides[2] != 1 or frame.strides[1] != frame.shape[2]:
        frame = np.ascontiguousarray(frame)
    return tuple(mod.find_fov(frame, threshold, min_fill, step))


def _check_options(threshold, min_fill, step, h, w):
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or not 0 <= threshold <= 255:
        raise ValueError(f"threshold: expected an int in 0..255, got {threshold!r}")
    if not isinstance(min_fill, (int, float, np.floating)) or not 0 < float(min_fill) <= 1:
        raise ValueError(f"min_fill: expected a number in (0, 1], got {min_fill!r}")
    if step is None:
        step = max(1, min(h, w) // 256)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step: expected an int >= 1, got {step!r}")
    return int(threshold), float(min_fill), int(step)


def _longest_run(ok: np.ndarray) -> tuple[int, int]:
    """(first, last) of the first longest run of True."""
    edges = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    i = int(np.argmax(ends - starts))
    return int(starts[i]), int(ends[i])



def _walk(edge: int, stop: int, direction: int, ok) -> int:
    """Move ``edge`` one pixel at a time towards ``stop`` (exclusive) while ``ok`` holds."""
    for v in range(edge + direction, stop, direction):
        if not ok(v):
            break
        edge = v
    return edge


def find_fov_numpy(frame: np.ndarray, threshold: int, min_fill: float, step: int) -> tuple[int, int, int, int]:
    """The numpy twin of ``gi_sdk._native.find_fov`` (options already checked)."""
    h, w = frame.shape[:2]
    colour = frame[..., :3]
    lit = colour[::step, ::step].max(axis=2) > threshold
    rows, cols = lit.sum(axis=1), lit.sum(axis=0)
    if rows.max() == 0:
        return 0, 0, w, h
    need_row = max(1, math.ceil(int(rows.max()) * min_fill))
    need_col = max(1, math.ceil(int(cols.max()) * min_fill))
    r0, r1 = _longest_run(rows >= need_row)
    c0, c1 = _longest_run(cols >= need_col)

    def row_ok(y):
        return int((colour[y, ::step].max(axis=-1) > threshold).sum()) >= need_row

    def col_ok(x):
        return int((colour[::step, x].max(axis=-1) > threshold).sum()) >= need_col

    top, bottom, left, right = r0 * step, r1 * step, c0 * step, c1 * step
    # each edge lies between its sample and the next one outside: walk while the test holds
    top = _walk(top, max((r0 - 1) * step, -1), -1, row_ok)
    bottom = _walk(bottom, min((r1 + 1) * step, h), 1, row_ok)
    left = _walk(left, max((c0 - 1) * step, -1), -1, col_ok)
    right = _walk(right, min((c1 + 1) * step, w), 1, col_ok)
    return left, top, right - left + 1, bottom - top + 1
