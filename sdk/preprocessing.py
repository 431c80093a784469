"""Frame -> model input: optional crop, resize, scale to [0, 1], mean/std normalize, HWC -> CHW.

Training and runtime share this function, so a model sees at run time exactly what it saw in
training. The compiled ``gi_sdk._native`` does the work when it is built; ``preprocess_numpy``
is its twin and gives bit-identical output (tests hold them equal).

Resize kernel: Pillow's ``Image.resize(..., BICUBIC)``, the kernel of transformers' Florence-2
image processor that Florence-2 was trained with: a separable cubic (a = -0.5) whose support
widens with the shrink factor (an antialiased shrink), per-axis weights computed as Pillow
computes them, horizontal pass first, each pass rounded and clipped to 0..255 as Pillow's 8-bit
images are. The sums are in 16-bit fixed point, as Pillow-SIMD computes them: int16 weights
with 14-22 fraction bits per axis (16 along x and 15 along y for 1920x1080 -> 768x768; Pillow
uses 22), made to sum to exactly one per output, int32 sums. Integer sums are exact in any
order, which is how the twin matches the native kernel bit for bit. About one value in 7,500
differs from Pillow's by one grey level, none by more in the tests (4,480 of 33.6 M values on
the 19 PolypGen frames; against the HF Florence-2 image processor the same values, the others within float32
rounding of the normalization; docs/native.md). Then ``(v / 255 - mean) / std`` is computed as
``v * scale + bias`` in float32.

The native kernel (cpp_ext/resample_kernel.h) resamples 8 input rows at a time with 16-bit
multiply-adds of two taps each (``pmaddwd``), one L1-sized column tile at a time, then the
output rows from a ring of resampled rows kept two by two; a large float32 output is written
with non-temporal stores. 1080p -> 768x768 float32 took 1.64-1.84 ms on one core of the 2-vCPU
AMD EPYC guest it was measured on in four of six runs (21-23x faster than the HF image processor
in the same runs; 2.1-2.6 ms under load in the other two), 1.3-1.5x faster than the float32
kernel it replaced (``benchmarks/native.py --baseline``; docs/native.md).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import native as _native
from .errors import InvalidFrameError
from .frames import rgb_index

#: Florence-2's image normalization (ImageNet statistics), RGB order.
FLORENCE_MEAN = (0.485, 0.456, 0.406)
FLORENCE_STD = (0.229, 0.224, 0.225)

#: Most fraction bits of the resize weights (Pillow's PRECISION_BITS); an axis gets fewer where
#: its largest weight would not fit in int16 (``resize_weights``).
MAX_WEIGHT_BITS = 22
_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def preprocess(frame, size=(768, 768), mean=FLORENCE_MEAN, std=FLORENCE_STD, channels="bgr",
               crop=None, out=None, dtype=np.float32, threads: int = 1) -> np.ndarray:
    """Turn one frame into a (3, H, W) normalized array for the vision encoder.

    frame: HxWx3 or HxWx4 uint8 array in the channel order ``channels`` (``"bgr"``, ``"rgb"``,
        ``"bgra"``, ``"rgba"``). Rows may be strided (a crop view is read without a copy).
    size: (width, height) the model takes.
    mean, std: per-channel (RGB) normalization, as the model's processor config states.
    crop: optional (x, y, w, h) rectangle to cut out first (e.g. ``find_fov(frame)``); the
        part of it inside the frame is used.
    out: optional preallocated C-contiguous (3, H, W) array of ``dtype`` to write into.
    dtype: float32 or float16.
    threads: rows of the output are split across this many threads (native build only).

    Raises InvalidFrameError for a frame that is not an HxWx3/4 uint8 array (or a crop that
    leaves nothing of it), ValueError for a bad size, mean, std, out or dtype.

    >>> x = preprocess(np.zeros((1080, 1920, 3), np.uint8))
    >>> x.shape, x.dtype
    ((3, 768, 768), dtype('float32'))
    """
    index = rgb_index(frame, channels)
    width, height = _model_size(size)
    rect = crop_rect(crop, frame.shape)
    scale, bias, scale_list, bias_list = _scale_bias(mean, std)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 256:
        raise ValueError(f"threads: expected an int in 1..256, got {threads!r}")
    dt = np.dtype(dtype)
    if dt not in _DTYPES:
        raise ValueError(f"dtype: expected float32 or float16, got {dt}")
    if out is None:
        out = np.empty((3, height, width), dt)
    elif not (isinstance(out, np.ndarray) and out.shape == (3, height, width) and out.dtype == dt
              and out.flags.c_contiguous and out.flags.writeable):
        got = f"{out.shape} {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be a writeable C-contiguous {(3, height, width)} array of {dt}, got {got}")
    mod = _native.native()
    if mod is None:
        return preprocess_numpy(frame, index, rect, (width, height), scale, bias, out)
    if frame.strides[2] != 1 or frame.strides[1] != frame.shape[2] or frame.strides[0] < frame.shape[1] * frame.shape[2]:
        frame = np.ascontiguousarray(frame)
    return mod.resize_normalize(frame, out, rect, index, scale_list, bias_list, int(threads))


def _model_size(size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be at least (1, 1), got {size!r}")
    return width, height


def crop_rect(crop, shape) -> tuple[int, int, int, int]:
    """(x, y, w, h) of ``crop`` inside a frame of ``shape``; the whole frame when crop is None."""
    height, width = shape[0], shape[1]
    if crop is None:
        return 0, 0, width, height
    x, y, w, h = (int(v) for v in crop)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        raise InvalidFrameError(f"crop {tuple(crop)} leaves nothing of a {width}x{height} frame")
    return x0, y0, x1 - x0, y1 - y0


def _scale_bias(mean, std) -> tuple:
    """``normalization(mean, std)`` as arrays and as lists, remembered per (mean, std): a video
    asks for the same pair every frame (and computing it costs half a small frame's time)."""
    try:
        return _cached_scale_bias(tuple(mean), tuple(std))
    except TypeError:  # not iterable or not hashable: normalization says what is wrong
        scale, bias = normalization(mean, std)
        return scale, bias, scale.tolist(), bias.tolist()


@lru_cache(maxsize=16)
def _cached_scale_bias(mean: tuple, std: tuple) -> tuple:
    scale, bias = normalization(mean, std)
    scale.setflags(write=False)  # shared by every call
    bias.setflags(write=False)
    return scale, bias, scale.tolist(), bias.tolist()


def normalization(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """float32 (scale, bias) with ``v * scale + bias == (v / 255 - mean) / std``."""
    m = np.asarray(mean, np.float64).reshape(-1)
    s = np.asarray(std, np.float64).reshape(-1)
    if m.shape != (3,) or s.shape != (3,) or not (np.isfinite(m).all() and np.isfinite(s).all()) or (s == 0).any():
        raise ValueError(f"mean and std must be 3 finite numbers each (std non-zero), got {mean!r}, {std!r}")
    return (1.0 / (255.0 * s)).astype(np.float32), (-m / s).astype(np.float32)


# ----------------------------------------------------------------------------------- twin

def _bicubic(x: np.ndarray) -> np.ndarray:
    # Pillow's bicubic_filter (a = -0.5); the same float64 operations in the same order
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=32)
def resize_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(start, weights, bits) of one axis in 16-bit fixed point: output i is
    ``clip((2 ** (bits - 1) + sum_k weights[i, k] * input[start[i] + k]) >> bits, 0, 255)``.

    The weights of Pillow's ``precompute_coeffs`` for BICUBIC (float64, normalized to sum 1),
    quantized as Pillow-SIMD does - ``bits`` is the most fraction bits (at most 22) that keep the
    largest weight below 2^15, each weight rounded half away from zero to int16 - and then made
    to sum to exactly 2^bits per output (the rounding residual, one unit at a time, on the
    weight whose rounding that improves most). The tap count is even (the native kernel takes
    taps in pairs); an input narrower than that keeps start 0 and a last, zero-weight tap one
    past its end. Equal, bit for bit, to the native ``resize_weights``.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    count = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), in_size) - xmin
    x = np.arange(ksize)
    k = _bicubic(((x[None, :] + xmin[:, None]) - centers[:, None] + 0.5) * (1.0 / filterscale))
    k = np.where(x[None, :] < count[:, None], k, 0.0)
    total = np.zeros(out_size)
    for j in range(ksize):  # in order, as Pillow sums
        total = total + k[:, j]
    k = np.where(total[:, None] != 0.0, k / np.where(total == 0.0, 1.0, total)[:, None], k)
    largest = float(k.max())
    bits = 0
    while bits < MAX_WEIGHT_BITS and int(0.5 + largest * (1 << (bits + 1))) < (1 << 15):
        bits += 1
    scaled = k * float(1 << bits)
    fixed = np.trunc(scaled + np.where(k < 0, -0.5, 0.5))
    # the residual of the rounding goes back one unit at a time, each time on the non-zero
    # weight whose rounding the step improves most (ties: the first), so each output's weights
    # sum to 2^bits: a flat area keeps its value
    residual = float(1 << bits) - fixed.sum(axis=1)
    while True:
        rows = np.flatnonzero(residual)
        if rows.size == 0:
            break
        step = np.sign(residual[rows])
        stepped = fixed[rows] + step[:, None]
        error = np.where((k[rows] != 0.0) & (np.abs(stepped) <= 32767), np.abs(stepped - scaled[rows]), np.inf)
        best = np.argmin(error, axis=1)
        fixed[rows, best] += step
        residual[rows] -= step
    fixed = fixed.astype(np.int16)
    taps = max(1, int(count.max()))
    taps += taps & 1
    start = np.where(xmin + taps > in_size, max(in_size - taps, 0), xmin)
    weights = np.zeros((out_size, taps), np.int16)
    rows = np.repeat(np.arange(out_size), ksize).reshape(out_size, ksize)
    cols = (xmin - start)[:, None] + x[None, :]
    keep = x[None, :] < count[:, None]
    weights[rows[keep], cols[keep]] = fixed[keep]
    start = start.astype(np.int32)
    start.setflags(write=False)  # cached: shared by every call
    weights.setflags(write=False)
    return start, weights, bits


def _resample_axis(src: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """One pass along ``axis`` (0: rows, 1: columns) of an (H, W, 3) int32 array of 0..255:
    int32 sums of int16 weights, rounded and clipped to 0..255 (Pillow's 8-bit image)."""
    start, weights, bits = resize_weights(src.shape[axis], out_size)
    shape = (-1, 1, 1) if axis == 0 else (1, -1, 1)
    acc = None
    for k in range(weights.shape[1]):
        w = weights[:, k].astype(np.int32).reshape(shape)
        # mode="clip": the phantom tap past a narrow input (weight 0) reads its last pixel
        term = w * np.take(src, start + k, axis=axis, mode="clip")
        acc = term if acc is None else acc + term
    return np.clip((acc + np.int32(1 << (bits - 1))) >> bits, 0, 255)


def preprocess_numpy(frame: np.ndarray, index, rect, size, scale: np.ndarray, bias: np.ndarray,
                     out: np.ndarray) -> np.ndarray:
    """The numpy twin of ``gi_sdk._native.resize_normalize`` (arguments already checked).

    frame: HxWxC uint8; index: where R, G, B sit; rect: (x, y, w, h) inside the frame;
    size: (width, height); scale, bias: float32 (3,); out: (3, height, width) float32/float16.
    """
    x, y, w, h = rect
    rgb = frame[y:y + h, x:x + w][..., list(index)].astype(np.int32)
    resampled = _resample_axis(_resample_axis(rgb, 1, size[0]), 0, size[1])
    out[...] = (resampled.astype(np.float32) * scale + bias).transpose(2, 0, 1)
    return out
