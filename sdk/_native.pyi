"""Type stub for gi_sdk._native (built from cpp_ext/ by setup.py).

Every function checks its arrays (dtype, shape, layout) and raises ValueError naming what it
expected and what it got; all release the GIL while working. Each has a twin in gi_sdk.
"""
from collections.abc import Callable, Container, Sequence

import numpy as np
import numpy.typing as npt

NUM_BINS: int

def quantize(coords: npt.NDArray[np.float32], width: float, height: float) -> npt.NDArray[np.int32]:
    """Pixel coordinates, last axis x, y pairs -> location bins, floor and clamp to [0, 999]."""

def dequantize(bins: npt.NDArray[np.int32], width: float, height: float) -> npt.NDArray[np.float32]:
    """Location bins, last axis x, y pairs -> bin-centre pixel coordinates."""

def resize_normalize(
    frame: npt.NDArray[np.uint8],
    out: npt.NDArray[np.float32] | npt.NDArray[np.float16],
    crop: tuple[int, int, int, int],
    channel_map: tuple[int, int, int],
    scale: Sequence[float],
    bias: Sequence[float],
    threads: int = 1,
) -> npt.NDArray[np.float32] | npt.NDArray[np.float16]:
    """Crop (x, y, w, h) of an HxWx3/4 uint8 frame (packed pixels, rows may be strided),
    resize to out's (H, W) with Pillow's antialiased bicubic in 16-bit fixed point (8-bit
    rounding after each pass),
    then out[c] = value[channel_map[c]] * scale[c] + bias[c]. Twin: gi_sdk.preprocess.preprocess_numpy."""

def resize_weights(in_size: int, out_size: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int16], int]:
    """(start (out,), int16 weights (out, taps), fraction bits) of one axis in 16-bit fixed point.
    Twin: gi_sdk.preprocessing.resize_weights."""

def resize_isa() -> str:
    """'avx2' or 'portable': the build of the resampler this CPU runs."""

def set_resize_isa(isa: str) -> str:
    """'portable' forces the portable resampler (for tests and benchmarks), 'auto' picks by CPU;
    returns the build now in use."""

def find_fov(frame: npt.NDArray[np.uint8], threshold: int = 40, min_fill: float = 0.1,
             step: int = 4) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the scope image inside the black border. Twin: gi_sdk.fov.find_fov_numpy."""

def polygons_to_mask(polygons: Sequence[npt.NDArray[np.float32]], height: int, width: int) -> npt.NDArray[np.bool_]:
    """(K, 2) float32 polygons -> (height, width) bool, equal to cv2.fillPoly of round(p - 0.5)."""

def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(N, 4), (M, 4) float32 xyxy -> (N, M) float32 IoU."""

def mask_iou(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """(N, H, W), (M, H, W) bool -> (N, M) float32 IoU."""

def polygon_area(polygon: npt.NDArray[np.float32]) -> float:
    """Shoelace area of a (K, 2) float32 polygon (float64 sum)."""

def decode_tokens(
    ids: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    classes: npt.NDArray[np.uint8],
    loc_begin: int,
    grammar: int,
    width: float,
    height: float,
) -> tuple[
    bool,
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
]:
    """Token ids -> (exact, events (E, 2), labels (L, 3), boxes (N, 4), box_label (N,), ring points (P, 2),
    ring offsets (R + 1,), instance offsets (I + 1,), instance_label (I,), points (Q, 2), point_event (Q,),
    distinct texts (U, 4), event_text (E,), label_text (L,)). Twin: gi_sdk.token_decoder.decode_tokens_python."""

class IdDecoder:
    """gi_sdk.decode_ids' native half, one per TokenVocab (TokenVocab.native_decoder): the token
    grammar of decode_tokens plus the assembly of a Parsed, with the texts of spans cached."""

    def __init__(
        self,
        classes: npt.NDArray[np.uint8],
        loc_begin: int,
        span_text: Callable[[list[int], int, bool], str | None],
        no_boxes: npt.NDArray[np.float32],
        no_points: npt.NDArray[np.float32],
        parsed: type,
        fill: tuple[str, ...] | None,
    ) -> None:
        """classes, loc_begin: as TokenVocab holds them; span_text(ids, tail_id, phrase): the text of a
        span the first time it is met (None: a phrase transformers drops); no_boxes, no_points: the
        shared empty (0, 4) and (0, 2) arrays of results without boxes or points; parsed: the result's
        class, called with the seven fields - or, when fill names them, made with object.__new__ and
        filled with object.__setattr__ (valid for a plain dataclass, which the caller checks)."""

    def decode(
        self,
        ids: npt.NDArray[np.int64] | npt.NDArray[np.int32],
        grammar: int,
        image_size: tuple[float, float] | None,
        banned: Container[str] | None,
    ) -> object | None:
        """parsed(text, boxes, box_labels, polygons, polygon_labels, points, point_labels) - a gi_sdk
        Parsed - or None when an ordinary token holds a '<' (parse the decoded text instead).
        banned: phrases whose boxes are dropped (the phrase-grounding grammar), or None."""
