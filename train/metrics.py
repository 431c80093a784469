"""Evaluation metrics of the seed papers, as pure functions over numpy values.

Each takes per-sample predictions and truths (arrays in frame pixels, counts, strings) and
returns a dict of plain floats and ints, so a report is ``json.dumps`` away. Values that
cannot be computed (no samples; no truth for a COCO category) are None, never a made-up 0.

- boxes: COCO mAP@[.5:.95], mAP50, mAP75 by ``pycocotools`` (the reference COCO
  implementation) with every score 1, as the MedMultiPoints paper scores JSON boxes;
  mean best IoU (per sample, the mean over predicted boxes of their best IoU with a true
  box); localization accuracy (the REC rule: a sample is right when its first predicted
  box has IoU >= 0.5 with a true box). IoU is ``gi_sdk.box_iou``.
- masks: Seg-IoU (``gi_sdk.mask_iou``) per category and their mean.
- counts: MAE, MSE and the share of exact counts; presence accuracy (count > 0 on both
  sides or on neither).
- points: the MedMultiPoints rules (FORMATS.md): each predicted point's distance to the
  nearest true point; per sample the mean distance, RMSE and the share within 10 px,
  averaged over samples; a sample with no predicted or no true points is a zero case
  (counted, left out of the averages). Alongside, a one-to-one matching (scipy's
  ``linear_sum_assignment``): matched pairs within 10 px over max(predicted, true), so
  ten points on one polyp do not score ten hits.
- answers: exact-match accuracy (case, spaces and end punctuation ignored) and yes/no
  accuracy. BLEU, ROUGE, METEOR and chrF++ are in ``gi_sdk.train.text_metrics``.

>>> count_scores([2, 0, 1], [2, 1, 1])
{'n': 3, 'mae': 0.3333333333333333, 'mse': 0.3333333333333333, 'exact': 0.6666666666666666}
"""
from __future__ import annotations

import contextlib
import io
import re

import numpy as np

from gi_sdk.errors import require
from gi_sdk.geometry import box_iou, mask_iou

from .text_metrics import bleu, chrf_plus_plus, meteor, rouge, text_scores, wordnet_source

__all__ = ["POINT_RADIUS", "LOCALIZATION_IOU", "count_scores", "presence_accuracy", "normalize_answer",
           "accuracy", "yes_no", "yes_no_accuracy", "box_map", "mean_best_iou", "localization_accuracy",
           "seg_iou", "point_scores",
           # the text metrics, re-exported so that every metric is one import away
           "bleu", "chrf_plus_plus", "meteor", "rouge", "text_scores", "wordnet_source"]

#: A predicted point this close (pixels) to its true point is a match (MedMultiPoints).
POINT_RADIUS = 10.0
#: IoU at which a box localizes its object (the REC rule).
LOCALIZATION_IOU = 0.5


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def _boxes(b) -> np.ndarray:
    return np.asarray(b, np.float32).reshape(-1, 4)


def _points(p) -> np.ndarray:
    return np.asarray(p, np.float32).reshape(-1, 2)


# ------------------------------------------------------------------------------------ counts

def count_scores(predicted, true) -> dict:
    """``{"n", "mae", "mse", "exact"}`` of predicted vs true counts (None for no samples)."""
    p, t = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"got {p.size} predicted counts for {t.size} true counts")
    if not p.size:
        return {"n": 0, "mae": None, "mse": None, "exact": None}
    err = p - t
    return {"n": int(p.size), "mae": float(np.abs(err).mean()), "mse": float((err ** 2).mean()),
            "exact": float((err == 0).mean())}


def presence_accuracy(predicted, true) -> float | None:
    """Share of samples where "is there one?" gets the true yes/no (count > 0 vs count > 0)."""
    p, t = np.asarray(predicted) > 0, np.asarray(true) > 0
    if p.shape != t.shape:
        raise ValueError(f"got {p.size} predictions for {t.size} truths")
    return float((p == t).mean()) if p.size else None


# ----------------------------------------------------------------------------------- answers

_END_PUNCT = re.compile(r"[\s.!?]+$")


def normalize_answer(text: str) -> str:
    """Lower case, single spaces, no end punctuation: "Yes,  one polyp." -> "yes, one polyp"."""
    return _END_PUNCT.sub("", " ".join(str(text).lower().split()))


def accuracy(predicted, true) -> float | None:
    """Share of exact answers after ``normalize_answer`` (classification accuracy)."""
    predicted, true = list(predicted), list(true)
    if len(predicted) != len(true):
        raise ValueError(f"got {len(predicted)} predictions for {len(true)} truths")
    if not true:
        return None
    return float(np.mean([normalize_answer(p) == normalize_answer(t) for p, t in zip(predicted, true)]))


def yes_no(text: str) -> str | None:
    """"yes" / "no" when an answer starts with it, else None."""
    words = normalize_answer(text).replace(",", " ").split()
    return words[0] if words and words[0] in ("yes", "no") else None


def yes_no_accuracy(predicted, true) -> dict:
    """Over the samples whose true answer starts with yes or no: ``{"n", "accuracy"}``."""
    pairs = [(yes_no(p), yes_no(t)) for p, t in zip(predicted, true)]
    pairs = [(p, t) for p, t in pairs if t is not None]
    return {"n": len(pairs), "accuracy": _mean(p == t for p, t in pairs)}


# ------------------------------------------------------------------------------------- boxes

def _coco(images: list, annotations: list, categories: list):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def box_map(pred_boxes, pred_labels, true_boxes, true_labels) -> dict:
    """COCO ``{"map", "map50", "map75"}`` over samples, every prediction scored 1.

    Each argument is a list with one entry per sample: (N, 4) xyxy boxes and N labels (the
    category of each box). A category with no true box is left out, as COCO does; None when
    no category has one; 0.0 when there is truth but no prediction. With equal scores COCO
    ranks detections in the order given (a stable sort), so keep the model's output order.

    >>> box_map([[[0, 0, 10, 10]]], [["polyp"]], [[[0, 0, 10, 10]]], [["polyp"]])["map50"]
    1.0
    """
    if not len(pred_boxes) == len(pred_labels) == len(true_boxes) == len(true_labels):
        raise ValueError("box_map: one entry per sample in each of the four lists")
    require("pycocotools", "train")
    from pycocotools.cocoeval import COCOeval

    names = sorted({str(c) for labels in (*true_labels, *pred_labels) for c in labels})
    cat = {name: i + 1 for i, name in enumerate(names)}
    images, truth, dets = [], [], []
    for i, (pb, pl, tb, tl) in enumerate(zip(pred_boxes, pred_labels, true_boxes, true_labels), start=1):
        images.append({"id": i})
        pb, tb = _boxes(pb), _boxes(tb)
        if len(pb) != len(pl) or len(tb) != len(tl):
            raise ValueError(f"sample {i - 1}: boxes and labels differ in number")
        for box, label in zip(tb.tolist(), tl):
            w, h = max(box[2] - box[0], 0.0), max(box[3] - box[1], 0.0)
            # ids from 1: COCOeval reads a matched id of 0 as "unmatched"
            truth.append({"id": len(truth) + 1, "image_id": i, "category_id": cat[str(label)],
                          "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, label in zip(pb.tolist(), pl):
            w, h = max(box[2] - box[0], 0.0), max(box[3] - box[1], 0.0)
            dets.append({"id": len(dets) + 1, "image_id": i, "category_id": cat[str(label)],
                         "bbox": [box[0], box[1], w, h], "area": w * h, "score": 1.0, "iscrowd": 0})
    if not truth:
        return {"map": None, "map50": None, "map75": None}
    if not dets:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    categories = [{"id": i, "name": n} for n, i in cat.items()]
    gt, dt = _coco(images, truth, categories), _coco(images, dets, categories)
    evaluator = COCOeval(gt, dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # rounded: COCO's 101-point interpolation sums to 0.9999999999999999 for a perfect score
    ap, ap50, ap75 = (round(float(v), 10) for v in evaluator.stats[:3])
    undefined = lambda v: None if v < 0 else v  # noqa: E731  (COCO's -1: nothing to score)
    return {"map": undefined(ap), "map50": undefined(ap50), "map75": undefined(ap75)}


def mean_best_iou(pred_boxes, true_boxes) -> dict:
    """Per sample the mean over predicted boxes of their best IoU with a true box, averaged
    over samples; samples with no predicted or no true box are ``zero_cases`` (left out).

    Returns ``{"mean_best_iou", "n", "zero_cases"}``.
    """
    per_sample, zero = [], 0
    for pb, tb in zip(pred_boxes, true_boxes):
        pb, tb = _boxes(pb), _boxes(tb)
        if not len(pb) or not len(tb):
            zero += 1
            continue
        per_sample.append(float(box_iou(pb, tb).max(axis=1).mean()))
    return {"mean_best_iou": _mean(per_sample), "n": len(per_sample), "zero_cases": zero}


def localization_accuracy(pred_boxes, true_boxes, threshold: float = LOCALIZATION_IOU) -> dict:
    """The REC rule: a sample is right when its FIRST predicted box has IoU >= ``threshold``
    with a true box; no prediction is wrong. Samples without a true box are left out.

    Returns ``{"n", "accuracy"}``.
    """
    hits = []
    for pb, tb in zip(pred_boxes, true_boxes):
        pb, tb = _boxes(pb), _boxes(tb)
        if not len(tb):
            continue
        hits.append(bool(len(pb)) and float(box_iou(pb[:1], tb).max()) >= threshold)
    return {"n": len(hits), "accuracy": _mean(hits)}


# ------------------------------------------------------------------------------------- masks

def seg_iou(pred_masks, true_masks, categories) -> dict:
    """Seg-IoU of (H, W) bool masks, one per sample, grouped by category.

    A sample whose predicted and true masks are both empty scores 1 (nothing there, nothing
    drawn). Returns ``{"mean_iou": mean of the category means, "n", "per_category":
    {category: {"n", "mean_iou"}}}``.
    """
    by_cat: dict = {}
    for pm, tm, c in zip(pred_masks, true_masks, categories):
        pm, tm = np.asarray(pm, bool), np.asarray(tm, bool)
        iou = 1.0 if not pm.any() and not tm.any() else mask_iou(pm, tm)
        by_cat.setdefault(str(c), []).append(iou)
    per = {c: {"n": len(v), "mean_iou": float(np.mean(v))} for c, v in sorted(by_cat.items())}
    return {"mean_iou": _mean(v["mean_iou"] for v in per.values()), "n": sum(len(v) for v in by_cat.values()),
            "per_category": per}


# ------------------------------------------------------------------------------------ points

def point_scores(pred_points, true_points, radius: float = POINT_RADIUS) -> dict:
    """Point metrics over samples ((N, 2) predicted and (M, 2) true points each).

    Returns ``match_accuracy``, ``mean_distance``, ``rmse`` (MedMultiPoints: nearest true
    point per predicted point, averaged per sample then over samples), ``zero_cases``
    (samples with no predicted or no true points, left out of those averages), ``n`` (the
    samples averaged), and the one-to-one (Hungarian) ``match_accuracy_one_to_one`` and
    ``mean_distance_one_to_one``.

    >>> point_scores([[[0, 0], [50, 0]]], [[[3, 4]]])["match_accuracy"]
    0.5
    """
    from scipy.optimize import linear_sum_assignment

    acc, dist, rmse, acc11, dist11, zero = [], [], [], [], [], 0
    for pp, tp in zip(pred_points, true_points):
        pp, tp = _points(pp).astype(np.float64), _points(tp).astype(np.float64)
        if not len(pp) or not len(tp):
            zero += 1
            continue
        d = np.linalg.norm(pp[:, None, :] - tp[None, :, :], axis=2)   # (N, M)
        nearest = d.min(axis=1)
        acc.append(float((nearest <= radius).mean()))
        dist.append(float(nearest.mean()))
        rmse.append(float(np.sqrt((nearest ** 2).mean())))
        rows, cols = linear_sum_assignment(d)
        matched = d[rows, cols]
        acc11.append(float((matched <= radius).sum() / max(len(pp), len(tp))))
        dist11.append(float(matched.mean()))
    return {"n": len(acc), "zero_cases": zero, "match_accuracy": _mean(acc), "mean_distance": _mean(dist),
            "rmse": _mean(rmse), "match_accuracy_one_to_one": _mean(acc11),
            "mean_distance_one_to_one": _mean(dist11), "radius_px": radius}
