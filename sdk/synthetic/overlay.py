"""What the video processor burns into the picture: on-screen text and the green box.

Both sit mostly in the black area beside the field of view, as in Kvasir and PolypGen frames,
but at small or narrow frames they can cover part of the view. Each overlay therefore reports
the pixels it painted, so the truth can drop them from the object masks.
"""
from __future__ import annotations

import cv2
import numpy as np

from .scene import Segment

FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX_GREEN = (141, 184, 43)      # BGR of Kvasir's scope-position box


def _clock(seconds: int) -> str:
    seconds %= 24 * 3600
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _text_lines(seg: Segment, t: int, fps: float) -> list[str]:
    elapsed = int(t / fps)
    if seg.text_overlay == "timer":
        return [_clock(600 + 97 * seg.index + elapsed)]
    return ["ID:", "Name:", "", "Sex:     Age:", "D.O.B.:", seg.date,
            _clock(seg.clock + elapsed), "", "Eh:A1 Cm:1", "", "Comment:"]


def draw_text(frame: np.ndarray, seg: Segment, t: int, fps: float):
    """Patient/clock text at the top left. Returns (y0, y1, x0, x1, painted bool mask)."""
    h, w = frame.shape[:2]
    lines = _text_lines(seg, t, fps)
    scale = max(0.25, h * 0.017 / 22.0)          # Hershey simplex is ~22 px tall at scale 1
    thick = 1 if h < 900 else 2
    step = max(7, int(round(h * 0.03)))
    x0, y0 = max(1, int(w * 0.008)), max(1, int(h * 0.02))
    widths = [cv2.getTextSize(s, FONT, scale, thick)[0][0] for s in lines if s]
    bw = min(w - x0, max(widths) + 2 * thick + 2)
    bh = min(h - y0, step * len(lines) + step)
    mask = np.zeros((bh, bw), np.uint8)
    for j, s in enumerate(lines):
        if s:
            cv2.putText(mask, s, (0, step * (j + 1)), FONT, scale, 255, thick, cv2.LINE_AA)
    region = frame[y0:y0 + bh, x0:x0 + bw]
    alpha = mask.astype(np.float32)[..., None] / 255.0
    region[:] = (region * (1 - alpha) + np.array(seg.text_colour, np.float32) * alpha).astype(np.uint8)
    return y0, y0 + bh, x0, x0 + bw, mask >= 128


def draw_box(frame: np.ndarray):
    """Kvasir's green scope-position box at the bottom left. Returns its region and mask."""
    h, w = frame.shape[:2]
    bh = max(8, int(round(h * 0.26)))
    pw = max(4, int(round(bh * 0.62)))          # two panels side by side
    bw = min(w, 2 * pw)
    y0, x0 = h - bh, 0
    box = frame[y0:h, x0:x0 + bw]
    box[:] = BOX_GREEN
    lw = max(1, h // 400)
    cv2.line(box, (pw, 0), (pw, bh), (120, 160, 35), lw)
    for k in range(2):
        # a scope-shape sketch in each panel: the drawing differs, the layout does not
        xs = np.linspace(0.25, 0.7, 12) * pw + k * pw
        ys = bh * (0.9 - 0.6 * np.linspace(0, 1, 12) ** (1.5 + k)) + np.sin(np.linspace(0, 3, 12) + k) * bh * 0.05
        cv2.polylines(box, [np.stack([xs, ys], 1).astype(np.int32)], False, (20, 25, 20), lw, cv2.LINE_AA)
        icon = (int(pw * (0.5 + k)), max(2, int(bh * 0.12)))
        cv2.circle(box, icon, max(1, bh // 20), (60, 90, 30), -1, cv2.LINE_AA)
    return y0, h, x0, x0 + bw, np.ones((bh, bw), bool)


def draw_overlays(frame: np.ndarray, seg: Segment, t: int, fps: float) -> list:
    """Draw the segment's overlays onto ``frame``; return the painted regions."""
    painted = []
    if seg.text_overlay:
        painted.append(draw_text(frame, seg, t, fps))
    if seg.box_artifact:
        painted.append(draw_box(frame))
    return painted
