"""Parsers of Florence-2 output text.

- ``parse_florence``: returns exactly what transformers'
  ``Florence2Processor.post_process_generation`` returns, quirks included, without torch;
- ``parse_instances``: the runtime's parser: the very instances ``parse_florence`` finds,
  as float32 bin centres (not truncated), plus gi_sdk's POINTS grammar and clean answer text.

Both are pure functions over text; ``gi_sdk.codec`` re-exports them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import numpy as np

from .locations import NUM_BINS, dequantize
from .tasks import (BOXES, BOXES_OR_POLYGONS, NEW_TASK_TOKENS, PHRASE_BOXES, POINTS, POLYGONS,
                    TASKS, TEXT)

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
