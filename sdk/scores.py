"""Per-instance probability: which generated tokens make each instance of a Result, and how
sure the model was of them.

An instance's score is the geometric mean of the probabilities the model gave its tokens:
its label tokens, and its location tokens read as places, not exact bins (a Session passes
``Generation.token_scores``: for a location token, the probability of the bins within
``gi_sdk.generate.LOCATION_WINDOW`` of it; all from the model's unmasked distribution). A
place and not a bin because a model taught locations softly spreads even a sure coordinate
over a dozen neighbouring bins, so the exact bin's probability says little (the built-in
model's never passed ~0.07, for good boxes and false ones alike). The geometric mean (``exp`` of the mean log-probability) and not the
product: a product shrinks with every token, so a 30-point polygon or a three-word label would
score far below a one-word box for its length alone; the per-token mean keeps scores of
instances of any length on one scale, in [0, 1], as length-normalised sequence scores do.
Boxes that share a label (``polyp<loc>x4<loc>x4``) each count that label's tokens.

The tokens of an instance are found from the ids, not from text: its location tokens are the
run of ``<loc_N>`` tokens whose bins are the instance's (re-quantized from the Result's bin
centres, which round-trip exactly), taken in order after the previous instance's; its label
tokens are the text tokens right before the run of location and polygon tokens that holds
them (the label the parsers read). Under a grammar (``gi_sdk.grammar``) every location token
belongs to exactly one instance, in order, so the match is exact; on unconstrained output it
is the first such run after the previous instance.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import tasks as T
from .locations import NUM_BINS, quantize
from .token_grammar import DROP, HAZARD, LOC, POLY, POLY_END, SEP, TEXT

_STRUCTURE = np.zeros(256, np.int8)  # 0 other, 1 location / polygon structure, 2 text, -1 dropped
_STRUCTURE[[LOC, SEP, POLY, POLY_END]] = 1
_STRUCTURE[[TEXT, HAZARD]] = 2
_STRUCTURE[DROP] = -1


def instance_scores(result, token_ids, token_probs, vocab) -> np.ndarray:
    """(N,) float32 scores in [0, 1], aligned with ``result``'s instances.

    result: the ``Result`` decoded from ``token_ids``; token_probs: (T,) what each token counts
    (``Generation.token_scores``, or the chosen tokens' probabilities); vocab: the tokenizer's
    ``gi_sdk.token_decoder.TokenVocab``.
    """
    n = len(result)
    if n == 0:
        return np.zeros(0, np.float32)
    ids = np.asarray(token_ids, np.int64)
    logp = np.log(np.maximum(np.asarray(token_probs, np.float64), 1e-300))
    size = len(vocab.classes)
    cls = np.where((ids >= 0) & (ids < size), vocab.classes[np.clip(ids, 0, size - 1)], DROP)
    kind = _STRUCTURE[cls]
    # the parsers' view: dropped tokens (<s>, </s>, <pad>) removed, then runs of one kind
    kept = np.flatnonzero(kind >= 0)
    k = kind[kept]
    change = np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, bool)
    segment = np.cumsum(change) - 1
    seg_start = np.r_[np.flatnonzero(change), len(k)]
    is_loc = cls[kept] == LOC
    loc_at = np.flatnonzero(is_loc)                     # indices into kept
    loc_bins = ids[kept[loc_at]] - vocab.loc_begin
    # consecutive <loc> tokens (nothing between them once dropped tokens are gone) share a run
    loc_run = np.cumsum(np.r_[True, np.diff(loc_at) != 1]) if len(loc_at) else loc_at

    out = np.zeros(n, np.float32)
    cursor, kinds = 0, _instance_kinds(result)
    for i in range(n):
        if i and kinds[i] != kinds[i - 1]:
            cursor = 0
        tokens, first = [], None
        for bins in _instance_bins(result, i, kinds[i]):
            at = _find(loc_bins, loc_run, bins, cursor)
            if at is None:
                break
            first = at if first is None else first
            tokens.extend(kept[loc_at[at:at + len(bins)]].tolist())
            cursor = at + len(bins)
        if first is None:
            continue  # no run of its bins (not seen on parser output): score 0
        s = segment[loc_at[first]]
        if s > 0 and k[seg_start[s - 1]] == 2:
            tokens.extend(kept[seg_start[s - 1]:seg_start[s]].tolist())
        out[i] = np.exp(logp[tokens].mean())
    return np.clip(out, 0.0, 1.0)


def _instance_kinds(result) -> list:
    """"polygon", "point" or "box" per instance (``gi_sdk.decode.build_result``'s layout)."""
    polygons = result.polygons or [[]] * len(result)
    point_task = T.TASKS.get(result.task) is not None and T.TASKS[result.task].output == T.POINTS
    return ["polygon" if parts else ("point" if point_task else "box") for parts in polygons]


def _instance_bins(result, i: int, kind: str) -> list:
    """The location-bin sequences (x, y, x, y, ...) the instance was read from."""
    size = result.image_size
    if kind == "polygon":
        return [quantize(np.asarray(p, np.float32).reshape(-1, 2), size).ravel() for p in result.polygons[i]]
    if kind == "point":
        return [quantize(result.points[i].reshape(1, 2), size).ravel()]
    return [quantize(result.boxes[i].reshape(2, 2), size).ravel()]


def _find(loc_bins: np.ndarray, loc_run: np.ndarray, bins: np.ndarray, start: int):
    """First index >= start (else the first anywhere) where ``bins`` follow each other in one run."""
    m = len(bins)
    if m == 0 or m > len(loc_bins) or np.any(bins >= NUM_BINS):
        return None
    windows = sliding_window_view(loc_bins, m)
    same_run = loc_run[m - 1:] == loc_run[:len(loc_run) - m + 1]
    hits = np.flatnonzero(np.all(windows == bins, axis=1) & same_run)
    if not len(hits):
        return None
    after = hits[hits >= start]
    return int(after[0] if len(after) else hits[0])
