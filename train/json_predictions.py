"""Score a JSON Lines file of point / box / count answers already produced (issue 8's layout).

One JSON record per line: the model's answer text in ``response`` and the ground truth in
``labels``, in the same JSON answer format (FORMATS.md "Point / box / count answers in
JSON": a fenced or bare json block; ``labels`` may also be the JSON value itself). Both
are read by ``gi_sdk.json_answer.parse_json_answer``; the scoring follows the
MedMultiPoints paper's rules as FORMATS.md writes them:

- the answer is the first json block; when none parses it is an empty list (a parse
  failure, counted);
- the task kind comes from the truth: ``point`` (a list of ``point_2d``), ``box`` (a list
  of ``bbox_2d``), ``count`` (``{"counts"}``), ``count_point`` / ``count_box`` (a count with
  its points or boxes); a record's own ``task`` field, when it names a kind, wins;
- count kinds: MAE / MSE / exact over ALL samples, unparsed ones included (a list answer
  counts as its length, a dict as its ``counts``, 0 when absent: ``answer_count``);
- point kinds: nearest-true-point distances, matching accuracy within 10 px, zero cases;
- box kinds: COCO mAP / mAP50 / mAP75 with every score 1 (one category per sample: the
  truth's label, as the question names it) and mean best IoU.

    gi-sdk eval --predictions answers.jsonl --out report.json
"""
from __future__ import annotations

import json
from pathlib import Path

from gi_sdk.errors import SourceError
from gi_sdk.json_answer import answer_count, parse_json_answer

from . import metrics as M

#: Task kinds a record can be, and whether each scores counts, points, boxes.
KINDS = {
    "point": (False, True, False),
    "box": (False, False, True),
    "count": (True, False, False),
    "count_point": (True, True, False),
    "count_box": (True, False, True),
}


def _as_answer(value):
    """``labels`` as text (it may be given as the JSON value itself)."""
    return value if isinstance(value, str) else json.dumps(value)


def kind_of(truth: dict) -> str | None:
    """The task kind of a parsed truth (``parse_json_answer`` output), None if it has none."""
    raw = truth["raw"]
    counted = isinstance(raw, dict) and truth["count"] is not None
    has_points = len(truth["points"]) or _mentions(raw, "point_2d")
    has_boxes = len(truth["boxes"]) or _mentions(raw, "bbox_2d")
    if has_points:
        return "count_point" if counted else "point"
    if has_boxes:
        return "count_box" if counted else "box"
    return "count" if counted else None


def _mentions(raw, key: str) -> bool:
    items = raw if isinstance(raw, list) else [raw]
    return any(isinstance(item, dict) and key in item for item in items)


def score_records(records) -> dict:
    """``{"kinds": {kind: block}, "overall": {...}}`` for an iterable of record dicts."""
    groups: dict = {}
    skipped, samples = {}, []
    for i, record in enumerate(records):
        truth = parse_json_answer(_as_answer(record.get("labels"))) if isinstance(record, dict) else None
        kind = record.get("task") if isinstance(record, dict) and record.get("task") in KINDS else None
        kind = kind or (kind_of(truth) if truth is not None else None)
        if truth is None or kind is None or not isinstance(record.get("response"), str):
            reason = "labels without a point / box / count answer" if truth is None or kind is None \
                else "response is not a string"
            skipped[reason] = skipped.get(reason, 0) + 1
            if len(samples) < 5:
                samples.append(f"line {i + 1}: {reason}")
            continue
        groups.setdefault(kind, []).append((parse_json_answer(record["response"]), truth))
    blocks = {kind: score_kind(kind, pairs) for kind, pairs in sorted(groups.items())}
    n = sum(b["n"] for b in blocks.values())
    failures = sum(b["parse_failures"] for b in blocks.values())
    return {"kinds": blocks, "overall": {
        "n": n, "parse_failures": failures, "parse_failure_rate": failures / n if n else None,
        "zero_cases": sum(b["zero_cases"] for b in blocks.values()),
        "skipped": skipped, "skipped_examples": samples}}


def _empty(answer) -> bool:
    return answer is None or (not len(answer["points"]) and not len(answer["boxes"]) and not answer_count(answer))


def score_kind(kind: str, pairs: list) -> dict:
    """The metric block of one kind: ``pairs`` of (parsed prediction or None, parsed truth)."""
    counts, points, boxes = KINDS[kind]
    failures = sum(p is None for p, _ in pairs)
    out = {"n": len(pairs), "parse_failures": failures,
           "parse_failure_rate": failures / len(pairs) if pairs else None,
           "zero_cases": sum(_empty(p) for p, _ in pairs)}
    pred = [p if p is not None else parse_json_answer("[]") for p, _ in pairs]  # unparsed: an empty list
    truth = [t for _, t in pairs]
    if counts:
        out["count"] = M.count_scores([answer_count(p) for p in pred], [answer_count(t) for t in truth])
    if points:
        out["points"] = M.point_scores([p["points"] for p in pred], [t["points"] for t in truth])
    if boxes:
        label = lambda t: t["labels"][0] if t["labels"] else ""  # noqa: E731  (the sample's category)
        out["boxes"] = {
            **M.box_map([p["boxes"] for p in pred], [[label(t)] * len(p["boxes"]) for p, t in zip(pred, truth)],
                        [t["boxes"] for t in truth], [[label(t)] * len(t["boxes"]) for t in truth]),
            **M.mean_best_iou([p["boxes"] for p in pred], [t["boxes"] for t in truth])}
    return out


def read_records(path) -> list:
    """The records of a JSON Lines file; SourceError naming the line when one is not JSON."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such predictions file")
    records = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{i}: not a JSON record ({exc}); one JSON object per line") from exc
    return records


def score_file(path) -> dict:
    """Score a predictions JSON Lines file: ``score_records`` plus the file it read."""
    return {"predictions": str(path), **score_records(read_records(path))}
