"""Geometry on results: polygons -> masks, box and mask IoU, polygon area.

Coordinates are continuous pixels (pixel (i, j) covers x in [j, j + 1), y in [i, i + 1)), as
``Result`` keeps them. Each function runs in the compiled ``gi_sdk._native`` when it is built
and in its numpy/OpenCV twin otherwise; the two give identical numbers (polygon area: equal
to 1e-12 relative, the order of the float64 sum differs).

``polygons_to_mask`` is defined by OpenCV: it returns exactly
``cv2.fillPoly(zeros, [np.round(p - 0.5).astype(np.int32) for p in polygons if len(p) >= 3], 1)``
as bool, i.e. the vertices rounded (half to even) to OpenCV's pixel-centre integers, every
edge drawn as an 8-connected line and the interior filled by an even-odd scanline over all
the polygons' edges together (two overlapping polygons leave their overlap empty, like
``Result.masks``). The native build restates OpenCV's algorithm and equals it pixel for pixel
(tests compare with cv2 on random polygons). Vertices are clamped to +-2**16 px first
(8x an 8K frame), which bounds the scanline work for absurd coordinates.
"""
from __future__ import annotations

import numpy as np

from . import native as _native

#: Vertices are clamped to this many pixels off the origin before rasterizing.
MAX_COORD = float(2 ** 16)


def _array(value, name: str, dtype, shape_ok, expected: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array {expected}, got {type(value).__name__}")
    if value.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {value.dtype}")
    if not shape_ok(value.shape):
        raise ValueError(f"{name}: expected shape {expected}, got {value.shape}")
    return np.ascontiguousarray(value)


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite coordinates, got NaN or inf")
    return a


def _polygon(p, name="polygon") -> np.ndarray:
    return _finite(_array(p, name, np.float32, lambda s: len(s) == 2 and s[1] == 2, "(K, 2) float32"), name)


def _boxes(b, name: str) -> np.ndarray:
    return _finite(_array(b, name, np.float32, lambda s: len(s) == 2 and s[1] == 4, "(N, 4) float32"), name)


def polygons_to_mask(polygons, height: int, width: int) -> np.ndarray:
    """Rasterize polygons (each a (K, 2) float32 array of x, y) to an (height, width) bool mask.

    Polygons with fewer than 3 vertices are skipped. Matches ``cv2.fillPoly`` exactly (module doc).

    >>> polygons_to_mask([np.array([[1, 1], [4, 1], [4, 3]], np.float32)], 4, 5).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    if isinstance(polygons, np.ndarray) or not isinstance(polygons, (list, tuple)):
        raise ValueError(f"polygons: expected a list of (K, 2) float32 arrays, got {type(polygons).__name__}")
    checked = [_polygon(p) for p in polygons]
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
    mod = _native.native()
    if mod is not None:
        return mod.polygons_to_mask(checked, int(height), int(width))
    return polygons_to_mask_numpy(checked, int(height), int(width))


def polygons_to_mask_numpy(polygons, height: int, width: int) -> np.ndarray:
    """The OpenCV twin of ``gi_sdk._native.polygons_to_mask`` (arguments already checked)."""
    import cv2  # runtime dependency, imported where it is used

    mask = np.zeros((height, width), np.uint8)
    pts = [np.round(np.clip(p - np.float32(0.5), -MAX_COORD, MAX_COORD)).astype(np.int32) for p in polygons if len(p) >= 3]
    if pts and height and width:
        cv2.fillPoly(mask, pts, 1)
    return mask.astype(bool)


def box_iou(a, b) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), float32 xyxy -> (N, M) float32.

    Areas are continuous ((x2 - x1) * (y2 - y1), no +1); an inverted box has area 0; a pair
    whose union is 0 has IoU 0. Computed in float64, returned as float32.

    >>> box_iou(np.array([[0, 0, 10, 10]], np.float32), np.array([[5, 0, 15, 10]], np.float32))
    array([[0.33333334]], dtype=float32)
    """
    a, b = _boxes(a, "a"), _boxes(b, "b")
    mod = _native.native()
    return mod.box_iou(a, b) if mod is not None else box_iou_numpy(a, b)


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The numpy twin of ``gi_sdk._native.box_iou``."""
    p, q = a.astype(np.float64)[:, None, :], b.astype(np.float64)[None, :, :]
    area_a = np.maximum(0.0, p[..., 2] - p[..., 0]) * np.maximum(0.0, p[..., 3] - p[..., 1])
    area_b = np.maximum(0.0, q[..., 2] - q[..., 0]) * np.maximum(0.0, q[..., 3] - q[..., 1])
    iw = np.maximum(0.0, np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0]))
    ih = np.maximum(0.0, np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1]))
    inter = iw * ih
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0).astype(np.float32)


def mask_iou(a, b):
    """IoU of bool masks: (N, H, W) with (M, H, W) -> (N, M) float32; two (H, W) masks -> float.

    A pair whose union is empty has IoU 0.

    >>> m = np.zeros((4, 4), bool); m[:2] = True
    >>> mask_iou(m, np.ones((4, 4), bool))
    0.5
    """
    single = isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == 2 and b.ndim == 2
    if single:
        a, b = a[None], b[None]
    a = _array(a, "a", np.bool_, lambda s: len(s) == 3, "(N, H, W) bool")
    b = _array(b, "b", np.bool_, lambda s: len(s) == 3, "(M, H, W) bool")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a, b: expected masks of one size, got {a.shape} and {b.shape}")
    mod = _native.native()
    out = mod.mask_iou(a, b) if mod is not None else mask_iou_numpy(a, b)
    return float(out[0, 0]) if single else out


def mask_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The numpy twin of ``gi_sdk._native.mask_iou``."""
    pa, pb = np.packbits(a.reshape(len(a), -1), axis=1), np.packbits(b.reshape(len(b), -1), axis=1)
    count_a = np.bitwise_count(pa).sum(axis=1, dtype=np.int64)
    count_b = np.bitwise_count(pb).sum(axis=1, dtype=np.int64)
    out = np.zeros((len(a), len(b)), np.float32)
    for i in range(len(a)):
        inter = np.bitwise_count(pa[i][None] & pb).sum(axis=1, dtype=np.int64)
        union = count_a[i] + count_b - inter
        out[i] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def polygon_area(polygon) -> float:
    """Area of a polygon ((K, 2) float32 x, y; shoelace, in float64); 0 below 3 vertices.

    >>> polygon_area(np.array([[0, 0], [4, 0], [4, 3]], np.float32))
    6.0
    """
    p = _polygon(polygon)
    mod = _native.native()
    return float(mod.polygon_area(p)) if mod is not None else polygon_area_numpy(p)


def polygon_area_numpy(polygon: np.ndarray) -> float:
    """The numpy twin of ``gi_sdk._native.polygon_area``."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0].astype(np.float64), polygon[:, 1].astype(np.float64)
    return float(abs(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) / 2)
