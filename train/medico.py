"""MediaEval Medico 2025 submission files, from a model's predictions.

Task 1 (answers) is scored with BLEU, ROUGE-1/2/L and METEOR (FORMATS.md). FORMATS.md
names no file layout for it; the organisers' submission script writes
``predictions_1.json``, and ``task1_submission`` writes that layout: ``predictions``
(``index``, ``img_id``, ``question``, ``answer``), ``public_scores`` (``bleu``, ``rouge1``,
``rouge2``, ``rougeL``, ``meteor``, rounded to 2 places as theirs), ``total_time``,
``time_per_item`` and ``submission_info`` (yours to fill: names, team, contact). Their
script also records GPU memory and the pip package list of the machine it ran on; those
describe the organisers' run and are left out here.

Task 2 (explanations) is JSON Lines exactly as FORMATS.md writes it, one object per
question: ``val_id``, ``img_id``, ``question``, ``answer``, ``textual_explanation``,
``visual_explanation`` (a list of ``{"type": "heatmap" | "segmentation_mask" |
"bounding_box", "data": path or [[x1, y1, x2, y2], ...], "description"}``) and
``confidence_score`` in [0, 1].

From an evaluation run (``gi-sdk eval MODEL --data ... --medico DIR``): Task 1 takes the
``ask`` (``<MedVQA>``) answers, Task 2 the ``explain`` (``<MedVQA_EXPLAIN>``) answers and
explanations with the Session's confidence, and as visual explanation the boxes the model
drew on the same image in that run (detect, count, ground, segment), if any. ``val_id``
is the question's position among the run's explain questions (the data sources do not
carry the organisers' ids).
"""
from __future__ import annotations

import math
from pathlib import Path

from .json_files import write_json, write_jsonl

TASK1_FILE = "predictions_1.json"
TASK2_FILE = "submission_task2.jsonl"
VISUAL_TYPES = ("heatmap", "segmentation_mask", "bounding_box")
_TASK1_SCORES = ("bleu", "rouge1", "rouge2", "rougeL", "meteor")
_LOCALIZING_TASKS = ("detect", "count", "ground", "segment")


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"Medico: {what} must be a non-empty string, got {value!r}")
    return value.strip()


def task1_submission(predictions, scores: dict | None = None, total_time: float | None = None,
                     submission_info: dict | None = None) -> dict:
    """The ``predictions_1.json`` object.

    predictions: dicts with ``img_id``, ``question``, ``answer`` (``index`` is their order).
    scores: a dict with ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``, ``meteor`` (e.g. the
    ``ask`` block of an eval report), or None.
    """
    rows = [{"index": i, "img_id": _text(p.get("img_id"), "img_id"), "question": _text(p.get("question"), "question"),
             "answer": p.get("answer") if isinstance(p.get("answer"), str) else ""}
            for i, p in enumerate(predictions)]
    public = None
    if scores:
        public = {k: (round(float(scores[k]), 2) if scores.get(k) is not None else None) for k in _TASK1_SCORES}
    out = {"submission_info": dict(submission_info or {}), "public_scores": public, "predictions": rows}
    if total_time is not None:
        out["total_time"] = round(float(total_time), 4)
        out["time_per_item"] = float(total_time) / len(rows) if rows else None
    return out


def visual_explanation(kind: str, data, description: str) -> dict:
    """One ``visual_explanation`` entry; ``data`` is a file path or a list of xyxy boxes."""
    if kind not in VISUAL_TYPES:
        raise ValueError(f"Medico: visual explanation type must be one of {VISUAL_TYPES}, got {kind!r}")
    if not isinstance(data, str):
        data = [[round(float(v), 2) for v in box] for box in data]
        if any(len(box) != 4 for box in data):
            raise ValueError("Medico: bounding boxes are [x1, y1, x2, y2]")
    return {"type": kind, "data": data, "description": str(description)}


def task2_record(val_id, img_id: str, question: str, answer: str, explanation: str,
                 visual=(), confidence: float | None = None) -> dict:
    """One Task 2 line, checked: the texts non-empty, ``confidence_score`` in [0, 1]."""
    record = {"val_id": val_id, "img_id": _text(img_id, "img_id"), "question": _text(question, "question"),
              "answer": answer if isinstance(answer, str) else "",
              "textual_explanation": _text(explanation, "textual_explanation"),
              "visual_explanation": list(visual)}
    if confidence is not None:
        c = float(confidence)
        if not (math.isfinite(c) and 0.0 <= c <= 1.0):
            raise ValueError(f"Medico: confidence_score must be in [0, 1], got {confidence!r}")
        record["confidence_score"] = c
    return record


def write_task1(path, submission: dict) -> Path:
    """Write ``predictions_1.json``."""
    return write_json(path, submission, indent=4)


def write_task2(path, records) -> Path:
    """Write ``submission_task2.jsonl``, one record per line."""
    return write_jsonl(path, records)


def _boxes_by_image(samples) -> dict:
    out: dict = {}
    for s in samples:
        if s["task"] in _LOCALIZING_TASKS and s["boxes"]:
            out.setdefault(s["image_id"], []).append(s)
    return out


def _describe(sample) -> str:
    """"detect: polyp, instrument": which task drew the boxes, and their labels."""
    return sample["task"] + ": " + ", ".join(label for label in sample["labels"] if label)


def write_from_samples(folder, samples, report: dict | None = None, submission_info: dict | None = None) -> dict:
    """Write the Task 1 / Task 2 files of an eval run's sample records into ``folder``.

    Returns ``{"task1": path or None, "task2": path or None, "task1_questions", "task2_questions"}``
    (a task with no questions of its kind in the run gets no file).
    """
    folder = Path(folder)
    asked = [s for s in samples if s["task"] == "ask"]
    explained = [s for s in samples if s["task"] == "explain" and s.get("explanation")]
    out = {"task1": None, "task2": None, "task1_questions": len(asked), "task2_questions": len(explained),
           "explain_without_explanation": sum(s["task"] == "explain" and not s.get("explanation") for s in samples)}
    if asked:
        scores = ((report or {}).get("tasks") or {}).get("ask")
        rows = [{"img_id": s["image_id"], "question": s["input"], "answer": s["answer"]} for s in asked]
        sub = task1_submission(rows, scores, total_time=sum(s["seconds"] for s in asked),
                               submission_info=submission_info)
        out["task1"] = str(write_task1(folder / TASK1_FILE, sub))
    if explained:
        boxes = _boxes_by_image(samples)
        records = []
        for i, s in enumerate(explained):
            visual = [visual_explanation("bounding_box", b["boxes"], _describe(b)) for b in boxes.get(s["image_id"], [])]
            records.append(task2_record(i, s["image_id"], s["input"], s["answer"], s["explanation"], visual,
                                        s.get("confidence")))
        out["task2"] = str(write_task2(folder / TASK2_FILE, records))
    return out
