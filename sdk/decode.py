"""Generated tokens -> ``Result``: text, boxes, polygons, points in ORIGINAL frame pixels.

The grammar of each output kind is parsed by ``gi_sdk.codec.parse_instances`` (the same
rules as transformers' Florence-2 post-processor, keeping float bin centres); this module
only lays the parsed instances out as one aligned ``Result``.
"""
from __future__ import annotations

import re

import numpy as np

from . import tasks as T
from .codec import parse_instances
from .result import Result

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "single": 1, "a couple of": 2,
}
_NONE_WORDS = ("no", "none", "not any")
_NUMBER_RE = re.compile(r"\b(\d+|" + "|".join(map(re.escape, _NUMBER_WORDS)) + r")\b", re.IGNORECASE)
_NONE_RE = re.compile(r"\b(" + "|".join(_NONE_WORDS) + r")\b", re.IGNORECASE)


def count_in_answer(answer: str) -> int | None:
    """The number an answer states ("There are two polyps" -> 2, "No polyps" -> 0), or None.

    A stated number wins over a "no" ("No, there is one polyp" -> 1).

    >>> count_in_answer("Yes, 3 polyps."), count_in_answer("None seen."), count_in_answer("Pink.")
    (3, 0, None)
    """
    match = _NUMBER_RE.search(answer)
    if match:
        word = match.group(1).lower()
        return int(word) if word.isdigit() else _NUMBER_WORDS[word]
    return 0 if _NONE_RE.search(answer) else None


def _bbox_of(parts) -> np.ndarray:
    pts = np.concatenate([p for p in parts if len(p)], axis=0) if parts else np.zeros((0, 2), np.float32)
    if not len(pts):
        return np.zeros(4, np.float32)
    return np.array([*pts.min(axis=0), *pts.max(axis=0)], np.float32)


def build_result(task: T.Task, text: str, image_size, banned_phrases=("the image",), **fields) -> Result:
    """Parse the decoded ``text`` of ``task`` into a Result at ``image_size`` (width, height).

    banned_phrases: phrase-grounding phrases the checkpoint's post-processor ignores.
    """
    # Florence-2's own tasks read their own grammar (<REGION_PROPOSAL> has no labels);
    # ours read the grammar of their output kind.
    grammar_task = task.token if task.hf_parse_type else None
    parsed = parse_instances(text, task.output, image_size, task=grammar_task, banned_phrases=banned_phrases)
    boxes, labels, points = [], [], []
    for box, label in zip(parsed.boxes, parsed.box_labels):
        boxes.append(box)
        labels.append(label)
        points.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    for parts, label in zip(parsed.polygons, parsed.polygon_labels):
        box = _bbox_of(parts)
        boxes.append(box)
        labels.append(label)
        points.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    for point, label in zip(parsed.points, parsed.point_labels):
        boxes.append((point[0], point[1], point[0], point[1]))
        labels.append(label)
        points.append(point)
    # polygons stay aligned with instances: box instances have none
    n_box = len(parsed.boxes)
    all_polygons = ([[] for _ in range(n_box)] + list(parsed.polygons)
                    + [[] for _ in range(len(parsed.points))]) if len(parsed.polygons) else []

    answer, explanation = parsed.text, None
    if task.name == "explain" and T.EXPLANATION_SEPARATOR.strip() in answer:
        head, _, tail = answer.partition(T.EXPLANATION_SEPARATOR.strip())
        answer, explanation = head.strip(), tail.strip()
    if task.output == T.TEXT:
        count = count_in_answer(answer) if task.name in ("ask", "explain") else None
    else:
        count = len(boxes)
    return Result(
        task=task.name, answer=answer, explanation=explanation,
        boxes=np.asarray(boxes, np.float32), labels=labels, polygons=all_polygons,
        points=np.asarray(points, np.float32), count=count,
        image_size=tuple(int(v) for v in image_size), **fields,
    )
