"""Target texts from annotations, through the shared codec (pure: arrays in, text out).

The runtime decodes with the same codec (``gi_sdk.codec``), so what a model is taught to
write here is exactly what ``Session`` parses back.

>>> detect_target([[10, 20, 300, 200]], ["polyp"], (640, 480))
'polyp<loc_15><loc_41><loc_468><loc_416>'
>>> ground_target("polyp", [[0, 0, 64, 48], [320, 240, 639, 479]], (640, 480))
'polyp<loc_0><loc_0><loc_100><loc_100><loc_500><loc_500><loc_998><loc_997>'
"""
from __future__ import annotations

import numpy as np

from gi_sdk.codec import encode_boxes, encode_points, encode_polygons, mask_to_polygons
from gi_sdk.florence_parser import parse_instances
from gi_sdk.tasks import CLASS_NAME_TASKS, get_task


def reading_order(boxes) -> np.ndarray:
    """Indices that put boxes (N, 4) left to right by their centre (top to bottom on a tie).

    Targets list instances in this one order, so the first box a model writes has one right
    answer (the leftmost instance) instead of a mixture over all of them: with instances in
    annotation order the built-in model's first boxes landed between polyps.
    """
    rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.lexsort((rows[:, 1] + rows[:, 3], rows[:, 0] + rows[:, 2]))


def detect_target(boxes, labels, image_size) -> str:
    """``<OD>``: ``label<loc x4>`` per instance, in reading order."""
    order = reading_order(boxes)
    return encode_boxes(np.asarray(boxes).reshape(-1, 4)[order], image_size, [list(labels)[i] for i in order])


def count_target(boxes, label: str, image_size) -> str:
    """``<MedCOUNT>``: one ``label<loc x4>`` per instance in reading order (the count is their
    number; none: "")."""
    rows = np.asarray(boxes).reshape(-1, 4)
    return encode_boxes(rows[reading_order(rows)], image_size, [label] * len(rows))


def point_target(points, label: str, image_size) -> str:
    """``<MedPOINT>``: one ``label<loc_x><loc_y>`` per instance, left to right."""
    rows = np.asarray(points).reshape(-1, 2)
    return encode_points(rows[np.lexsort((rows[:, 1], rows[:, 0]))], image_size, [label] * len(rows))


def ground_target(phrase: str, boxes, image_size) -> str:
    """``<CAPTION_TO_PHRASE_GROUNDING>``: the phrase once, then all its boxes (transformers'
    grammar gives every box of a run the phrase before it)."""
    rows = np.asarray(boxes).reshape(-1, 4)
    return encode_boxes(rows[reading_order(rows)], image_size, [phrase] + [""] * (len(rows) - 1))


def segment_target(mask, max_points: int = 100) -> str | None:
    """``<REFERRING_EXPRESSION_SEGMENTATION>``: polygons of a binary mask (at most
    ``max_points`` vertices each), label-less (as transformers returns them); None when the
    mask has no region worth a polygon."""
    m = np.asarray(mask, dtype=bool)
    polygons = mask_to_polygons(m, max_points=max_points)
    if not polygons:
        return None
    return encode_polygons(polygons, (m.shape[1], m.shape[0]))


def mask_centres(masks) -> np.ndarray:
    """(N, 2) float32 pixel centroid of each (H, W) mask (the point a ``<MedPOINT>`` answer names)."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append([xs.mean() + 0.5, ys.mean() + 0.5] if len(xs) else [0.0, 0.0])
    return np.asarray(out, np.float32).reshape(-1, 2)


def class_labels(examples) -> list[str]:
    """The class names the detect / count / point targets of ``examples`` label instances with,
    sorted: the label vocabulary the training record keeps and a Session's grammar holds the
    model's labels to (``gi_sdk.grammar``).

    >>> from types import SimpleNamespace as E
    >>> class_labels([E(task="detect", target="polyp<loc_1><loc_2><loc_3><loc_4>instrument<loc_5><loc_6><loc_7><loc_8>"),
    ...               E(task="ask", target="yes")])
    ['instrument', 'polyp']
    """
    found = set()
    for example in examples:
        if example.task in CLASS_NAME_TASKS:
            parsed = parse_instances(example.target, get_task(example.task).output, (1000, 1000))
            found.update(label.strip() for label in parsed.box_labels + parsed.point_labels if label.strip())
    return sorted(found)
