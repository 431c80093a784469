"""Frame -> model input: optional crop, resize, scale to [0, 1], mean/std normalize, HWC -> CHW.

This is the numpy/OpenCV implementation that training and runtime share, so a model sees
at run time exactly what it saw in training.

Resize kernel: ``cv2.INTER_AREA`` when shrinking (an area average, which does not alias
on the 1080p -> 768 shrink) and ``cv2.INTER_CUBIC`` when enlarging. transformers'
Florence-2 processor uses PIL's antialiased bicubic instead; both are low-pass resamplers
and differ by a few grey levels.
"""
from __future__ import annotations

import cv2
import numpy as np

from .frames import to_rgb

#: Florence-2's image normalization (ImageNet statistics), RGB order.
FLORENCE_MEAN = (0.485, 0.456, 0.406)
FLORENCE_STD = (0.229, 0.224, 0.225)


def preprocess(frame, size=(768, 768), mean=FLORENCE_MEAN, std=FLORENCE_STD, channels="bgr",
               crop=None, out=None, dtype=np.float32) -> np.ndarray:
    """Turn one frame into a (3, H, W) normalized array for the vision encoder.

    frame: HxWx3 or HxWx4 uint8 array in the channel order ``channels``.
    size: (width, height) the model takes.
    crop: optional (x, y, w, h) rectangle to cut out first (the scope's field of view).
    out: optional preallocated (3, H, W) array of ``dtype`` to write into (no allocation).

    >>> x = preprocess(np.zeros((1080, 1920, 3), np.uint8))
    >>> x.shape, x.dtype
    ((3, 768, 768), dtype('float32'))
    """
    rgb = to_rgb(frame, channels)
    if crop is not None:
        x, y, w, h = (int(v) for v in crop)
        rgb = rgb[max(y, 0):y + h, max(x, 0):x + w]
        if rgb.size == 0:
            from .errors import InvalidFrameError

            raise InvalidFrameError(f"crop {tuple(crop)} leaves nothing of a {frame.shape[1]}x{frame.shape[0]} frame")
    width, height = size
    shrinking = rgb.shape[1] >= width and rgb.shape[0] >= height
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    scale = np.asarray(std, np.float32) * 255.0
    normalized = (resized.astype(np.float32) - np.asarray(mean, np.float32) * 255.0) / scale
    chw = normalized.transpose(2, 0, 1)
    if out is None:
        return np.ascontiguousarray(chw, dtype=dtype)
    if out.shape != chw.shape or out.dtype != np.dtype(dtype):
        raise ValueError(f"out must be a {chw.shape} array of {np.dtype(dtype)}, got {out.shape} {out.dtype}")
    out[...] = chw
    return out
