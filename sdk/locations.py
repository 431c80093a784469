"""Florence-2's location convention: pixels <-> ``<loc_N>`` bins, 1000 bins per axis.

``bin = clamp(floor(x * 1000 / W), 0, 999)`` and ``x = (bin + 0.5) * W / 1000``, computed in
float32 (as transformers' post-processor does), by the compiled ``gi_sdk._native`` when it
is built and by the numpy twins ``quantize_numpy`` / ``dequantize_numpy`` otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from .native import native

#: Location bins per axis (``<loc_0>`` .. ``<loc_999>``).
NUM_BINS = 1000

# --------------------------------------------------------------------------- location codec


def _image_size(image_size) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    if not (0 < width < math.inf and 0 < height < math.inf):
        raise ValueError(f"image size must be positive and finite, got width={width} height={height}")
    return width, height


def _check_pairs(arr: np.ndarray, name: str) -> None:
    if arr.ndim < 1 or arr.shape[-1] % 2:
        raise ValueError(f"{name}: last axis must hold x, y pairs (even length), got shape {arr.shape}")


def _per_bin(width: float, height: float) -> np.ndarray:
    # float32(size) / 1000f, as cpp_ext/location.cpp computes it.
    return np.array([width, height], dtype=np.float32) / np.float32(NUM_BINS)


def quantize_numpy(coords: np.ndarray, width: float, height: float) -> np.ndarray:
    """The numpy twin of ``gi_sdk._native.quantize`` (same float32 arithmetic, same bins).

    ``coords``: float32 (..., 2k) x, y pairs. NaN and negatives give bin 0, past the edge 999.

    >>> quantize_numpy(np.array([0.0, 479.9, 640.0, np.nan], np.float32), 640, 480)
    array([  0, 999, 999,   0], dtype=int32)
    """
    c = np.asarray(coords, dtype=np.float32)
    pairs = c.reshape(c.shape[:-1] + (c.shape[-1] // 2, 2))  # explicit: -1 fails on empty arrays
    with np.errstate(over="ignore", invalid="ignore"):
        bins = np.floor(pairs / _per_bin(width, height))
    bins = np.where(bins >= 0, bins, np.float32(0))  # NaN compares False: bin 0, like native
    return np.minimum(bins, NUM_BINS - 1).astype(np.int32).reshape(c.shape)


def dequantize_numpy(bins: np.ndarray, width: float, height: float) -> np.ndarray:
    """The numpy twin of ``gi_sdk._native.dequantize``: ``(bin + 0.5) * size / 1000`` in float32.

    >>> dequantize_numpy(np.array([0, 999], np.int32), 640, 480).astype(float).round(2).tolist()
    [0.32, 479.76]
    """
    b = np.asarray(bins, dtype=np.int32)
    pairs = b.reshape(b.shape[:-1] + (b.shape[-1] // 2, 2)).astype(np.float32)
    return ((pairs + np.float32(0.5)) * _per_bin(width, height)).reshape(b.shape)


def _run(name: str, twin, values, dtype, what: str, image_size) -> np.ndarray:
    """Check the input, then run ``_native.<name>`` when it is built, else the numpy ``twin``."""
    width, height = _image_size(image_size)
    arr = np.ascontiguousarray(values, dtype=dtype)
    _check_pairs(arr, what)
    mod = native()
    return getattr(mod, name)(arr, width, height) if mod is not None else twin(arr, width, height)


def quantize(coords, image_size) -> np.ndarray:
    """Pixel coordinates (..., 2k: x, y pairs) -> int32 location bins in [0, 999].

    ``image_size`` is (width, height). Uses the compiled extension when it is built.

    >>> quantize([[10, 20, 300, 200]], (640, 480)).tolist()
    [[15, 41, 468, 416]]
    """
    return _run("quantize", quantize_numpy, coords, np.float32, "coords", image_size)


def dequantize(bins, image_size) -> np.ndarray:
    """Location bins (..., 2k: x, y pairs) -> float32 bin-centre pixel coordinates.

    >>> dequantize([[15, 41, 468, 416]], (640, 480)).tolist()
    [[9.920000076293945, 19.920000076293945, 299.8399963378906, 199.9199981689453]]
    """
    return _run("dequantize", dequantize_numpy, bins, np.int32, "bins", image_size)


