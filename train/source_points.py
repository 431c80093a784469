"""Source kind ``points``: point / box / count records in MedMultiPoints' fields.

Records (``.jsonl`` / ``.json`` / ``.parquet`` at ``path``): ``image`` (file name, relative
to ``params.images``, default the record file's folder), ``img_size`` [w, h], ``points``
[[x, y], ...], ``bbox`` [[x1, y1, x2, y2], ...], ``count``, ``label`` (absolute pixels, as
FORMATS.md describes). Each record gives ``<MedPOINT>`` (when it has points), ``<MedCOUNT>``
and ``<OD>`` (when it has boxes) examples; params ``tasks`` narrows that.
A record whose ``count`` disagrees with its boxes or points is skipped: the count target is
the list of instances, so it cannot say both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gi_sdk.tasks import build_prompt

from .examples import MISMATCHED_COUNT, MISMATCHED_SIZE, UNPARSEABLE, Example, SourceReport
from .source_files import ImageFiles, read_records
from .targets import count_target, detect_target, point_target

POINT_TASKS = ("point", "count", "detect")


def _rows(value, width: int) -> np.ndarray | None:
    try:
        arr = np.asarray(value if value is not None else [], dtype=np.float32)
    except (TypeError, ValueError):
        return None
    arr = arr.reshape(0, width) if arr.size == 0 else arr
    return arr if arr.ndim == 2 and arr.shape[1] == width and np.isfinite(arr).all() else None


def _parse(record: dict):
    """(image, (w, h), points, boxes, count, label) or None when a field is malformed."""
    image, size, label = record.get("image"), record.get("img_size"), record.get("label")
    points, boxes = _rows(record.get("points"), 2), _rows(record.get("bbox"), 4)
    if not (isinstance(image, str) and isinstance(label, str) and label.strip() and "<" not in label):
        return None
    if not (isinstance(size, (list, tuple)) and len(size) == 2) or points is None or boxes is None:
        return None
    count = record.get("count", record.get("counts"))
    return image, (int(size[0]), int(size[1])), points, boxes, count, label.strip()


def point_examples(spec, report: SourceReport) -> list[Example]:
    """``<MedPOINT>`` / ``<MedCOUNT>`` / ``<OD>`` examples from MedMultiPoints-style records."""
    folder = Path(spec.params.get("images") or Path(spec.path).parent)
    tasks = tuple(spec.params.get("tasks", POINT_TASKS))
    images, seen, examples = ImageFiles(), set(), []
    for record in read_records(spec.path, report):
        report.records += 1
        parsed = _parse(record)
        if parsed is None:
            report.skip(UNPARSEABLE, str(record)[:80])
            continue
        name, size, points, boxes, count, label = parsed
        n = len(boxes) if len(boxes) else len(points)
        if count is not None and int(count) != n:
            report.skip(MISMATCHED_COUNT, f"{name}: count {count}, {len(boxes)} boxes, {len(points)} points")
            continue
        checked = images.check(folder / name)
        if isinstance(checked, str):
            report.skip(checked, name)
            continue
        if checked != (size[1], size[0]):
            report.skip(MISMATCHED_SIZE, f"{name}: img_size {list(size)}, file {[checked[1], checked[0]]}")
            continue
        made = []
        if "point" in tasks and len(points):
            made.append(("point", label, point_target(points, label, size)))
        if "count" in tasks and (len(boxes) or not len(points)):
            made.append(("count", label, count_target(boxes, label, size)))
        if "detect" in tasks and len(boxes):
            made.append(("detect", None, detect_target(boxes, [label] * len(boxes), size)))
        seen.add(name)
        examples += report.add([Example(str(folder / name), name, t, build_prompt(t, text), target, report.name)
                                for t, text, target in made])
    report.images = len(seen)
    return examples
