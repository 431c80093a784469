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

The JSON point / box / count answers of decoder-only VLMs are parsed in
:mod:`gi_sdk.json_answer` (re-exported here).

>>> encode_boxes([[10, 20, 300, 200]], (640, 480), labels=["polyp"])
'polyp<loc_15><loc_41><loc_468><loc_416>'
>>> parse_florence("polyp<loc_15><loc_41><loc_468><loc_416>", "<OD>", (640, 480))
{'<OD>': {'bboxes': [[9, 19, 299, 199]], 'labels': ['polyp']}}
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial

import numpy as np

from .json_answer import answer_count, parse_json_answer
from .native import native
from .tasks import (BOXES, BOXES_OR_POLYGONS, NEW_TASK_TOKENS, PHRASE_BOXES, POINTS, POLYGONS,
                    TASKS, TEXT)

__all__ = [
    "NUM_BINS", "quantize", "dequantize", "quantize_numpy", "dequantize_numpy",
    "encode_boxes", "encode_points", "encode_polygons", "encode_region", "mask_to_polygons",
    "FLORENCE_PARSE_TYPES", "parse_florence", "KIND_GRAMMARS", "Parsed", "parse_instances",
    "parse_json_answer", "answer_count",
]

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


def quantize(coords, image_size) -> np.ndarray:
    """Pixel coordinates (..., 2k: x, y pairs) -> int32 location bins in [0, 999].

    ``image_size`` is (width, height). Uses the compiled extension when it is built.

    >>> quantize([[10, 20, 300, 200]], (640, 480)).tolist()
    [[15, 41, 468, 416]]
    """
    width, height = _image_size(image_size)
    arr = np.ascontiguousarray(coords, dtype=np.float32)
    _check_pairs(arr, "coords")
    mod = native()
    return mod.quantize(arr, width, height) if mod is not None else quantize_numpy(arr, width, height)


def dequantize(bins, image_size) -> np.ndarray:
    """Location bins (..., 2k: x, y pairs) -> float32 bin-centre pixel coordinates.

    >>> dequantize([[15, 41, 468, 416]], (640, 480)).tolist()
    [[9.920000076293945, 19.920000076293945, 299.8399963378906, 199.9199981689453]]
    """
    width, height = _image_size(image_size)
    arr = np.ascontiguousarray(bins, dtype=np.int32)
    _check_pairs(arr, "bins")
    mod = native()
    return mod.dequantize(arr, width, height) if mod is not None else dequantize_numpy(arr, width, height)


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


# ------------------------------------------------------- transformers-compatible parsing

#: Florence-2 task token -> transformers' post-processing type (unknown tokens: pure text).
FLORENCE_PARSE_TYPES = {t.token: t.hf_parse_type for t in TASKS.values() if t.hf_parse_type}
FLORENCE_PARSE_TYPES.update({
    "<OCR_WITH_REGION>": "ocr", "<REGION_TO_CATEGORY>": "pure_text",
    "<REGION_TO_DESCRIPTION>": "pure_text", "<REGION_TO_OCR>": "pure_text",
})

_LOC = r"<loc_(\d+)>"          # \d: Unicode digits too, as transformers reads them
_ANY_LOC = r"<loc_\d+>"
_POLY_TOKEN = rf"(?:{_ANY_LOC}|<sep>|<poly>|</poly>)"
_CHUNKS = {  # (labelled?, polygon tokens?) -> a label-plus-locations run
    (True, False): re.compile(rf"[^<]+(?:{_ANY_LOC}){{4,}}"),
    (False, False): re.compile(rf"(?:{_ANY_LOC}){{4,}}"),
    (True, True): re.compile(rf"[^<]+{_POLY_TOKEN}{{4,}}"),
    (False, True): re.compile(rf"{_POLY_TOKEN}{{4,}}"),
}
# The phrase is the text before the first of these tags (on one line: "." stops at "\n").
_PHRASE = re.compile(r"\s*(.*?)(?=<(?:/?(?:od|box|bbox)>|loc_))")
_POLY_PHRASE = re.compile(r"\s*(.*?)(?=<(?:/?(?:od|box|bbox)>|loc_|poly>))")
_LOC_RE = re.compile(_LOC)
_ANY_LOC_RE = re.compile(_ANY_LOC)
_BOX_RE = re.compile(_LOC * 4)
_QUAD_RE = re.compile(r"(.+?)" + _LOC * 8)
_POLY_BODY = re.compile(r"<poly>(.*?)</poly>")
_POLY_RING = re.compile(rf"((?:{_ANY_LOC})+)(?:<sep>|$)")


def _drop(text: str, tokens) -> str:
    for tok in tokens:  # one after the other: the order decides what "<<pad>s>" leaves
        text = text.replace(tok, "")
    return text


def _hf_pixels(bins, image_size) -> list[int]:
    """Bins (flat x, y, ...) -> ints as transformers gets them: float32 centre, then truncation."""
    width, height = image_size
    per_bin = np.array([width / NUM_BINS, height / NUM_BINS], dtype=np.float32)  # torch's scalar
    pairs = np.asarray(bins, dtype=np.int64).reshape(-1, 2).astype(np.float32)
    with np.errstate(invalid="ignore"):
        return ((pairs + np.float32(0.5)) * per_bin).astype(np.int32).ravel().tolist()


def _ascii(label: str) -> str:
    return label.encode("ascii", "ignore").decode("ascii")


def _phrase_runs(text: str, labelled: bool, polygon: bool):
    """(phrase, run) for each label-plus-locations run that transformers accepts."""
    phrase_re = _POLY_PHRASE if polygon else _PHRASE
    for m in _CHUNKS[labelled, polygon].finditer(text):
        run = m.group(0)
        lead = _ANY_LOC_RE.match(run) if polygon else None
        found = phrase_re.match(run[lead.end():] if lead else run)
        if found:
            yield found.group(0).strip(), run


def _box_instances(text: str, labelled: bool, banned=()) -> list[tuple[str, list[int]]]:
    out = []
    for phrase, run in _phrase_runs(_drop(text, ("<s>", "</s>", "<pad>")), labelled, False):
        if phrase in banned:
            continue
        out += [(_ascii(phrase), [int(g) for g in b.groups()]) for b in _BOX_RE.finditer(run)]
    return out


def _polygon_instances(text: str, labelled: bool) -> list[tuple[str, list[list[int]]]]:
    out = []
    for phrase, run in _phrase_runs(_drop(text, ("<s>", "</s>", "<pad>")), labelled, True):
        wrapped = "<poly>" in run and "</poly>" in run
        bodies = [b.group(1) for b in _POLY_BODY.finditer(run)] if wrapped else [run]
        for body in bodies:
            rings = [[int(d) for d in _LOC_RE.findall(r.group(1))] for r in _POLY_RING.finditer(body)]
            if rings:
                out.append((phrase, [ring[: len(ring) // 2 * 2] for ring in rings]))
    return out


# One answer builder a parse type, all called as (text, image_size, banned_phrases).

def _text_answer(text, size, banned) -> str:
    return _drop(text, ("<s>", "</s>")).strip()  # <pad> stays: transformers keeps it here


def _boxes_answer(text, size, banned, *, labelled: bool, grounding: bool = False) -> dict:
    found = _box_instances(text, labelled, banned if grounding else ())
    return {"bboxes": [_hf_pixels(b, size) for _, b in found], "labels": [lab for lab, _ in found]}


def _polygons_answer(text, size, banned, *, labelled: bool) -> dict:
    found = _polygon_instances(text, labelled)
    return {"polygons": [[_hf_pixels(r, size) for r in rings] for _, rings in found],
            "labels": [lab for lab, _ in found]}


def _ocr_answer(text, size, banned) -> dict:
    found = list(_QUAD_RE.finditer(_drop(text, ("<s>", "</s>", "<pad>"))))
    return {"quad_boxes": [_hf_pixels([int(g) for g in m.groups()[1:]], size) for m in found],
            "labels": [m.group(1).strip() for m in found]}


def _boxes_or_polygons_answer(text, size, banned) -> dict:
    # transformers decides once per text: any "<poly>" makes every instance a polygon.
    if "<poly>" in text:
        polys = _polygons_answer(text, size, banned, labelled=True)
        boxes = {"bboxes": [], "labels": []}
    else:
        polys = {"polygons": [], "labels": []}
        boxes = _boxes_answer(text, size, banned, labelled=True)
    return {"bboxes": boxes["bboxes"], "bboxes_labels": boxes["labels"],
            "polygons": polys["polygons"], "polygons_labels": polys["labels"]}


_FLORENCE_ANSWERS = {  # transformers' parse type -> answer builder
    "pure_text": _text_answer,
    "ocr": _ocr_answer,
    "description_with_bboxes": partial(_boxes_answer, labelled=True),
    "bboxes": partial(_boxes_answer, labelled=False),  # labels ignored: all ""
    "phrase_grounding": partial(_boxes_answer, labelled=True, grounding=True),
    "description_with_polygons": partial(_polygons_answer, labelled=True),
    "polygons": partial(_polygons_answer, labelled=False),  # labels never read
    "description_with_bboxes_or_polygons": _boxes_or_polygons_answer,
}


def parse_florence(text: str, task: str, image_size=None, *,
                   banned_phrases=("the image",)) -> dict:
    """Exactly what ``Florence2Processor.post_process_generation(text, task=task, image_size=image_size)`` returns.

    ``{task: answer}``: a str for text tasks (and for tokens transformers does not know, such
    as ``<MedVQA>``), else a dict of int pixel lists (``bboxes``, ``quad_boxes``,
    ``polygons``) and ``labels``. Quirks kept on purpose: box and phrase labels lose their
    non-ASCII characters, a phrase broken by a newline drops its instance,
    ``<REFERRING_EXPRESSION_SEGMENTATION>`` labels are ``""``, polygons of fewer than 3
    points are kept. ``banned_phrases``: phrase-grounding phrases dropped (the checkpoint's
    ``banned_grounding_tokens``).

    >>> parse_florence("</s><s>a polyp<loc_100><loc_100><loc_200><loc_200></s>",
    ...                "<CAPTION_TO_PHRASE_GROUNDING>", (640, 480))
    {'<CAPTION_TO_PHRASE_GROUNDING>': {'bboxes': [[64, 48, 128, 96]], 'labels': ['a polyp']}}
    >>> parse_florence("</s><s>Yes, one polyp.</s>", "<MedVQA>")
    {'<MedVQA>': 'Yes, one polyp.'}
    """
    parse_type = FLORENCE_PARSE_TYPES.get(task, "pure_text")
    if parse_type != "pure_text" and image_size is None:
        raise ValueError(f"task {task!r} returns locations: pass image_size=(width, height)")
    return {task: _FLORENCE_ANSWERS[parse_type](text, image_size, frozenset(banned_phrases))}


# ------------------------------------------------------------------ the runtime's parser

_BART_NOISE = ("<s>", "</s>", "<pad>")  # removed first, in transformers' order
_OTHER_SPECIALS = re.compile("|".join(re.escape(t) for t in (
    "<unk>", "<mask>", "<image>", "<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ncap>",
    "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>", "<seg>", "</seg>",
    "<region_cap>", "</region_cap>", "<region_to_desciption>", "</region_to_desciption>",
    "<proposal>", "</proposal>", "<and>", *NEW_TASK_TOKENS)))
_STRUCTURE = re.compile(r"<loc_([0-9]+)>|<sep>|<poly>|</poly>")
_MAX_BIN = 2**31 - 1  # int32: bins past it (absurd model text) are clipped, not an error


@dataclass(frozen=True, eq=False)
class Parsed:
    """What ``parse_instances`` finds in one generated text; empty fields are empty arrays.

    text: the answer text (special and location tokens removed, pieces joined by a space).
    boxes: (N, 4) float32 xyxy bin centres; box_labels: N str.
    polygons: one list per instance of (K, 2) float32 rings; polygon_labels: one str each.
    points: (N, 2) float32; point_labels: N str.
    """

    text: str
    boxes: np.ndarray
    box_labels: list
    polygons: list
    polygon_labels: list
    points: np.ndarray
    point_labels: list


def _events(text: str) -> list[tuple]:
    """("text", str) and ("run", [bins]) in order; ``<sep>``, ``<poly>``, ``</poly>`` end a run."""
    text = _OTHER_SPECIALS.sub("", _drop(text, _BART_NOISE))
    events, at, run = [], 0, None
    for m in _STRUCTURE.finditer(text):
        if m.start() > at:
            events.append(("text", text[at:m.start()]))
            run = None
        if m.group(1) is None:
            run = None
        else:
            if run is None:
                run = []
                events.append(("run", run))
            run.append(int(m.group(1)))
        at = m.end()
    if at < len(text):
        events.append(("text", text[at:]))
    return events


def _answer_text(text: str) -> str:
    return " ".join(p for p in (ev[1].strip() for ev in _events(text) if ev[0] == "text") if p)


def _centres(bins, width: int, size) -> np.ndarray:
    """Flat bins -> (N, width) float32 bin centres."""
    if not bins:
        return np.zeros((0, width), np.float32)
    return dequantize(np.array([min(b, _MAX_BIN) for b in bins], np.int32).reshape(-1, width), size)


# One reader a grammar, all called as (text, image_size, banned_phrases); each returns the
# Parsed fields it fills. The transformers grammars share their instance finders with
# parse_florence, so both always see the same instances.

def _no_fields(text, size, banned) -> dict:
    return {}


def _box_fields(text, size, banned, *, labelled: bool, grounding: bool = False) -> dict:
    found = _box_instances(text, labelled, banned if grounding else ())
    return {"boxes": _centres([b for _, box in found for b in box], 4, size),
            "box_labels": [lab for lab, _ in found]}


def _polygon_fields(text, size, banned, *, labelled: bool) -> dict:
    found = _polygon_instances(text, labelled)
    return {"polygons": [[_centres(ring, 2, size) for ring in rings] for _, rings in found],
            "polygon_labels": [lab for lab, _ in found]}


def _boxes_or_polygons_fields(text, size, banned) -> dict:
    if "<poly>" in text:  # as transformers: any <poly> makes every instance a polygon
        return _polygon_fields(text, size, banned, labelled=True)
    return _box_fields(text, size, banned, labelled=True)


def _point_fields(text, size, banned) -> dict:
    # gi_sdk's POINTS grammar (transformers has none): label<loc_x><loc_y>..., a label covers
    # the points after it until the next text; a run's odd trailing coordinate is dropped.
    labels, bins, label = [], [], ""
    for kind, value in _events(text):
        if kind == "text":
            label = value.strip()
        else:
            bins += value[: len(value) // 2 * 2]
            labels += [label] * (len(value) // 2)
    return {"points": _centres(bins, 2, size), "point_labels": labels}


_GRAMMAR_FIELDS = {  # parse type -> reader
    "pure_text": _no_fields,
    "description_with_bboxes": partial(_box_fields, labelled=True),
    "bboxes": partial(_box_fields, labelled=False),
    "phrase_grounding": partial(_box_fields, labelled=True, grounding=True),
    "description_with_polygons": partial(_polygon_fields, labelled=True),
    "polygons": partial(_polygon_fields, labelled=False),
    "description_with_bboxes_or_polygons": _boxes_or_polygons_fields,
    "points": _point_fields,
}

#: Output kind -> the grammars (transformers' parse types, and ours) that write it; the
#: first is the default, the others are chosen by ``parse_instances(..., task=...)``.
KIND_GRAMMARS = {
    TEXT: ("pure_text",),
    BOXES: ("description_with_bboxes", "bboxes"),
    PHRASE_BOXES: ("phrase_grounding",),
    POLYGONS: ("polygons", "description_with_polygons"),
    BOXES_OR_POLYGONS: ("description_with_bboxes_or_polygons",),
    POINTS: ("points",),
}


def _grammar(output_kind: str, task: str | None) -> str:
    grammars = KIND_GRAMMARS.get(output_kind)
    if grammars is None:
        raise ValueError(f"unknown output kind {output_kind!r}; known: {sorted(KIND_GRAMMARS)}")
    chosen = FLORENCE_PARSE_TYPES.get(task) if task is not None else None
    if chosen is None:  # no task, or one transformers does not know (gi_sdk's own tokens)
        return grammars[0]
    if chosen not in grammars:
        raise ValueError(f"task {task} writes {chosen!r}, which is not output kind {output_kind!r}")
    return chosen


def parse_instances(text: str, output_kind: str, image_size=None, *, task: str | None = None,
                    banned_phrases=("the image",)) -> Parsed:
    """Parse generated text by its output kind (``gi_sdk.tasks``) into float32 arrays.

    The instances are exactly those ``parse_florence`` finds, on any text: same count, same
    labels (transformers' quirks included), and coordinates that are the float32 bin
    centres transformers truncates to int. By default each kind reads the grammar of its
    main task: BOXES ``<OD>``, PHRASE_BOXES ``<CAPTION_TO_PHRASE_GROUNDING>``, POLYGONS
    ``<REFERRING_EXPRESSION_SEGMENTATION>``, BOXES_OR_POLYGONS ``<OPEN_VOCABULARY_DETECTION>``;
    ``task`` picks another task's grammar (``<REGION_PROPOSAL>`` reads unlabelled boxes,
    which ``<OD>``'s grammar drops). POINTS, gi_sdk's own: ``label<loc_x><loc_y>`` repeated.

    >>> p = parse_instances("</s><s>polyp<loc_500><loc_500></s>", "points", (640, 480))
    >>> p.points.astype(float).round(2).tolist(), p.point_labels, p.text
    ([[320.32, 240.24]], ['polyp'], 'polyp')
    >>> parse_instances("<loc_0><loc_0><loc_9><loc_9>", "boxes", (1000, 1000),
    ...                 task="<REGION_PROPOSAL>").boxes.tolist()
    [[0.5, 0.5, 9.5, 9.5]]
    """
    grammar = _grammar(output_kind, task)
    if grammar != "pure_text" and image_size is None:
        raise ValueError(f"output kind {output_kind!r} has locations: pass image_size=(width, height)")
    fields = {
        "text": _answer_text(text),
        "boxes": np.zeros((0, 4), np.float32), "box_labels": [],
        "polygons": [], "polygon_labels": [],
        "points": np.zeros((0, 2), np.float32), "point_labels": [],
    }
    fields.update(_GRAMMAR_FIELDS[grammar](text, image_size, frozenset(banned_phrases)))
    return Parsed(**fields)
