"""Tasks of the decoder-only VLM families, which answer points, boxes and counts in JSON.

Florence-2 answers in location tokens (``gi_sdk.tasks``, ``gi_sdk.codec``); a decoder-only VLM
(LLaVA, Idefics3 / SmolVLM, Qwen2.5-VL) is asked in words and answers with a fenced json
block in absolute pixels of the frame (FORMATS.md, the MedMultiPoints paper). This module
holds that convention for the registry's tasks, so training targets and runtime parsing
agree: the prompt (the paper's style, its format sentence verbatim), the answer text a
model is taught to write, the JSON schema that constrained decoding enforces
(``gi_sdk.json_grammar``), and the ``Result`` an answer becomes. Pure: no model, no I/O.

>>> json_prompt("point", "polyp")
'Point to every polyp in the image. Must output in this json format:[{"point_2d": [x,y], "label": p_lbl},.., {..}].'
>>> json_answer("point", points=[[106, 197.04]], labels=["polyp"])
'```json\\n[{"point_2d": [106.0, 197.0], "label": "polyp"}]\\n```'
>>> r = build_json_result("point", json_answer("point", points=[[106, 197]], labels=["polyp"]), (640, 480))
>>> r.points.tolist(), r.count, r.parse_failed
([[106.0, 197.0]], 1, False)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import tasks as T
from .decode import build_result
from .errors import PromptError
from .json_answer import answer_count, parse_json_answer
from .result import Result

# Answer kinds: the MedMultiPoints paper's five (the names gi_sdk.train.json_predictions scores by).
POINT, BOX, COUNT, COUNT_POINT, COUNT_BOX = "point", "box", "count", "count_point", "count_box"

#: The paper's format sentence per kind, verbatim (placeholders and spacing included): a model
#: fine-tuned on the paper's data saw exactly these words.
FORMAT_SENTENCES = {
    POINT: ' Must output in this json format:[{"point_2d": [x,y], "label": p_lbl},.., {..}].',
    BOX: ' Must output in this json format:[{"bbox_2d": [x1,y1,x2,y2], "label": b_lbl},.., {..}].',
    COUNT: ' Must output in this json format:{"counts": count, "label": c_lbl}.',
    COUNT_POINT: ' Must output in this json format:{"counts": count, "point_2d": [[x,y],.., [x,y]], '
                 '"label": c_lbl, }.',
    COUNT_BOX: ' Must output in json exactly in this json format with same keys : {"counts": count, '
               '"bbox_2d": [[x1,y1,x2,y2],.., [x1,y1,x2,y2]], "label": c_lbl, }.',
}

#: Coordinates in answers are rounded to this many decimals (the paper writes points as 106.0).
DECIMALS = 1


@dataclass(frozen=True)
class JsonTask:
    """How a registry task is asked of a JSON-answering family.

    task: the registry name (``gi_sdk.tasks``); kind: the answer kind; question: the words
    before the format sentence (``{input}`` is the task's input: a label);
    max_new_tokens: default budget (JSON spends ~12 tokens per point, ~20 per box).
    """

    task: str
    kind: str
    question: str
    max_new_tokens: int


_JSON_TASKS = [
    JsonTask("point", POINT, "Point to every {input} in the image.", 256),
    JsonTask("count", COUNT_BOX, "Count all {input} in the image and provide their bounding boxes.", 320),
    JsonTask("detect", BOX, T.get_task("detect").template, 320),
    JsonTask("locate", BOX, "Locate {input} in the image and return its bounding box.", 128),  # REC
]
#: Registry task name -> its JSON form. Text tasks (ask, explain, classify, captions) need none:
#: the question is asked as it is and the answer is plain text.
JSON_TASKS: dict[str, JsonTask] = {t.task: t for t in _JSON_TASKS}

#: Text tasks whose input is not the question itself: the question around it. REG's region is
#: written in frame pixels, as the answers write boxes (``region_in_pixels``).
TEXT_QUESTIONS = {"name_region": "What is the finding in the region {input}? Answer with its name."}


def served(task: str) -> bool:
    """True when a JSON-answering family can run registry task ``task`` (a JSON task or text)."""
    return task in JSON_TASKS or T.get_task(task).output == T.TEXT


def answer_kind(task: str) -> str | None:
    """The JSON answer kind of ``task``, None for text tasks (PromptError when not served)."""
    _check_served(task)
    spec = JSON_TASKS.get(task)
    return spec.kind if spec else None


def _check_served(task: str) -> None:
    if not served(task):
        known = sorted(JSON_TASKS) + sorted(n for n, t in T.TASKS.items() if t.output == T.TEXT)
        raise PromptError(f"task {task!r} has no JSON form for decoder-only families (its answer is "
                          f"{T.get_task(task).output}); they run: {', '.join(known)}")


def json_prompt(task: str, text: str | None = None, image_size=None) -> str:
    """The user turn for ``task``: the question, and for a JSON task the paper's format sentence.

    Text tasks are asked in words: ``ask`` / ``explain`` / ``classify`` send the question
    itself, the captions their registry sentence, ``name_region`` (REG) a question around its
    region, which is turned from location tokens into pixels of a frame of ``image_size``
    (width, height) when given. Input checks are the registry's (``build_prompt``).
    """
    spec = T.get_task(task)
    _check_served(spec.name)
    T.build_prompt(spec, text)  # PromptError for a missing, unexpected or too long input
    json_task = JSON_TASKS.get(spec.name)
    if json_task is None:
        if spec.name in TEXT_QUESTIONS:
            region = region_in_pixels(text.strip(), image_size) if image_size is not None else text.strip()
            return TEXT_QUESTIONS[spec.name].format(input=region)
        return text.strip() if spec.needs_input else spec.template
    question = json_task.question.format(input=text.strip()) if spec.needs_input else json_task.question
    return question + FORMAT_SENTENCES[json_task.kind]


def region_in_pixels(region: str, image_size) -> str:
    """A region given as Florence-2 location tokens (``<loc_x1><loc_y1><loc_x2><loc_y2>``, how
    the registry's REG input is written) in frame pixels as the answers write boxes; any other
    text is returned as it is.

    >>> region_in_pixels("<loc_0><loc_0><loc_499><loc_999>", (640, 480))
    '[0.3, 0.2, 319.7, 479.8]'
    """
    import re

    from .locations import dequantize

    bins = [int(b) for b in re.findall(r"<loc_(\d+)>", region)]
    if len(bins) != 4 or re.sub(r"<loc_\d+>", "", region).strip():
        return region
    return json.dumps(_rows(dequantize([bins], tuple(image_size)), 4)[0])


def max_new_tokens(task: str) -> int:
    """Default token budget of ``task`` for a JSON-answering family."""
    spec = JSON_TASKS.get(task)
    return spec.max_new_tokens if spec else T.get_task(task).max_new_tokens


def _rows(values, width: int) -> list:
    arr = np.asarray(values if values is not None else [], np.float64).reshape(-1, width)
    return [[round(float(v), DECIMALS) for v in row] for row in arr]


def json_answer(task: str, points=None, boxes=None, labels=None, label: str | None = None) -> str:
    """The fenced answer a model is taught to write for ``task`` (its kind's layout).

    points (N, 2) / boxes (N, 4) in frame pixels; labels: one per instance (list kinds);
    label: the asked-for class (count kinds; default the first of ``labels``).

    >>> json_answer("count", boxes=[[10, 20, 30, 40]], label="polyp")
    '```json\\n{"counts": 1, "bbox_2d": [[10.0, 20.0, 30.0, 40.0]], "label": "polyp"}\\n```'
    """
    kind = answer_kind(task)
    if kind is None:
        raise PromptError(f"task {task!r} answers in text, not JSON")
    pts, bxs = _rows(points, 2), _rows(boxes, 4)
    labels = list(labels or [])
    label = label if label is not None else (labels[0] if labels else "")
    if kind == POINT:
        value = [{"point_2d": p, "label": lab} for p, lab in zip(pts, labels or [label] * len(pts))]
    elif kind == BOX:
        value = [{"bbox_2d": b, "label": lab} for b, lab in zip(bxs, labels or [label] * len(bxs))]
    elif kind == COUNT:
        value = {"counts": max(len(pts), len(bxs)), "label": label}
    elif kind == COUNT_POINT:
        value = {"counts": len(pts), "point_2d": pts, "label": label}
    else:
        value = {"counts": len(bxs), "bbox_2d": bxs, "label": label}
    return "```json\n" + json.dumps(value) + "\n```"


#: Bounds the schema puts on an answer, so that even an unsure model closes it within a budget.
MAX_LABEL_CHARS = 64
MAX_COUNT = 1000


def answer_schema(kind: str, image_size=None) -> dict:
    """The JSON schema of a ``kind`` answer (properties in the order ``json_answer`` writes them).

    Coordinates are numbers with at most ``DECIMALS`` decimals, within the frame when
    ``image_size`` (width, height) is given; labels are at most ``MAX_LABEL_CHARS`` long,
    without backticks.
    """
    w, h = (None, None) if image_size is None else (float(image_size[0]), float(image_size[1]))

    def coordinate(limit):
        bounds = {} if limit is None else {"minimum": 0, "maximum": limit}
        return {"type": "number", "multipleOf": 10.0 ** -DECIMALS, **bounds}

    def fixed(*items):
        return {"type": "array", "prefixItems": list(items), "items": False,
                "minItems": len(items), "maxItems": len(items)}

    point = fixed(coordinate(w), coordinate(h))
    box = fixed(coordinate(w), coordinate(h), coordinate(w), coordinate(h))
    # no backtick: a fence inside a label would end the json block early for every reader
    label = {"type": "string", "pattern": f"^[^`]{{0,{MAX_LABEL_CHARS}}}$"}
    count = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}

    def obj(**props):
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    return {
        POINT: {"type": "array", "items": obj(point_2d=point, label=label)},
        BOX: {"type": "array", "items": obj(bbox_2d=box, label=label)},
        COUNT: obj(counts=count, label=label),
        COUNT_POINT: obj(counts=count, point_2d={"type": "array", "items": point}, label=label),
        COUNT_BOX: obj(counts=count, bbox_2d={"type": "array", "items": box}, label=label),
    }[kind]


def build_json_result(task: str, text: str, image_size, **fields) -> Result:
    """A JSON-answering family's decoded answer -> ``Result`` at ``image_size`` (width, height).

    Instances are aligned as Florence-2's: a point answer fills points (boxes are the
    degenerate ``x, y, x, y``), a box answer fills boxes (points are their centres);
    ``count`` follows the paper's rule (a list counts its items, a dict states ``counts``).
    An answer that does not parse comes back with ``parse_failed=True``, no instances,
    ``count`` None and the text kept; it never raises. Text tasks read like Florence-2's.
    """
    spec = T.get_task(task)
    if answer_kind(spec.name) is None:
        return build_result(spec, text, image_size, **fields)
    size = tuple(int(v) for v in image_size)
    answer = text.strip()
    parsed = parse_json_answer(text)
    if parsed is None:
        return Result(task=spec.name, answer=answer, image_size=size, parse_failed=True, **fields)
    points, boxes = parsed["points"], parsed["boxes"]
    all_points = np.concatenate([points, (boxes[:, :2] + boxes[:, 2:]) / 2]).astype(np.float32)
    all_boxes = np.concatenate([np.concatenate([points, points], axis=1), boxes]).astype(np.float32)
    labels = parsed["labels"] if len(parsed["labels"]) == len(all_points) else \
        [parsed["labels"][0] if parsed["labels"] else ""] * len(all_points)
    return Result(task=spec.name, answer=answer, boxes=all_boxes, labels=labels, points=all_points,
                  count=answer_count(parsed), image_size=size, **fields)
