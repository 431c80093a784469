"""Ground truth of one synthetic frame: what is visible, where, and what it is."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# size class by visible area as a fraction of the field of view: at a typical working distance
# the view spans about 5 cm, so 1 % of it is a polyp of about 5 mm and 4 % about 10 mm
SIZE_LIMITS = ((0.01, "small"), (0.04, "medium"), (float("inf"), "large"))
SIZE_WORDS = {"small": "small, under about 5 mm", "medium": "medium, about 5 to 10 mm",
              "large": "large, over about 10 mm"}


def size_class(fraction: float) -> str:
    """'small', 'medium' or 'large' for a visible area ``fraction`` of the field of view."""
    return next(name for limit, name in SIZE_LIMITS if fraction < limit)


def region(box, fov) -> str:
    """Where a box's centre lies in the field of view, as a Kvasir-VQA location word.

    The disc is cut into a 3 x 3 grid at +-1/3 of the radius: "upper-left", "upper-center",
    "upper-right", "center-left", "center", "center-right", "lower-left", ... .
    """
    cx, cy, r = fov
    x = ((box[0] + box[2]) / 2 - cx) / r
    y = ((box[1] + box[3]) / 2 - cy) / r
    col = "left" if x < -1 / 3 else "right" if x > 1 / 3 else "center"
    row = "upper" if y < -1 / 3 else "lower" if y > 1 / 3 else "center"
    if row == col == "center":
        return "center"
    return f"{row}-{col}" if row != "center" else f"center-{col}"


@dataclass
class Truth:
    """What a synthetic frame shows. Per instance (all lists and arrays in the same order):

    - ``boxes``: (N, 4) float32 xyxy pixel edges, tight around the visible mask
      (x1 = last column + 1, so width = x1 - x0).
    - ``masks``: (N, H, W) bool, the visible pixels only (inside the field of view, not
      hidden by a fold, an instrument or an overlay).
    - ``labels``: "polyp" or "instrument"; ``kinds``: "sessile", "pedunculated", "forceps",
      "snare"; ``colours``: "pink", "red", "pale", "orange" (polyps), "grey", "white"
      (instruments); ``size_classes``: "small", "medium", "large" by ``areas``, the visible
      area as a fraction of the field of view; ``track_ids``: stable over the frames of a
      segment, so trackers can be scored.

    Per frame: ``text_overlay`` and ``box_artifact`` (burned-in text, Kvasir's green box),
    ``fov`` = (cx, cy, r) of the round field of view in pixels, ``frame_index``, ``segment``.
    """

    boxes: np.ndarray
    masks: np.ndarray
    labels: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    colours: list = field(default_factory=list)
    size_classes: list = field(default_factory=list)
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    track_ids: list = field(default_factory=list)
    text_overlay: bool = False
    box_artifact: bool = False
    fov: tuple = (0.0, 0.0, 0.0)
    frame_index: int = 0
    segment: int = 0

    @classmethod
    def empty(cls, height: int, width: int, **frame_fields) -> "Truth":
        """A truth with no instances (real (0, 4) and (0, H, W) arrays)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, height, width), bool), **frame_fields)

    def __len__(self) -> int:
        return len(self.labels)

    def count(self, label: str) -> int:
        """Number of instances with this label ("polyp" or "instrument")."""
        return sum(1 for x in self.labels if x == label)

    def regions(self) -> list:
        """Location word of each instance (see :func:`region`)."""
        return [region(b, self.fov) for b in self.boxes]

    def to_json(self) -> dict:
        """Everything but the masks, as plain JSON types."""
        return {
            "boxes": [[round(float(v), 1) for v in b] for b in self.boxes],
            "labels": list(self.labels), "kinds": list(self.kinds), "colours": list(self.colours),
            "size_classes": list(self.size_classes),
            "areas": [round(float(a), 5) for a in self.areas],
            "regions": self.regions(), "track_ids": [int(t) for t in self.track_ids],
            "text_overlay": bool(self.text_overlay), "box_artifact": bool(self.box_artifact),
            "fov": [round(float(v), 2) for v in self.fov],
            "frame_index": int(self.frame_index), "segment": int(self.segment),
        }
