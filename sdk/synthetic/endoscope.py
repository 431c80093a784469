"""SyntheticEndoscope: frames and exact truth, rendered on demand from a seed.

A frame is an affine cut (pan, zoom, roll along the segment's camera path) of the segment's
pre-painted texture, times a fixed vignette that also blacks out everything outside the round
field of view, plus the instrument and the burned-in overlays. The polyp labels are cut from
the label texture with the same transform (nearest neighbour), so truth and picture agree.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from .instrument import draw_instrument
from .overlay import draw_overlays
from .scene import TEXTURE_HALF, Segment, Timeline, sample_segment
from .texture import SegmentTexture, build_texture
from .truth import Truth, size_class

MAX_TEXTURE = 2000              # texture side cap in pixels: bounds paint time and memory
INSTRUMENT_TRACK = 15           # track id slot of the instrument within a segment
PREFETCH_FRAMES = 90            # frame() starts painting the next segment this early
_PAINTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gi_sdk-synthetic")


@dataclass
class _View:
    """Per-segment screen geometry: the field of view and its vignette."""

    fov: tuple                  # (cx, cy, r) in frame pixels
    roi: tuple                  # (y0, y1, x0, x1): the part of the frame the view can cover
    gain: np.ndarray            # (h, w, 4) uint8 vignette, 0 outside the view (BGRA, as the texture)
    inside: np.ndarray          # (h, w) bool field of view
    area: int                   # pixels in the field of view


class SyntheticEndoscope:
    """A deterministic synthetic colonoscopy video.

    Example::

        scope = SyntheticEndoscope(seed=3, width=640, height=480)
        frame, truth = scope.frame(120)      # HxWx3 uint8 BGR, Truth
        truth.count("polyp"), truth.boxes    # how many polyps, their (N, 4) xyxy boxes

    Frame ``i`` depends only on ``(seed, i, width, height)``: frames can be asked for in any
    order. The video is a chain of segments of 150-300 frames; within a segment the camera moves
    smoothly and objects persist, between segments the scene cuts to another stretch of colon.
    The scene is defined relative to the field-of-view radius, so one seed shows the same
    colon (folds, objects, camera path) at every resolution; only fine texture differs.
    """

    def __init__(self, seed: int = 0, width: int = 1920, height: int = 1080, fps: float = 30.0,
                 min_visible_px: int | None = None):
        if width < 32 or height < 32:
            raise ValueError(f"frame size must be at least 32x32, got {width}x{height}")
        self.seed, self.width, self.height, self.fps = int(seed), int(width), int(height), float(fps)
        # the largest field of view any segment uses (segments vary it, see scene.fov_size)
        self.radius = min(0.68 * height, 0.495 * width)
        # texture pixels per world unit: as fine as the screen, unless that is too big to paint
        self.px = min(self.radius, MAX_TEXTURE / (2 * TEXTURE_HALF))
        self.min_visible_px = min_visible_px
        self._timeline = Timeline(self.seed)
        self._cache: OrderedDict = OrderedDict()
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()     # the timeline and caches are shared with the painter

    # ------------------------------------------------------------------ segments
    def segment_range(self, i: int) -> tuple[int, int]:
        """(first, last + 1) frame index of the segment holding frame ``i``."""
        with self._lock:
            _, start, length = self._timeline.locate(i)
        return start, start + length

    def segment(self, i: int) -> Segment:
        """The scene description of the segment holding frame ``i``."""
        return self._prepared(i)[0]

    def describe_segment(self, i: int) -> Segment:
        """The scene description of the segment holding frame ``i`` without painting it (the
        same ``Segment`` as ``segment(i)``; milliseconds instead of the ~0.2 s a painting
        takes): to choose scenes, e.g. by how many polyps they hold, before rendering any."""
        with self._lock:
            k, start, length = self._timeline.locate(i)
        return sample_segment(self.seed, k, start, length)

    def _prepared(self, i: int):
        with self._lock:
            k, start, length = self._timeline.locate(i)
            if k in self._cache:
                self._cache.move_to_end(k)
                return self._cache[k]
            pending = self._pending.pop(k, None)
        entry = pending.result() if pending is not None else self._build(k, start, length)
        with self._lock:
            self._cache[k] = entry
            while len(self._cache) > 2:   # the current segment and the one a seek came from
                self._cache.popitem(last=False)
        return entry

    def _build(self, k: int, start: int, length: int):
        seg = sample_segment(self.seed, k, start, length)
        return seg, build_texture(seg, self.px), self._view(seg)

    def _prefetch(self, i: int) -> None:
        """Start painting the segment holding frame ``i`` in the background."""
        with self._lock:
            k, start, length = self._timeline.locate(i)
            if k in self._cache or k in self._pending:
                return
            self._pending.clear()     # at most one look-ahead: seeking must not pile them up
            self._pending[k] = _PAINTER.submit(self._build, k, start, length)

    def _view(self, seg: Segment) -> _View:
        h, w = self.height, self.width
        r = min(seg.fov_size * h, 0.495 * w)
        room = max(0.0, w / 2 - r - 0.015 * w)
        cx, cy = w / 2 + seg.fov_shift * room - 0.5, h / 2 - 0.5
        y0, y1 = max(0, int(cy - r)), min(h, int(math.ceil(cy + r)) + 1)
        x0, x1 = max(0, int(cx - r)), min(w, int(math.ceil(cx + r)) + 1)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        d = np.sqrt(xs * xs + ys * ys)
        cover = np.clip(r - d + 0.5, 0, 1)
        if seg.fov_shape == "octagon":
            # the regular octagon inscribed in the circle: flat sides, cut corners
            side = np.minimum(0.924 * r - np.abs(xs), 0.924 * r - np.abs(ys)) + 0.5
            diag = (1.307 * r - np.abs(xs) - np.abs(ys)) / math.sqrt(2) + 0.5
            cover = np.minimum(cover, np.clip(np.minimum(side, diag), 0, 1))
        inside = cover >= 0.5
        # strong falloff towards the rim, and a little brighter on the light guide's side
        side = math.radians(40 + 97 * seg.index % 360)
        tilt = 1.0 + 0.08 * (xs * math.cos(side) + ys * math.sin(side)) / r
        vignette = (1.0 - 0.62 * (d / r) ** 2.2) * tilt * np.minimum(cover * 1.0, 1.0)
        gain = np.where(inside, np.clip(vignette * 255, 0, 255), 0).astype(np.uint8)
        return _View((cx, cy, r), (y0, y1, x0, x1), cv2.merge([gain] * 4), inside, int(inside.sum()))

    # ------------------------------------------------------------------ frames
    def frame(self, i: int) -> tuple[np.ndarray, Truth]:
        """Frame ``i`` as (HxWx3 uint8 BGR image, Truth).

        Played in order, the next segment is painted on a background thread some frames
        before the cut, so the cut does not stall the stream.
        """
        seg, tex, view = self._prepared(i)
        if seg.start + seg.length - i == PREFETCH_FRAMES:
            self._prefetch(seg.start + seg.length)
        t = i - seg.start
        y0, y1, x0, x1 = view.roi
        rh, rw = y1 - y0, x1 - x0
        m = self._transform(seg, tex, view, t)
        # the texture is BGRA: OpenCV warps 4 channels about twice as fast as 3
        img = cv2.warpAffine(tex.image, m, (rw, rh), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        labels = {}
        for k, (ya, yb, xa, xb) in self._candidates(tex, m, rw, rh).items():
            # cut labels only where a polyp can be: the same nearest-neighbour warp, windowed
            mk = m.copy()
            mk[:, 2] -= (xa, ya)
            labels[k] = ((ya, yb, xa, xb), cv2.warpAffine(
                tex.labels, mk, (xb - xa, yb - ya), flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT, borderValue=0))
        tool = None
        if seg.instrument is not None:
            tool = np.zeros((rh, rw), np.uint8)
            cx, cy, r = view.fov
            if not draw_instrument(img, tool, seg.instrument, t, (cx - x0, cy - y0), r):
                tool = None
        # slow auto-exposure breathing, as the processor chases the brightest wall
        exposure = 1.0 + 0.03 * math.sin(t / 23.0 + seg.index)
        cv2.multiply(img, view.gain, dst=img, scale=exposure / 255.0)
        frame = np.zeros((self.height, self.width, 3), np.uint8)
        cv2.cvtColor(img, cv2.COLOR_BGRA2BGR, dst=frame[y0:y1, x0:x1])
        painted = draw_overlays(frame, seg, t, self.fps)
        truth = self._truth(seg, view, labels, tool, painted, i)
        return frame, truth

    def frames(self, n: int, start: int = 0) -> Iterator[tuple[np.ndarray, Truth]]:
        """Frames ``start`` .. ``start + n - 1`` in order, as (frame, truth) pairs."""
        for i in range(start, start + n):
            yield self.frame(i)

    def write_video(self, path, n_frames: int, fps: float | None = None, start: int = 0):
        """Write frames ``start`` .. ``start + n_frames - 1`` to an MP4 (mp4v); returns ``path``."""
        from .dataset import write_video
        return write_video(self, path, n_frames, fps=fps or self.fps, start=start)

    # ------------------------------------------------------------------ internals
    def _transform(self, seg, tex: SegmentTexture, view: _View, t: float) -> np.ndarray:
        wx, wy, zoom, roll = seg.camera.at(t)
        s = zoom * view.fov[2] / tex.px
        c, sn = math.cos(roll) * s, math.sin(roll) * s
        u0, v0 = (wx + TEXTURE_HALF) * tex.px, (wy + TEXTURE_HALF) * tex.px
        cx, cy, _ = view.fov
        y0, _, x0, _ = view.roi
        tx = cx - x0 - (c * u0 - sn * v0)
        ty = cy - y0 - (sn * u0 + c * v0)
        return np.array([[c, -sn, tx], [sn, c, ty]], np.float64)

    def _candidates(self, tex: SegmentTexture, m: np.ndarray, rw: int, rh: int) -> dict:
        """Polyps whose texture window lands on screen: label -> (y0, y1, x0, x1) ROI window."""
        out = {}
        for k, (bx0, by0, bx1, by1) in enumerate(tex.boxes):
            corners = (np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]]) + TEXTURE_HALF) * tex.px
            sc = corners @ m[:, :2].T + m[:, 2]
            xa, ya = np.floor(sc.min(axis=0)).astype(int) - 1
            xb, yb = np.ceil(sc.max(axis=0)).astype(int) + 2
            xa, ya, xb, yb = max(xa, 0), max(ya, 0), min(xb, rw), min(yb, rh)
            if xa < xb and ya < yb:
                out[k + 1] = (ya, yb, xa, xb)
        return out

    def _truth(self, seg, view: _View, labels: dict, tool, painted, i) -> Truth:
        y0, _, x0, _ = view.roi
        min_px = self.min_visible_px
        if min_px is None:   # slivers at the rim or behind a fold below this are not objects
            min_px = max(8, int(1e-4 * view.area))
        found = []           # (y0, y1, x0, x1 in frame coords, bool window, label, kind, colour, track)
        for k, ((ya, yb, xa, xb), lab) in labels.items():
            win = (lab == k) & view.inside[ya:yb, xa:xb]
            if tool is not None:
                win &= tool[ya:yb, xa:xb] == 0
            p = seg.polyps[k - 1]
            found.append([ya + y0, yb + y0, xa + x0, xb + x0, win, "polyp", p.kind, p.colour,
                          seg.index * 16 + k - 1])
        if tool is not None:
            win = (tool > 0) & view.inside
            inst = seg.instrument
            found.append([y0, y0 + win.shape[0], x0, x0 + win.shape[1], win, "instrument", inst.kind,
                          "grey" if inst.kind == "forceps" else "white",
                          seg.index * 16 + INSTRUMENT_TRACK])
        for entry in found:
            for (py0, py1, px0, px1, pm) in painted:   # burned-in overlays hide what is under them
                a0, a1 = max(entry[0], py0), min(entry[1], py1)
                b0, b1 = max(entry[2], px0), min(entry[3], px1)
                if a0 < a1 and b0 < b1:
                    entry[4][a0 - entry[0]:a1 - entry[0], b0 - entry[2]:b1 - entry[2]] &= \
                        ~pm[a0 - py0:a1 - py0, b0 - px0:b1 - px0]
        found = [e for e in found if int(np.count_nonzero(e[4])) >= min_px]
        frame_fields = dict(text_overlay=seg.text_overlay is not None, box_artifact=seg.box_artifact,
                            fov=tuple(float(v) for v in view.fov), frame_index=i, segment=seg.index)
        if not found:
            return Truth.empty(self.height, self.width, **frame_fields)
        masks = np.zeros((len(found), self.height, self.width), bool)
        boxes = np.zeros((len(found), 4), np.float32)
        areas = np.zeros(len(found), np.float32)
        for n, (ya, yb, xa, xb, win, *_rest) in enumerate(found):
            masks[n, ya:yb, xa:xb] = win
            rows = np.flatnonzero(win.any(axis=1))
            cols = np.flatnonzero(win.any(axis=0))
            boxes[n] = (xa + cols[0], ya + rows[0], xa + cols[-1] + 1, ya + rows[-1] + 1)
            areas[n] = np.count_nonzero(win) / view.area
        return Truth(boxes, masks, labels=[e[5] for e in found], kinds=[e[6] for e in found],
                     colours=[e[7] for e in found], size_classes=[size_class(a) for a in areas],
                     areas=areas, track_ids=[e[8] for e in found], **frame_fields)
