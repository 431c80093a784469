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
#: How an instance the tracker has not confirmed (track id -1) is drawn: "faint" (a 1-pixel
#: outline, no fill, no caption), "hide" (not at all) or "show" (like a tracked one, without an
#: id). On `make demo`'s video every box off a polyp was unconfirmed (55 of 55, round 18's
#: bundle), against 34 of the 300 on it (a polyp's first frames, before its track is
#: confirmed): "faint" keeps the model's every output on screen, the false alarms quiet.
UNCONFIRMED_STYLES = ("faint", "hide", "show")


def colour_for(label: str) -> tuple:
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    h = abs(hash(label)) % 180
    hsv = np.uint8([[[h, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_RING = np.ones((3, 3), np.uint8)


def _text(img, text, org, scale, colour=(255, 255, 255)):
    """Text with a dark outline, legible on any background.

    The outline is the text's own coverage grown by one pixel, not the text drawn again with a
    thicker stroke: OpenCV 5 advances its glyphs by stroke weight, so a thicker copy drifts
    off the text (a label's figures doubled)."""
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    pad = thick + 2
    x, y = int(org[0]), int(org[1])
    x0, y0 = x - pad, y - th - pad                   # the text's box, in image coordinates
    mask = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(mask, text, (pad, th + pad), _FONT, scale, 255, thick, cv2.LINE_AA)
    h, w = img.shape[:2]
    ix0, iy0 = max(x0, 0), max(y0, 0)                 # the part of that box inside the image
    ix1, iy1 = min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    cut = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    ink = mask[cut].astype(np.float32)[..., None] / 255.0
    halo = cv2.dilate(mask, _RING)[cut].astype(np.float32)[..., None] / 255.0
    roi = img[iy0:iy1, ix0:ix1].astype(np.float32) * (1.0 - halo)   # dark ring under the text
    roi = roi * (1.0 - ink) + np.asarray(colour, np.float32) * ink
    img[iy0:iy1, ix0:ix1] = np.clip(roi + 0.5, 0, 255).astype(img.dtype)


def instance_caption(label: str, confidence: float | None = None, track_id: int | None = None) -> str:
    """The text next to an instance: ``"polyp #3 0.87"`` (id when tracked, confidence when known)."""
    text = label or "?"
    if track_id is not None and track_id >= 0:
        text += f" #{track_id}"
    if confidence is not None:
        text += f" {confidence:.2f}"
    return text


def draw_result(frame: np.ndarray, result: Result, alpha: float = 0.35, copy: bool = True,
                track_ids=None, show_confidence: bool = True, unconfirmed: str = "faint") -> np.ndarray:
    """Draw ``result`` on a BGR ``frame`` (a copy unless ``copy=False``) and return it.

    Boxes, translucent polygon fills (``alpha``), and a caption per instance: label, tracker id
    (``track_ids`` aligned with the instances) and the instance's score (``result.scores``; the
    result's confidence when it has none). An instance whose id is -1 (not confirmed by the
    tracker) is drawn as ``unconfirmed`` says (``UNCONFIRMED_STYLES``); without ``track_ids``
    every instance is drawn in full.
    """
    if unconfirmed not in UNCONFIRMED_STYLES:
        raise ValueError(f"unconfirmed={unconfirmed!r}: give one of {', '.join(UNCONFIRMED_STYLES)}")
    out = frame.copy() if copy else frame
    h, w = out.shape[:2]
    scale = max(0.5, w / 1600)
    ids = [None] * len(result) if track_ids is None else [int(i) for i in track_ids]
    # per instance: None (full), "faint" or "hide"
    styles = [unconfirmed if i == -1 and unconfirmed != "show" else None for i in ids]
    thin = 1
    if any(len(parts) for parts in result.polygons):
        fill = out.copy()
        for parts, label, style in zip(result.polygons, result.labels, styles):
            pts = [np.round(p - 0.5).astype(np.int32) for p in parts if len(p) >= 3]
            if pts and style != "hide":
                if style is None:
                    cv2.fillPoly(fill, pts, colour_for(label))
                width = thin if style == "faint" else max(1, int(scale * 2))
                cv2.polylines(out, pts, True, colour_for(label), width, cv2.LINE_AA)
        touched = np.any(fill != out, axis=2)
        out[touched] = cv2.addWeighted(fill, alpha, out, 1 - alpha, 0)[touched]
    scores = result.scores.tolist() if len(result.scores) == len(result) else [float(result.confidence)] * len(result)
    for box, label, track_id, score, style in zip(result.boxes, result.labels, ids, scores, styles):
        if style == "hide":
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = colour_for(label)
        width = thin if style == "faint" else max(1, int(scale * 3))
        if x2 - x1 < 2 and y2 - y1 < 2:  # a point
            cv2.drawMarker(out, (x1, y1), colour, cv2.MARKER_CROSS, int(20 * scale), width)
        else:
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, width, cv2.LINE_AA)
        if style is None:
            caption = instance_caption(label, score if show_confidence else None, track_id)
            _text(out, caption, (x1, max(int(18 * scale), y1 - 6)), 0.6 * scale, colour)
    if result.answer and result.task in ("ask", "explain", "caption"):
        draw_answer(out, result.answer)
    return out


def draw_answer(frame: np.ndarray, answer: str, question: str | None = None) -> np.ndarray:
    """Write an answer (after its question, when given) along the bottom edge, in place."""
    h, w = frame.shape[:2]
    scale = max(0.5, w / 1600)
    text = f"Q: {question}  A: {answer}" if question else answer
    _text(frame, text[:110], (int(20 * scale), h - int(20 * scale)), 0.7 * scale)
    return frame


def draw_hud(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Write status lines (fps, delays, counts) in the top-left corner, in place."""
    scale = max(0.5, frame.shape[1] / 1600)
    for i, line in enumerate(lines):
        _text(frame, line, (int(16 * scale), int((30 + 30 * i) * scale)), 0.6 * scale, (200, 255, 255))
    return frame


#: tasks whose result is text to show, not instances to draw
_TEXT_TASKS = ("ask", "explain", "caption", "detailed_caption", "more_detailed_caption", "ocr")


def draw_stream_frame(fr, hud: list[str] = (), question: str | None = None, alpha: float = 0.35,
                      show_confidence: bool = True, unconfirmed: str = "faint") -> np.ndarray:
    """A ``gi_sdk.stream.StreamFrame`` with its overlay, on a copy of its frame: the latest
    result with tracker ids (instances the tracker has not confirmed drawn as ``unconfirmed``
    says: ``UNCONFIRMED_STYLES``), the latest answer (after ``question``), the distinct objects
    seen so far and the ``hud`` lines (fps, delays) in the corner."""
    out = fr.frame.copy()
    if fr.result is not None:
        if fr.result.task in _TEXT_TASKS:
            draw_answer(out, fr.result.answer)
        else:
            draw_result(out, fr.result, alpha, copy=False, track_ids=fr.track_ids, show_confidence=show_confidence,
                        unconfirmed=unconfirmed)
    if fr.answer is not None:
        draw_answer(out, fr.answer.answer or "(no answer)", question)
    seen = ", ".join(f"{label} {n}" for label, n in sorted(fr.seen.items()))
    draw_hud(out, [*hud, f"distinct seen: {seen or 'none yet'}"])
    return out
