"""``Result``: one dataclass for what every task returns.

In the spirit of supervision's ``Detections``: instance arrays with validated shapes,
``len(r)`` is the number of instances, empty results are real empty arrays (never None),
and a boolean mask selects instances (``r[r.labels_array == "polyp"]``).

Instances are aligned across fields: instance ``i`` has ``boxes[i]`` (xyxy, pixels of the
ORIGINAL frame, float bin centres), ``labels[i]``, ``points[i]`` and ``polygons[i]``.
Detection tasks fill boxes (points are the box centres); segmentation fills polygons
(boxes are their bounding boxes, points their centroids); pointing fills points (boxes
are the degenerate ``x, y, x, y``), so every instance can be drawn or tracked the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _empty_points() -> np.ndarray:
    return np.zeros((0, 2), np.float32)


@dataclass
class Result:
    """What a Session call returns.

    task: the task name (``"ask"``, ``"detect"``, ``"segment"``, ...).
    answer: the answer text (special tokens removed); for localization tasks the label text.
    boxes: (N, 4) float32 xyxy in frame pixels.
    labels: N label strings.
    polygons: N lists of (K, 2) float32 arrays (an instance may have several parts).
    points: (N, 2) float32 in frame pixels.
    count: the number the task yields: instances for detect/segment/count/point, the
        number stated in the answer for ``ask`` (None when it states none).
    confidence: mean over generated tokens of the top-5 probability mass (the seed
        paper's answer confidence), in [0, 1].
    raw_text: the decoded model output, special tokens kept.
    token_ids: the generated token ids.
    image_size: (width, height) of the frame the coordinates refer to.
    timings: milliseconds per stage (preprocess, vision, encode, generate, decode, total).
    scores: (N,) float32 in [0, 1], one probability per instance (``gi_sdk.scores``: the
        geometric mean of the probabilities of its label and location tokens); empty when
        not known.
    abstained: True when the Session was told to abstain below a confidence
        (``Session(..., abstain_below=0.5)``) and this result's confidence is lower: what the
        model said is kept for inspection, but the result says not to act on it.
    parse_failed: True when the model's answer could not be read in the task's format (a
        JSON answer that does not parse): no instances, ``count`` None, ``answer`` and
        ``raw_text`` keep what the model wrote.
    """

    task: str
    answer: str = ""
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    labels: list = field(default_factory=list)
    polygons: list = field(default_factory=list)
    points: np.ndarray = field(default_factory=_empty_points)
    count: int | None = None
    confidence: float = 0.0
    raw_text: str = ""
    token_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    image_size: tuple = (0, 0)
    timings: dict = field(default_factory=dict)
    explanation: str | None = None
    abstained: bool = False
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    parse_failed: bool = False

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4) if len(self.boxes) else _empty_boxes()
        self.points = np.asarray(self.points, np.float32).reshape(-1, 2) if len(self.points) else _empty_points()
        self.labels = list(self.labels)
        self.polygons = [[np.asarray(p, np.float32).reshape(-1, 2) for p in parts] for parts in self.polygons]
        n = len(self.boxes)
        if len(self.labels) != n or len(self.points) != n:
            raise ValueError(
                f"Result instances disagree: {n} boxes, {len(self.labels)} labels, {len(self.points)} points"
            )
        if self.polygons and len(self.polygons) != n:
            raise ValueError(f"Result has {len(self.polygons)} polygon instances for {n} boxes")
        self.scores = np.asarray(self.scores, np.float32).reshape(-1) if len(self.scores) else np.zeros(0, np.float32)
        if len(self.scores) and len(self.scores) != n:
            raise ValueError(f"Result has {len(self.scores)} scores for {n} instances")
        if not np.all((self.scores >= 0) & (self.scores <= 1)):
            raise ValueError(f"Result scores must be probabilities in [0, 1], got {self.scores}")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> "Result":
        """Select instances with a boolean mask, an index array or a slice."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return replace(
            self,
            boxes=self.boxes[idx],
            points=self.points[idx],
            labels=[self.labels[i] for i in idx],
            polygons=[self.polygons[i] for i in idx] if self.polygons else [],
            scores=self.scores[idx] if len(self.scores) else self.scores,
            count=len(idx) if self.count is not None and self.task != "ask" else self.count,
        )

    @property
    def labels_array(self) -> np.ndarray:
        """Labels as a numpy string array, for boolean filtering."""
        return np.asarray(self.labels, dtype=str)

    def masks(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Rasterize the polygons to (N, H, W) bool masks at frame size (OpenCV fillPoly)."""
        import cv2

        w, h = self.image_size if width is None or height is None else (width, height)
        out = np.zeros((len(self), h, w), bool)
        for i, parts in enumerate(self.polygons or [[] for _ in range(len(self))]):
            canvas = np.zeros((h, w), np.uint8)
            pts = [np.round(p - 0.5).astype(np.int32) for p in parts if len(p) >= 3]
            if pts:
                cv2.fillPoly(canvas, pts, 1)
            out[i] = canvas.astype(bool)
        return out

    @classmethod
    def empty(cls, task: str, image_size=(0, 0)) -> "Result":
        """A result with no instances."""
        return cls(task=task, image_size=tuple(image_size))

    def to_dict(self) -> dict:
        """A JSON-serializable dict (for logs and the JSON Lines stream log)."""
        return {
            "task": self.task,
            "answer": self.answer,
            "explanation": self.explanation,
            "boxes": self.boxes.round(2).tolist(),
            "labels": self.labels,
            "polygons": [[p.round(2).tolist() for p in parts] for parts in self.polygons],
            "points": self.points.round(2).tolist(),
            "count": self.count,
            "confidence": round(float(self.confidence), 4),
            "scores": self.scores.round(4).tolist(),
            "abstained": self.abstained,
            "parse_failed": self.parse_failed,
            "image_size": list(self.image_size),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
