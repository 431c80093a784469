"""``IouTracker``: stable ids for boxes across frames, and how many distinct objects were seen.

Pure logic: boxes and labels in, ids out; no I/O, no clocks. A stream calls ``update`` once per
model result (not once per video frame), so "missed" and "hits" count model results. Tracks
move on at their recent speed while missed (constant velocity), so an object hidden for a few
results is found where it went.

>>> tracker = IouTracker(min_hits=1)
>>> tracker.update(np.array([[10, 10, 50, 50]], np.float32), ["polyp"]).tolist()
[1]
>>> tracker.update(np.array([[12, 11, 52, 51]], np.float32), ["polyp"]).tolist()
[1]
>>> tracker.seen
{'polyp': 1}

Hand-written on purpose: greedy IoU matching over ``gi_sdk.box_iou`` is a few lines of numpy,
while the maintained trackers (supervision's ByteTrack, norfair, motpy) would bring scipy,
filterpy or matplotlib into the device runtime, which is numpy + OpenCV only. Greedy matching
(highest IoU first) is what SORT-style IoU trackers do when objects are few and far apart, as
polyps and instruments in one endoscope view are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import box_iou

UNCONFIRMED = -1  # the id given to a detection whose track has not been seen ``min_hits`` times yet
# weight of the old speed when a new step is seen: detections jitter by a pixel or two, so one
# step alone is a poor speed; a smoothed one carries a track over a few missed results
VELOCITY_SMOOTHING = 0.7


def match_greedy(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) of an (N, M) IoU matrix, highest IoU first, each row and column used
    at most once, every pair's IoU >= ``threshold``.

    >>> match_greedy(np.array([[0.9, 0.5], [0.6, 0.1]]), 0.3)
    [(0, 0)]
    """
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= threshold)
    # stable sort so that equal IoUs are taken in index order: the same input gives the same ids
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_rows, used_cols, pairs = set(), set(), []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class Track:
    """One object followed across model results."""

    box: np.ndarray          # (4,) float32 xyxy, the last matched box
    label: str
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))   # box change per result
    hits: int = 1            # model results it was matched in
    missed: int = 0          # model results in a row it was not matched in
    id: int = UNCONFIRMED    # public id, given once ``hits`` reaches the tracker's ``min_hits``

    def predicted(self) -> np.ndarray:
        """Where the box should be now: the last box moved on at its recent speed (constant
        velocity, as SORT predicts, without its Kalman filter): an object missed for a few
        results while it moves is still found where it went, not where it was."""
        return self.box + self.velocity * (self.missed + 1)

    def matched(self, box: np.ndarray) -> None:
        step = (box - self.box) / (self.missed + 1)
        self.velocity = VELOCITY_SMOOTHING * self.velocity + (1 - VELOCITY_SMOOTHING) * step
        self.box, self.hits, self.missed = box.copy(), self.hits + 1, 0


class IouTracker:
    """Give detections stable ids across model results by box overlap, and count objects.

    iou_threshold: the least IoU between where a track's box should be now (its last box moved
        on at its recent speed) and a detection of the same label for them to be the same object.
    max_missed: how many model results in a row a track survives unmatched (an object hidden
        by a fold or missed by the model for a moment keeps its id).
    min_hits: how many matched results make a track real: only then it gets an id and counts
        in ``seen`` (one spurious detection does not add a polyp).
    start_score: the least instance score (``Result.scores``, ``gi_sdk.scores``) for a
        detection that matches no track to start a new one; a less sure detection can still
        continue a track (ByteTrack's rule: new tracks from sure detections only, existing ones
        kept alive by any). How sure is sure depends on the model, so a bundle may carry its
        own (manifest ``tracking``, ``gi-sdk export --track-start-score``), which
        ``Session.stream``'s default tracker takes: the built-in bundle carries the score where
        its distinct-polyp count comes closest to the truth on synthetic videos of seeds 8-15
        (``gi_sdk.train.track_start``, which any model with synthetic-like data can use). This default, 0.82, was chosen the same way for the built-in
        model's round 8 (mean error 1.25 polyps a video, against 14-23 at Ultralytics' 0.6).
        Tune it for your own model. 0: every detection may start a track. Scores not given to
        ``update``: every detection may.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, min_hits: int = 2,
                 start_score: float = 0.82):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0 or min_hits < 1:
            raise ValueError(f"need max_missed >= 0 and min_hits >= 1, got {max_missed}, {min_hits}")
        if not 0.0 <= start_score <= 1.0:
            raise ValueError(f"start_score must be a score in [0, 1], got {start_score}")
        self.iou_threshold, self.max_missed, self.min_hits = float(iou_threshold), int(max_missed), int(min_hits)
        self.start_score = float(start_score)
        self.tracks: list[Track] = []
        self.seen: dict[str, int] = {}   # label -> distinct confirmed tracks so far
        self._next_id = 1

    def update(self, boxes, labels, scores=None) -> np.ndarray:
        """Match one result's instances to the tracks; return their ids, (N,) int64.

        scores: (N,) instance scores (``Result.scores``), or None. A detection on a track that
        is not confirmed yet, or on no track and either below ``start_score`` or overlapping a
        track matched in this result by ``iou_threshold`` (a second box on that object), gets
        ``UNCONFIRMED`` (-1).
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = list(labels)
        if len(labels) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
        if scores is not None and len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        ids = np.full(len(boxes), UNCONFIRMED, np.int64)
        matched, taken = set(), set()   # track indices, detection indices
        if self.tracks and len(boxes):
            iou = box_iou(np.stack([t.predicted() for t in self.tracks]).astype(np.float32), boxes)
            same = np.array([[t.label == lab for lab in labels] for t in self.tracks])
            for ti, di in match_greedy(np.where(same, iou, 0.0), self.iou_threshold):
                track = self.tracks[ti]
                track.matched(boxes[di])
                self._confirm(track)
                ids[di] = track.id
                matched.add(ti)
                taken.add(di)
        for ti, track in enumerate(self.tracks):
            if ti not in matched:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        # a second box on a tracked object (generative detectors write near-duplicates now and
        # then) overlaps its track as much as a match would need: it starts no new object
        live = [t for t in self.tracks if t.missed == 0]
        live_boxes = np.stack([t.box for t in live]).astype(np.float32) if live else None
        for di in range(len(boxes)):
            if di in taken or (scores is not None and scores[di] < self.start_score):
                continue
            same = [k for k, t in enumerate(live) if t.label == labels[di]]
            if same and box_iou(boxes[di:di + 1], live_boxes[same]).max() >= self.iou_threshold:
                continue
            track = Track(boxes[di].copy(), labels[di])
            self._confirm(track)
            ids[di] = track.id
            self.tracks.append(track)
        return ids

    def _confirm(self, track: Track) -> None:
        if track.id == UNCONFIRMED and track.hits >= self.min_hits:
            track.id = self._next_id
            self._next_id += 1
            self.seen[track.label] = self.seen.get(track.label, 0) + 1

    def reset(self) -> None:
        """Forget every track and count (a new video)."""
        self.tracks, self.seen, self._next_id = [], {}, 1
