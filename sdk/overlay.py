"""Drawing results on frames: boxes, translucent polygon fills, labels, answer, HUD.

Only the pixels under markers change; the rest of the frame is left as it came (the FDA's
GI CADe controls ask for image quality unchanged outside the markers).
"""
from __future__ import annotations

import cv2
import numpy as np

from .result import Result

#: BGR colour per label (others get a colour from their hash).
LABEL_COLOURS = {"polyp": (60, 255, 60), "instrument": (255, 200, 40)}


def colour_for(label: str) -> tuple:
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    h = abs(hash(label)) % 180
    hsv = np.uint8([[[h, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _text(img, text, org, scale, colour=(255, 255, 255)):
    """Text with a dark outline, legible on any background."""
    thick = max(1, int(round(scale * 2)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def draw_result(frame: np.ndarray, result: Result, alpha: float = 0.35, copy: bool = True) -> np.ndarray:
    """Draw ``result`` on a BGR ``frame`` (a copy unless ``copy=False``) and return it."""
    out = frame.copy() if copy else frame
    h, w = out.shape[:2]
    scale = max(0.5, w / 1600)
    if any(len(parts) for parts in result.polygons):
        fill = out.copy()
        for parts, label in zip(result.polygons, result.labels):
            pts = [np.round(p - 0.5).astype(np.int32) for p in parts if len(p) >= 3]
            if pts:
                cv2.fillPoly(fill, pts, colour_for(label))
                cv2.polylines(out, pts, True, colour_for(label), max(1, int(scale * 2)), cv2.LINE_AA)
        touched = np.any(fill != out, axis=2)
        out[touched] = cv2.addWeighted(fill, alpha, out, 1 - alpha, 0)[touched]
    for box, label in zip(result.boxes, result.labels):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = colour_for(label)
        if x2 - x1 < 2 and y2 - y1 < 2:  # a point
            cv2.drawMarker(out, (x1, y1), colour, cv2.MARKER_CROSS, int(20 * scale), max(1, int(scale * 2)))
        else:
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, max(1, int(scale * 3)), cv2.LINE_AA)
        _text(out, label or "?", (x1, max(int(18 * scale), y1 - 6)), 0.6 * scale, colour)
    if result.answer and result.task in ("ask", "explain", "caption"):
        _text(out, result.answer[:90], (int(20 * scale), h - int(20 * scale)), 0.7 * scale)
    return out


def draw_hud(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Write status lines (fps, delays, counts) in the top-left corner, in place."""
    scale = max(0.5, frame.shape[1] / 1600)
    for i, line in enumerate(lines):
        _text(frame, line, (int(16 * scale), int((30 + 30 * i) * scale)), 0.6 * scale, (200, 255, 255))
    return frame
