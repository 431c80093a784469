"""Type stub for gi_sdk._native (built from cpp_ext/ by setup.py)."""
import numpy as np
import numpy.typing as npt

NUM_BINS: int

def quantize(coords: npt.NDArray[np.float32], width: float, height: float) -> npt.NDArray[np.int32]:
    """Pixel coordinates, last axis x, y pairs -> location bins, floor and clamp to [0, 999]."""

def dequantize(bins: npt.NDArray[np.int32], width: float, height: float) -> npt.NDArray[np.float32]:
    """Location bins, last axis x, y pairs -> bin-centre pixel coordinates."""
