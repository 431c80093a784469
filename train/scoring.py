"""Score a model's answers against the examples' targets, per task (pure: no model, no files).

The ground truth of an example is its target text parsed exactly like the model's output
(``gi_sdk.decode.build_result``, the runtime's own parser), so truth and prediction are
the same kind of ``Result`` and every metric compares like with like. Predictions of the
decoder-only families (JSON answers, ``gi_sdk.json_tasks``) are the same ``Result``; their
parse failures are the answers that did not parse (``Result.parse_failed``).

Per task, the block has ``n``, ``zero_cases`` (empty outputs: no instance, or no answer
text), ``parse_failures`` (an output with text the task's grammar cannot read: location
tokens that make no box, a label without coordinates), ``parse_failure_rate``,
``errors`` (calls that raised; scored as empty outputs), and the metrics of the task's
output kind (``gi_sdk.train.metrics``):

- text (ask, explain, captions, CLS ``classify``, REG ``name_region``): BLEU, ROUGE-1/2/L,
  METEOR, chrF++, exact-match ``answer_accuracy`` (the CLS / REG accuracy), ``yes_no``
  accuracy, and ``stated_count`` (count MAE/MSE/exact of the numbers the answers to "How
  many ...?" questions state); explain also scores its explanation text apart.
- boxes (detect, count, ground, REC ``locate``, ...): COCO mAP / mAP50 / mAP75, mean best IoU,
  localization accuracy (REC's rule: the first box right at IoU >= 0.5), count MAE / MSE /
  exact, presence accuracy. Box categories are
  the labels for tasks without input (``<OD>``) and the task's input for the others
  (``<MedCOUNT> polyp``: every box is a "polyp", whatever label the model wrote).
- polygons (segment): Seg-IoU per category (the input phrase) and its mean, presence.
- points: MedMultiPoints point metrics (10 px), count and presence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from gi_sdk import tasks as T
from gi_sdk.decode import build_result, count_in_answer
from gi_sdk.geometry import polygons_to_mask
from gi_sdk.result import Result

from . import metrics as M

# what a generated text holds besides its answer: BART's start, end and padding tokens
_BART_NOISE = re.compile(r"</?s>|<pad>")


@dataclass
class Scored:
    """One example's prediction beside its truth.

    task: task name; text: the task's input (question, phrase) or None; prediction and
    truth: ``Result`` at the frame's size; error: what the call raised, if it did.
    """

    task: str
    text: str | None
    prediction: Result
    truth: Result
    error: str | None = None


def truth_of(task: str, target: str, image_size) -> Result:
    """The ground truth of an example: its target text parsed as the model's output would be."""
    return build_result(T.get_task(task), target, image_size)


def _json_answer(result: Result) -> bool:
    """True for a localization answer of a decoder-only family (a json block, parsed or not)."""
    return result.parse_failed or "```" in result.raw_text


def is_parse_failure(task: str, result: Result) -> bool:
    """True when a localization output has text but its grammar finds no instance in it; for a
    JSON answer, when it did not parse (an empty list is an answer: nothing found)."""
    spec = T.get_task(task)
    if spec.output == T.TEXT:
        return False
    if _json_answer(result):
        return result.parse_failed
    if len(result):
        return False
    return bool(_BART_NOISE.sub("", result.raw_text).strip())


def is_empty(result: Result) -> bool:
    """No instance and no answer text: the model said nothing. A JSON answer with no instance
    (an empty list, or one that did not parse) is empty too: the paper's zero case."""
    if not len(result) and _json_answer(result):
        return True
    return not len(result) and not result.answer.strip()


def _base(samples: list) -> dict:
    n = len(samples)
    failures = sum(is_parse_failure(s.task, s.prediction) for s in samples)
    return {"n": n, "zero_cases": sum(is_empty(s.prediction) for s in samples),
            "parse_failures": failures, "parse_failure_rate": failures / n if n else None,
            "errors": sum(s.error is not None for s in samples)}


def _text_block(samples: list) -> dict:
    preds, truths = [s.prediction.answer for s in samples], [s.truth.answer for s in samples]
    out = {**M.text_scores(preds, truths), "answer_accuracy": M.accuracy(preds, truths),
           "yes_no": M.yes_no_accuracy(preds, truths)}
    # "How many ...?" questions: the number the answer states against the true one; an answer
    # that states none counts as -1 (wrong, never "exact")
    stated = [(count_in_answer(s.prediction.answer), count_in_answer(s.truth.answer)) for s in samples
              if (s.text or "").lower().startswith("how many")]
    stated = [(p, t) for p, t in stated if t is not None]
    out["stated_count"] = M.count_scores([-1 if p is None else p for p, _ in stated], [t for _, t in stated])
    if any(s.truth.explanation for s in samples):
        out["explanation"] = M.text_scores([s.prediction.explanation or "" for s in samples],
                                           [s.truth.explanation or "" for s in samples])
    return out


def _categories(sample: Scored, result: Result) -> list:
    return [sample.text] * len(result) if sample.text is not None else list(result.labels)


def _instances(samples: list) -> dict:
    """Count and presence, the metrics every localization task shares."""
    pred, true = [len(s.prediction) for s in samples], [len(s.truth) for s in samples]
    return {"count": M.count_scores(pred, true), "presence_accuracy": M.presence_accuracy(pred, true)}


def _box_block(samples: list) -> dict:
    pb, tb = [s.prediction.boxes for s in samples], [s.truth.boxes for s in samples]
    return {**M.box_map(pb, [_categories(s, s.prediction) for s in samples],
                        tb, [_categories(s, s.truth) for s in samples]),
            "best_iou": M.mean_best_iou(pb, tb), "localization": M.localization_accuracy(pb, tb),
            **_instances(samples)}


def _mask(result: Result) -> np.ndarray:
    w, h = result.image_size
    parts = [p for instance in result.polygons for p in instance]
    return polygons_to_mask(parts, h, w)


def _polygon_block(samples: list) -> dict:
    iou = M.seg_iou([_mask(s.prediction) for s in samples], [_mask(s.truth) for s in samples],
                    [s.text if s.text is not None else "all" for s in samples])
    return {"seg_iou": iou, **_instances(samples)}


def _point_block(samples: list) -> dict:
    return {"points": M.point_scores([s.prediction.points for s in samples], [s.truth.points for s in samples]),
            **_instances(samples)}


#: Output kind -> the metrics of its block.
KIND_SCORES = {
    T.TEXT: _text_block,
    T.BOXES: _box_block,
    T.PHRASE_BOXES: _box_block,
    T.BOXES_OR_POLYGONS: _box_block,
    T.POLYGONS: _polygon_block,
    T.POINTS: _point_block,
}


def score_task(samples: list) -> dict:
    """The metric block of one task's samples (all ``Scored`` of the same task)."""
    if not samples:
        return {"n": 0}
    kinds = {T.get_task(s.task).output for s in samples}
    if len(kinds) != 1:
        raise ValueError(f"score_task: samples of several output kinds {sorted(kinds)}")
    return {**_base(samples), **KIND_SCORES[kinds.pop()](samples)}


def score_all(samples: list) -> dict:
    """``{"tasks": {task: block}, "overall": totals}`` over samples of any tasks."""
    by_task: dict = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    blocks = {task: score_task(group) for task, group in sorted(by_task.items())}
    n = len(samples)
    failures = sum(b["parse_failures"] for b in blocks.values())
    overall = {"n": n, "zero_cases": sum(b["zero_cases"] for b in blocks.values()),
               "parse_failures": failures, "parse_failure_rate": failures / n if n else None,
               "errors": sum(b["errors"] for b in blocks.values()), "headline": headline(blocks)}
    return {"tasks": blocks, "overall": overall}


def headline(blocks: dict) -> dict:
    """The figures issue 4 judges a model by, picked from the task blocks (None when absent)."""
    get = lambda task, *keys: _dig(blocks.get(task), keys)  # noqa: E731
    return {
        "polyp_presence_accuracy": get("count", "presence_accuracy"),
        "polyp_count_exact": get("count", "count", "exact"),
        "detection_map50": get("detect", "map50"),
        "segmentation_mean_iou": get("segment", "seg_iou", "mean_iou"),
        "answer_bleu": get("ask", "bleu"),
    }


def _dig(block, keys):
    for key in keys:
        if not isinstance(block, dict):
            return None
        block = block.get(key)
    return block
