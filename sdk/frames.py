"""Checking frames at the API boundary and turning them into RGB.

Sources deliver HxWx3 (BGR from OpenCV, RGB from most others) or HxWx4 (BGRA/RGBA, as
Holoscan-style sources do) uint8 arrays. Anything else is refused with InvalidFrameError
before any work is done, so a bad frame costs nothing but that call.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import InvalidFrameError

CHANNEL_ORDERS = ("bgr", "rgb", "bgra", "rgba")

# channel order -> OpenCV conversion to RGB (None: already RGB)
_TO_RGB = {
    ("bgr", 3): cv2.COLOR_BGR2RGB,
    ("bgra", 4): cv2.COLOR_BGRA2RGB,
    ("rgba", 4): cv2.COLOR_RGBA2RGB,
    ("bgr", 4): cv2.COLOR_BGRA2RGB,   # "bgr" with an alpha channel: BGRA
    ("rgb", 4): cv2.COLOR_RGBA2RGB,
    ("rgb", 3): None,
}


def check_frame(frame) -> np.ndarray:
    """Return ``frame`` if it is an HxWx3 or HxWx4 uint8 array, else raise InvalidFrameError."""
    if frame is None:
        raise InvalidFrameError("frame is None; pass an HxWx3 uint8 image (e.g. from cv2.VideoCapture.read())")
    if not isinstance(frame, np.ndarray):
        raise InvalidFrameError(
            f"frame must be a numpy array (HxWx3 uint8), got {type(frame).__name__}; "
            "convert it with np.asarray(image)"
        )
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise InvalidFrameError(
            f"frame must have shape HxWx3 or HxWx4, got {frame.shape}; "
            "grayscale frames need cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)"
        )
    if frame.dtype != np.uint8:
        raise InvalidFrameError(
            f"frame must be uint8, got {frame.dtype}; scale float images with (frame * 255).astype(np.uint8)"
        )
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InvalidFrameError(f"frame is empty (shape {frame.shape})")
    return frame


# channel order -> where red, green and blue sit in a pixel (the native preprocess reads them there)
_RGB_INDEX = {
    ("bgr", 3): (2, 1, 0), ("rgb", 3): (0, 1, 2),
    ("bgra", 4): (2, 1, 0), ("rgba", 4): (0, 1, 2),
    ("bgr", 4): (2, 1, 0), ("rgb", 4): (0, 1, 2),
}


def _order(frame: np.ndarray, channels) -> tuple:
    key = (channels.lower() if isinstance(channels, str) else channels, frame.shape[2])
    if key not in _TO_RGB:
        raise InvalidFrameError(
            f"cannot read a {frame.shape[2]}-channel frame as {channels!r}; channels must be one of {CHANNEL_ORDERS}"
        )
    return key


def rgb_index(frame, channels: str = "bgr") -> tuple[int, int, int]:
    """Check ``frame`` and return the indices of its red, green and blue channels.

    >>> rgb_index(np.zeros((2, 2, 4), np.uint8), "bgra")
    (2, 1, 0)
    """
    check_frame(frame)
    return _RGB_INDEX[_order(frame, channels)]


def to_rgb(frame, channels: str = "bgr") -> np.ndarray:
    """Check ``frame`` and return it as a contiguous HxWx3 uint8 RGB array."""
    check_frame(frame)
    code = _TO_RGB[_order(frame, channels)]
    if code is None:
        return np.ascontiguousarray(frame)
    return cv2.cvtColor(np.ascontiguousarray(frame), code)
