"""The location-token codec: pixels <-> Florence-2 ``<loc_N>`` text, and parsers of model text.

One module serves training targets and runtime decoding, so a model sees at run time exactly
what it saw in training. Four parts:

- the location codec (``quantize`` / ``dequantize``): 1000 bins per axis,
  ``bin = clamp(floor(x * 1000 / W), 0, 999)`` and ``x = (bin + 0.5) * W / 1000``, in
  float32, by the compiled ``gi_sdk._native`` when it is built and by a numpy twin otherwise;
- encoders to ``<loc_N>`` text (``encode_boxes``, ``encode_points``, ``encode_polygons``,
  ``encode_region``) and ``mask_to_polygons``;
- ``parse_florence``: returns exactly what transformers'
  ``Florence2Processor.post_process_generation`` returns, quirks included, without torch;
- ``parse_instances``: the runtime's parser: the very instances ``parse_florence`` finds,
  as float32 bin centres (not truncated), plus gi_sdk's POINTS grammar and clean answer text.

The location math lives in :mod:`gi_sdk.locations` and the parsers in
:mod:`gi_sdk.florence_parser`; this module re-exports both. The JSON point / box / count answers of decoder-only VLMs are parsed in
:mod:`gi_sdk.json_answer` (re-exported here).

>>> encode_boxes([[10, 20, 300, 200]], (640, 480), labels=["polyp"])
'polyp<loc_15><loc_41><loc_468><loc_416>'
>>> parse_florence("polyp<loc_15><loc_41><loc_468><loc_416>", "<OD>", (640, 480))
{'<OD>': {'bboxes': [[9, 19, 299, 199]], 'labels': ['polyp']}}
"""
from __future__ import annotations

import numpy as np

from .florence_parser import FLORENCE_PARSE_TYPES, KIND_GRAMMARS, Parsed, parse_florence, parse_instances
from .json_answer import answer_count, parse_json_answer
from .locations import NUM_BINS, dequantize, dequantize_numpy, quantize, quantize_numpy

__all__ = [
    "NUM_BINS", "quantize", "dequantize", "quantize_numpy", "dequantize_numpy",
    "encode_boxes", "encode_points", "encode_polygons", "encode_region", "mask_to_polygons",
    "FLORENCE_PARSE_TYPES", "parse_florence", "KIND_GRAMMARS", "Parsed", "parse_instances",
    "parse_json_answer", "answer_count",
]

# --------------------------------------------------------------------------------- encoders


def _locs(bins) -> str:
    return "".join(f"<loc_{int(b)}>" for b in bins)


def _check_label(label: str) -> str:
    # transformers' grammar reads a label as [^<]+ on one line: anything else cannot round-trip.
    if not isinstance(label, str) or "<" in label or "\n" in label:
        raise ValueError(f"a label must be a one-line str without '<', got {label!r}")
    return label


def _labelled(rows: np.ndarray, labels, what: str) -> list[str]:
    if labels is None:
        return [""] * len(rows)
    labels = list(labels)
    if len(labels) != len(rows):
        raise ValueError(f"got {len(labels)} labels for {len(rows)} {what}")
    return [_check_label(lab) for lab in labels]


def _rows(values, width: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32)
    if arr.size == 0:
        arr = arr.reshape(0, width)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{what} must be an (N, {width}) array, got shape {arr.shape}")
    return arr


def encode_boxes(boxes, image_size, labels=None) -> str:
    """Boxes (N, 4) xyxy pixels -> ``label<loc_x1><loc_y1><loc_x2><loc_y2>`` per box, joined.

    Every box carries its label (FORMATS.md). A box with an empty label right after a
    labelled one is read back with that label (a label covers the run after it); boxes
    without any label are region proposals: read them with ``task="<REGION_PROPOSAL>"``.

    >>> encode_boxes([[0, 0, 64, 48], [320, 240, 639, 479]], (640, 480), ["polyp", "polyp"])
    'polyp<loc_0><loc_0><loc_100><loc_100>polyp<loc_500><loc_500><loc_998><loc_997>'
    """
    rows = _rows(boxes, 4, "boxes")
    bins = quantize(rows, image_size)
    return "".join(lab + _locs(b) for lab, b in zip(_labelled(rows, labels, "boxes"), bins))


def encode_points(points, image_size, labels=None) -> str:
    """Points (N, 2) pixels -> ``label<loc_x><loc_y>`` per point, joined (gi_sdk's POINTS grammar).

    >>> encode_points([[320, 240]], (640, 480), ["polyp"])
    'polyp<loc_500><loc_500>'
    """
    rows = _rows(points, 2, "points")
    bins = quantize(rows, image_size)
    return "".join(lab + _locs(b) for lab, b in zip(_labelled(rows, labels, "points"), bins))


def encode_polygons(polygons, image_size, label: str = "") -> str:
    """Polygons (each (K, 2) pixels, K >= 3) -> ``label<poly><loc_x><loc_y>...</poly>`` joined by ``<sep>``.

    Each polygon is one instance to transformers' parser (``<REFERRING_EXPRESSION_SEGMENTATION>``
    returns it with label ``""``; ``<OPEN_VOCABULARY_DETECTION>`` keeps the label).

    >>> encode_polygons([[[0, 0], [64, 0], [64, 48]]], (640, 480), "polyp")
    'polyp<poly><loc_0><loc_0><loc_100><loc_0><loc_100><loc_100></poly>'
    """
    _check_label(label)
    parts = []
    for poly in polygons:
        rows = _rows(poly, 2, "a polygon")
        if len(rows) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(rows)}")
        parts.append(f"{label}<poly>{_locs(quantize(rows, image_size).ravel())}</poly>")
    return "<sep>".join(parts)


def encode_region(box, image_size) -> str:
    """One box (x1, y1, x2, y2) pixels -> the ``<REGION_TO_SEGMENTATION>`` input text.

    >>> encode_region((64, 48, 128, 96), (640, 480))
    '<loc_100><loc_100><loc_200><loc_200>'
    """
    return encode_boxes(np.asarray(box, dtype=np.float32).reshape(1, 4), image_size)


# ---------------------------------------------------------------------------- mask -> polygons


def _bridge(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    # Splice a hole into its outer ring along a zero-width cut between their closest vertices,
    # so one simple ring (filled by anyone's fill rule) keeps the hole empty.
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return np.concatenate([outer[: i + 1], hole[j:], hole[: j + 1], outer[i:]])


def mask_to_polygons(mask, *, tolerance: float | None = None, min_area: float = 16.0,
                     max_points: int = 100, holes: bool = True) -> list[np.ndarray]:
    """A binary mask (H, W) -> polygons, one (K, 2) float32 array of pixel x, y per region.

    ``tolerance`` (pixels) is the Douglas-Peucker error; by default two location bins
    (``2 * max(W, H) / 1000``, at least 1 px): on the PolypGen masks that keeps IoU at 0.99
    with ~30 vertices a polygon (60 tokens to generate). It grows until a polygon has at
    most ``max_points`` vertices. Regions (and holes) of less than
    ``min_area`` pixels are dropped as specks. With ``holes``, each hole is cut into its
    region's ring, so the polygon fills to the region without the hole.

    >>> m = np.zeros((100, 100), bool); m[20:60, 30:90] = True
    >>> [p.tolist() for p in mask_to_polygons(m)]
    [[[30.0, 20.0], [30.0, 59.0], [89.0, 59.0], [89.0, 20.0]]]
    """
    import cv2  # runtime dependency, imported where it is used

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3 (a polygon), got {max_points}")
    m = np.ascontiguousarray(m.astype(bool), dtype=np.uint8)
    base = tolerance if tolerance is not None else max(1.0, 2 * max(m.shape) / NUM_BINS)
    mode = cv2.RETR_CCOMP if holes else cv2.RETR_EXTERNAL
    contours, hierarchy = cv2.findContours(m, mode, cv2.CHAIN_APPROX_NONE)

    def simplify(contour):
        if cv2.contourArea(contour) < min_area:
            return None
        eps = base
        ring = cv2.approxPolyDP(contour, eps, True)
        while len(ring) > max_points:
            eps *= 1.5
            ring = cv2.approxPolyDP(contour, eps, True)
        return ring.reshape(-1, 2).astype(np.float32) if len(ring) >= 3 else None

    polygons = []
    links = hierarchy[0] if hierarchy is not None else []
    for idx, (_, _, child, parent) in enumerate(links):
        if parent >= 0:
            continue  # a hole: handled with its region
        ring = simplify(contours[idx])
        if ring is None:
            continue
        while child >= 0:
            hole = simplify(contours[child])
            if hole is not None:
                ring = _bridge(ring, hole)
            child = links[child][0]
        polygons.append(ring)
    return polygons


