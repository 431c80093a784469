"""Video sources: where a stream's frames come from, behind one small interface.

``open_source`` turns what a user has into a :class:`VideoSource`:

>>> open_source("clip.mp4")                      # doctest: +SKIP  a video file (ends at its end)
>>> open_source(0)                               # doctest: +SKIP  camera index 0
>>> open_source("/dev/video2")                   # doctest: +SKIP  a camera device path
>>> open_source("rtsp://10.0.0.5/scope")         # doctest: +SKIP  a network stream (OpenCV/FFmpeg)
>>> open_source("v4l2src ! videoconvert ! appsink")  # doctest: +SKIP  a GStreamer pipeline
>>> open_source(frames_iterator)                 # doctest: +SKIP  any iterable of HxWx3 uint8 arrays
>>> open_source("synthetic:3", width=640, height=480)   # the built-in synthetic endoscope, seed 3

A source's ``read()`` returns the next frame, or ``END`` at its end (a None is a frame that
is missing, which the stream reports as a bad frame). A live source (camera,
device, network stream, GStreamer pipeline) that stops delivering is reopened with growing
pauses for ``reconnect_s`` seconds before ``read()`` gives up with :class:`SourceError`.
Sources only read; pacing and threads belong to :mod:`gi_sdk.stream`.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from .errors import SourceError

SYNTHETIC = "synthetic"
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.05, 1.0
_NETWORK_TIMEOUT_MS = 5000   # open and read timeouts of network streams (FFmpeg)


class _End:
    """What ``read()`` returns at the end of a source (not None: an iterable may hold a None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()


class VideoSource:
    """The interface a stream reads from.

    ``fps``: the rate frames are meant to be played at (None: as fast as they come).
    ``live``: True for cameras and streams (frames arrive in real time; a drop-out is
    retried), False for recordings and iterators.
    """

    fps: float | None = None
    live: bool = False
    name: str = "source"

    def read(self):
        """The next frame, or ``END`` when the source has ended."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; wakes a ``read()`` waiting to reconnect."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class CaptureSource(VideoSource):
    """A source OpenCV's ``VideoCapture`` opens: a file, a camera, a URL, a GStreamer pipeline.

    live: whether a failed read is a drop-out to retry (cameras, streams) rather than the end
        (files). reconnect_s: how long a live source is retried before SourceError.
    """

    def __init__(self, spec, live: bool, reconnect_s: float = 5.0, api: int = cv2.CAP_ANY, params=()):
        self.spec, self.live, self.reconnect_s = spec, bool(live), float(reconnect_s)
        self.name = str(spec)
        self.reconnects = 0      # drop-outs recovered from
        self._api, self._params = api, list(params)
        self._closed = threading.Event()
        # held while the capture is used: close() on another thread waits for a read in progress
        # (releasing a capture under a running read crashes some OpenCV backends)
        self._lock = threading.Lock()
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(_cannot_open_message(spec, api))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 1000.0 else None

    def _open(self):
        cap = cv2.VideoCapture(self.spec, self._api, self._params) if self._params else cv2.VideoCapture(self.spec, self._api)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _read_once(self, reopen: bool):
        with self._lock:
            if self._closed.is_set():
                return END
            if reopen:
                if self._cap is not None:
                    self._cap.release()
                self._cap = self._open()
            if self._cap is None:
                return END
            ok, frame = self._cap.read()
            return frame if ok and frame is not None else END

    def read(self):
        frame = self._read_once(reopen=False)
        if frame is not END or not self.live or self._closed.is_set():
            return frame
        return self._reconnect()

    def _reconnect(self):
        """Reopen a live source that stopped, pausing 0.05 s, 0.1 s, ... up to 1 s between tries."""
        deadline = time.monotonic() + self.reconnect_s
        pause = _BACKOFF_FIRST_S
        while True:
            if self._closed.wait(min(pause, max(0.0, deadline - time.monotonic()))):
                return END
            frame = self._read_once(reopen=True)
            if frame is not END:
                self.reconnects += 1
                return frame
            if self._closed.is_set():
                return END
            if time.monotonic() >= deadline:
                raise SourceError(
                    f"video source {self.name!r} stopped delivering frames and did not come back within "
                    f"{self.reconnect_s:g} s; check the camera cable, device or URL, or allow longer "
                    "with reconnect_s"
                )
            pause = min(2 * pause, _BACKOFF_MAX_S)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


class IteratorSource(VideoSource):
    """Frames from any iterable of arrays; ``fps`` paces them (None: as fast as they come)."""

    def __init__(self, frames: Iterable, fps: float | None = None, name: str = "iterator"):
        self._it: Iterator = iter(frames)
        self.fps, self.name = fps, name

    def read(self):
        # a None inside the iterable is a bad frame (the stream reports it), not the end
        return next(self._it, END)

    def close(self) -> None:
        close = getattr(self._it, "close", None)   # generators: run their finally blocks
        if close is not None:
            try:
                close()
            except ValueError:   # "generator already executing" on another thread: it ends with us
                pass


class SyntheticSource(VideoSource):
    """The built-in synthetic endoscope (``gi_sdk.synthetic.SyntheticEndoscope``) as a source.

    Plays frames ``start`` .. ``start + n_frames - 1`` (endless when ``n_frames`` is None) at the
    scope's fps. ``truth_seen`` maps each label to the set of truth track ids shown so far, the
    number a tracker's count of distinct objects should reach.
    """

    def __init__(self, scope, n_frames: int | None = None, start: int = 0):
        self.scope, self.n_frames, self.start = scope, n_frames, int(start)
        self.fps, self.name = scope.fps, f"synthetic:{scope.seed}"
        self.truth_seen: dict[str, set] = {}
        self.last_truth = None
        self._i = 0

    def read(self):
        if self.n_frames is not None and self._i >= self.n_frames:
            return END
        frame, truth = self.scope.frame(self.start + self._i)
        self._i += 1
        self.last_truth = truth
        for label, track in zip(truth.labels, truth.track_ids):
            self.truth_seen.setdefault(label, set()).add(int(track))
        return frame


def open_source(source, *, width: int = 1280, height: int = 720, seed: int = 0, n_frames: int | None = None,
                fps: float | None = None, live: bool | None = None, reconnect_s: float = 5.0) -> VideoSource:
    """Open what ``source`` names as a :class:`VideoSource` (see the module docstring).

    source: a VideoSource (returned as is), a ``SyntheticEndoscope``, ``"synthetic"`` or
        ``"synthetic:SEED"``, a camera index (int or digits), a device path (``/dev/video0``),
        a URL (``rtsp://``, ``http://``...), a GStreamer pipeline (contains ``!``), a video file
        path, or any iterable of frames.
    width, height, seed: the synthetic endoscope's frame size and seed (``"synthetic"`` only).
    n_frames: stop after this many frames (synthetic only; slice other sources yourself).
    fps: pace an iterable at this rate (files, cameras and the synthetic scope bring their own).
    live: force a file to be treated as a live source (retried when it stops) or not.
    reconnect_s: how long a live source that stops delivering is retried before SourceError.
    """
    if isinstance(source, VideoSource):
        return source
    from .synthetic import SyntheticEndoscope

    if isinstance(source, SyntheticEndoscope):
        return SyntheticSource(source, n_frames)
    if isinstance(source, str) and (source == SYNTHETIC or source.startswith(SYNTHETIC + ":")):
        tail = source[len(SYNTHETIC) + 1:]
        if tail and not tail.lstrip("-").isdigit():
            raise SourceError(f"bad synthetic source {source!r}; write 'synthetic' or 'synthetic:SEED' (an integer)")
        scope = SyntheticEndoscope(seed=int(tail) if tail else seed, width=width, height=height)
        return SyntheticSource(scope, n_frames)
    if isinstance(source, (int, np.integer)) or (isinstance(source, str) and source.isdigit()):
        return CaptureSource(int(source), live=True if live is None else live, reconnect_s=reconnect_s)
    if isinstance(source, (str, Path)):
        return _open_named(str(source), live, reconnect_s)
    if isinstance(source, np.ndarray) and source.ndim == 3:
        raise SourceError("got a single frame; pass a list or iterator of frames, or call Session.run on it")
    try:
        iter(source)
    except TypeError:
        raise SourceError(
            f"cannot read video from a {type(source).__name__}; give a file path, camera index, URL, "
            "GStreamer pipeline, 'synthetic', or an iterable of HxWx3 uint8 frames"
        ) from None
    return IteratorSource(source, fps=fps)


def _open_named(spec: str, live: bool | None, reconnect_s: float) -> CaptureSource:
    """A path, URL or pipeline string: pick the OpenCV API and whether it is live."""
    if "!" in spec:   # GStreamer pipelines are written "element ! element ! appsink"
        return CaptureSource(spec, live=True if live is None else live, reconnect_s=reconnect_s,
                             api=cv2.CAP_GSTREAMER)
    if "://" in spec:
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _NETWORK_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    _NETWORK_TIMEOUT_MS]
        return CaptureSource(spec, live=True if live is None else live, reconnect_s=reconnect_s,
                             api=cv2.CAP_FFMPEG, params=timeouts)
    path = Path(spec)
    if spec.startswith("/dev/"):
        return CaptureSource(spec, live=True if live is None else live, reconnect_s=reconnect_s)
    if not path.exists():
        raise SourceError(f"video file {spec!r} does not exist; give a readable video file, a camera index, "
                          "a URL or 'synthetic'")
    if path.is_dir():
        raise SourceError(f"{spec!r} is a folder; give a video file inside it")
    return CaptureSource(spec, live=bool(live), reconnect_s=reconnect_s)


def _cannot_open_message(spec, api: int) -> str:
    if api == cv2.CAP_GSTREAMER and not _opencv_has("GStreamer"):
        return (f"cannot open GStreamer pipeline {spec!r}: this OpenCV build has no GStreamer support "
                "(pip's opencv-python wheels have none); install an OpenCV built with GStreamer, or "
                "give the camera index, device path or URL instead")
    if isinstance(spec, int) or str(spec).startswith("/dev/"):
        return (f"cannot open camera {spec!r}: no such device, or it is in use by another program; "
                "list cameras with `v4l2-ctl --list-devices` and check permissions")
    if "://" in str(spec):
        return f"cannot open stream {spec!r}; check the URL, the network, and that the server is up"
    return f"cannot open video file {spec!r}; is it a video OpenCV (FFmpeg) can read?"


def _opencv_has(feature: str) -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith(feature + ":"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False
