"""Point / box / count answers written as JSON (Qwen2.5-VL style; FORMATS.md, MedMultiPoints).

A decoder-only VLM answers a pointing, box or counting question with a fenced json block
in absolute pixels:

    points    [{"point_2d": [x, y], "label": L}, ...]
    boxes     [{"bbox_2d": [x1, y1, x2, y2], "label": L}, ...]
    count     {"counts": N, "label": L}
    combined  {"counts": N, "point_2d": [[x, y], ...], "label": L}   (or "bbox_2d")

``parse_json_answer`` reads the first such block into arrays; ``answer_count`` is the
paper's count scoring rule. Pure functions, never raising on model text.

>>> a = parse_json_answer('```json\\n[{"point_2d": [10, 20], "label": "polyp"}]\\n```')
>>> a["points"].tolist(), a["labels"], answer_count(a)
([[10.0, 20.0]], ['polyp'], 1)
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

__all__ = ["parse_json_answer", "answer_count"]

# The first ```json fence (any case); an unclosed fence runs to the end of the text.
_FENCE = re.compile(r"```[ \t]*json\b(.*?)(?:```|\Z)", re.IGNORECASE | re.DOTALL)
_DECODER = json.JSONDecoder()
_COUNT_KEYS = ("counts", "count")


def _load(text: str):
    """The JSON value of an answer: the first json fence, else the text itself, else the
    first JSON object or array found in it. None when nothing decodes."""
    fence = _FENCE.search(text)
    candidates = [fence.group(1)] if fence else [text]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            pass
    if fence:
        return None  # the paper's rule: the first json block is the answer, parsed or not
    for m in re.finditer(r"[\[{]", text):
        try:
            return _DECODER.raw_decode(text, m.start())[0]
        except (ValueError, RecursionError):
            continue
    return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rows(value, width: int) -> list[list[float]]:
    """[x, y] or [[x, y], ...] (width 2; 4 for boxes) -> rows; malformed rows are skipped."""
    if not isinstance(value, list):
        return []
    nested = value and all(isinstance(v, list) for v in value)
    rows = []
    for row in (value if nested else [value]):
        nums = [_number(v) for v in row] if isinstance(row, list) else []
        if len(nums) == width and None not in nums:
            rows.append(nums)
    return rows


def _count(item: dict) -> int | None:
    for key in _COUNT_KEYS:
        if key in item:
            value = item[key]
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    return None
            num = _number(value)
            return int(num) if num is not None else None
    return None


def parse_json_answer(text: str) -> dict | None:
    """A JSON answer -> ``{"points", "boxes", "labels", "count", "raw"}``, or None.

    The answer is the first fenced json block (fence name in any case); without a fence,
    the text is read as a bare JSON value. ``points``: (N, 2) float32, ``boxes``: (N, 4)
    float32, ``labels``: one per point then per box (for an answer without any, its own
    label if it has one), ``count``: the ``counts`` (or ``count``) it states, else None,
    ``raw``: the decoded JSON (a list or dict). None when nothing parses to a list or dict.

    >>> a = parse_json_answer('There are two. ```JSON\\n{"count": 2, "label": "polyp"}\\n```')
    >>> a["count"], a["labels"], a["points"].shape
    (2, ['polyp'], (0, 2))
    >>> parse_json_answer("no idea") is None
    True
    """
    if not isinstance(text, str):
        return None
    raw = _load(text)
    if not isinstance(raw, (list, dict)):
        return None
    items = [raw] if isinstance(raw, dict) else [v for v in raw if isinstance(v, dict)]
    points, boxes, point_labels, box_labels = [], [], [], []
    for item in items:
        label = item.get("label")
        label = "" if label is None else str(label)
        found_points, found_boxes = _rows(item.get("point_2d"), 2), _rows(item.get("bbox_2d"), 4)
        points += found_points
        boxes += found_boxes
        point_labels += [label] * len(found_points)
        box_labels += [label] * len(found_boxes)
    labels = point_labels + box_labels
    if not labels and isinstance(raw, dict) and raw.get("label") is not None:
        labels = [str(raw["label"])]
    return {
        "points": np.array(points, dtype=np.float32).reshape(-1, 2),
        "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": labels,
        "count": _count(raw) if isinstance(raw, dict) else None,
        "raw": raw,
    }


def answer_count(parsed: dict | None) -> int:
    """The count an answer scores, by the MedMultiPoints paper's rule (FORMATS.md).

    A list answer counts as its length, a dict answer as its ``counts`` (``count`` accepted;
    0 when absent), and an answer that did not parse (None) as an empty list: 0.

    >>> answer_count(parse_json_answer('```json\\n{"counts": 3, "label": "polyp"}\\n```'))
    3
    >>> answer_count(None)
    0
    """
    if parsed is None:
        return 0
    raw = parsed["raw"]
    if isinstance(raw, list):
        return len(raw)
    count = _count(raw) if isinstance(raw, dict) else None
    return 0 if count is None else count
