"""``Stream``: run a Session over live video without ever holding the video back.

>>> with session.stream("video.mp4", task="detect", log="results.jsonl") as stream:
...     for fr in stream:
...         shown = gi_sdk.overlay.draw_stream_frame(fr)   # every frame, with the latest result
...         fr.frame_id, fr.track_ids, fr.seen, fr.passthrough_ms, fr.marker_ms

Three threads, two paths (DESIGN.md section 7):

    reader thread  source.read() -> timestamp -> output queue (every frame)  -> your loop
                                              -> one-slot latest frame
    model thread   takes the newest frame -> Session.run -> tracker -> "latest result"
                   (frames replaced in the slot before the model took them are counted
                   as skipped, never queued)

Your loop gets every captured frame as soon as it is read, with the newest result whose frame
is not newer than it. Two delays are measured, as 21 CFR 876.1520 asks of GI CADe devices:
``passthrough_ms`` (frame captured -> handed to you) on every frame, and ``marker_ms`` (a
frame captured -> its own result ready), reported on the first frame that carries that result.
"""
from __future__ import annotations

import json
import threading
import time
import warnings
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue

import numpy as np

from . import tasks as T
from .errors import InvalidFrameError
from .frames import check_frame
from .result import Result
from .tracker import IouTracker
from .video_sources import END, IteratorSource, open_source

_POLL_S = 0.05           # how often blocked threads look at the stop flag
_JOIN_S = 60.0           # close() waits this long for a model call in flight to end
_END = object()          # the reader's last word in the output queue


@dataclass
class StreamFrame:
    """One captured frame as a stream hands it out.

    frame_id: index of the frame in the source (0, 1, 2, ...; bad frames keep their index).
    timestamp: capture time, seconds since the epoch (``time.time()``).
    frame: the frame as read (read-only: the model may be looking at it; draw on a copy).
    result: the newest model result whose frame is not newer than this one (None before the
        first); ``result_frame_id`` says which frame it was computed on.
    track_ids: (len(result),) int64 tracker ids of ``result``'s instances (-1: not confirmed yet).
    seen: distinct confirmed tracks per label so far, e.g. ``{"polyp": 3}``.
    skipped: frames so far that the model never ran on (replaced in the latest-frame slot).
    passthrough_ms: capture -> this frame handed out.
    marker_ms: capture of ``result``'s frame -> that result ready; set on the first frame that
        carries a new result, None on the others.
    answer: the newest answer to a question asked with ``Stream.ask`` (None before the first).
    """

    frame_id: int
    timestamp: float
    frame: np.ndarray
    result: Result | None
    track_ids: np.ndarray
    skipped: int
    passthrough_ms: float
    marker_ms: float | None = None
    result_frame_id: int | None = None
    seen: dict = field(default_factory=dict)
    answer: Result | None = None


@dataclass(frozen=True)
class _Captured:
    frame_id: int
    timestamp: float      # time.time()
    clock: float          # time.perf_counter(), for the delays
    frame: np.ndarray


@dataclass(frozen=True)
class _Published:
    frame_id: int
    result: Result
    track_ids: np.ndarray
    seen: dict
    marker_ms: float


class LatestFrame:
    """A one-slot buffer: ``put`` replaces what the taker has not taken yet (and counts it as
    skipped), ``take`` waits for something newer than what it took last."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.skipped = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.skipped += 1
            self._item = item
            self._cond.notify()

    def take(self):
        """The newest item, waiting for one; None once closed."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the taker with None; an item never taken counts as skipped."""
        with self._cond:
            if self._item is not None:
                self.skipped += 1
                self._item = None
            self._closed = True
            self._cond.notify_all()


class JsonLinesLog:
    """Append one JSON object per line and flush it, so a crash loses at most the line in flight."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Stream:
    """Frames of ``source`` with ``task`` run on the newest one; iterate it once.

    Made by ``Session.stream`` (see there for the arguments). Closing it (``close()``, leaving a
    ``with`` block, breaking out of or closing the iteration) stops the reader, waits for the
    model call in flight, and closes the source and the log: no thread is left running.
    """

    def __init__(self, session, source, task: str = "detect", text: str | None = None, *,
                 max_new_tokens: int | None = None, log=None, tracker: IouTracker | bool = True,
                 realtime: bool | None = None, fps: float | None = None, reconnect_s: float = 5.0,
                 buffer: int = 2, **source_options):
        spec = T.get_task(task)          # a bad task or prompt fails here, before any thread starts
        T.build_prompt(spec, text)
        self.session, self.task, self.text, self.max_new_tokens = session, spec.name, text, max_new_tokens
        if tracker is True:  # the model's own start score when its bundle carries one
            start = getattr(session.checkpoint, "track_start_score", None)
            tracker = IouTracker() if start is None else IouTracker(start_score=start)
        self.tracker = tracker or None
        self.source = open_source(source, fps=fps, reconnect_s=reconnect_s, **source_options)
        try:
            self._log = JsonLinesLog(log) if log is not None else None
        except OSError:
            self.source.close()
            raise
        self._copy = isinstance(self.source, IteratorSource)   # a caller's iterator may reuse its buffer
        # play recordings at their own rate, as a camera delivers them (an iterator without fps
        # has none: it comes as fast as it yields); live sources bring their own pace
        self.realtime = (not self.source.live) if realtime is None else bool(realtime)
        self._out: Queue = Queue(maxsize=max(1, int(buffer)))
        self._latest = LatestFrame()
        self._published: deque = deque(maxlen=max(1, int(buffer)) + 2)   # newest last
        self._answer: Result | None = None
        self._questions: deque = deque()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._iterated = False
        self._closed = False
        self.invalid_frames = 0   # frames the source gave that were not images (reported, skipped)

    # ------------------------------------------------------------------ public
    @property
    def skipped(self) -> int:
        """Frames so far that the model never ran on."""
        return self._latest.skipped

    def ask(self, question: str, max_new_tokens: int | None = None) -> Future:
        """Answer ``question`` about the newest frame the model takes next, between two runs
        of the stream's task; returns a Future of the ``Result`` (also shown as ``answer``)."""
        T.build_prompt("ask", question)
        if self._closed:
            raise RuntimeError("the stream is closed; ask the Session directly: session.ask(frame, question)")
        future: Future = Future()
        self._questions.append((question, max_new_tokens, future))
        return future

    def __iter__(self):
        if self._iterated or self._closed:
            raise RuntimeError("a Stream can be iterated once, before it is closed; open a new one with "
                               "session.stream(...)")
        self._iterated = True
        return self._frames()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop reading, wait for the model call in flight, release the source and the log."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._latest.close()
        self.source.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(_JOIN_S)
                if thread.is_alive():
                    warnings.warn(f"{thread.name} did not stop within {_JOIN_S:g} s", RuntimeWarning, stacklevel=2)
        while self._questions:
            self._questions.popleft()[2].cancel()
        if self._log is not None:
            self._log.close()

    # ------------------------------------------------------------------ your loop's side
    def _frames(self):
        self._start()
        last_marked = None
        try:
            while True:
                item = self._next_item()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                if self._error is not None:
                    raise self._error
                pub = self._result_for(item.frame_id)
                marker = None
                if pub is not None and pub.frame_id != last_marked:
                    marker, last_marked = pub.marker_ms, pub.frame_id
                yield StreamFrame(
                    frame_id=item.frame_id, timestamp=item.timestamp, frame=item.frame,
                    result=pub.result if pub else None,
                    track_ids=pub.track_ids if pub else np.zeros(0, np.int64),
                    skipped=self._latest.skipped,
                    passthrough_ms=(time.perf_counter() - item.clock) * 1e3,
                    marker_ms=marker, result_frame_id=pub.frame_id if pub else None,
                    seen=pub.seen if pub else {}, answer=self._answer,
                )
            if self._error is not None:
                raise self._error
        finally:
            self.close()

    def _next_item(self):
        """The reader's next item; END once the stream is closed (from another thread, say)."""
        while True:
            try:
                return self._out.get(timeout=_POLL_S)
            except Empty:
                if self._stop.is_set():
                    return _END

    def _result_for(self, frame_id: int) -> _Published | None:
        """The newest published result computed on this frame or an earlier one."""
        for pub in reversed(tuple(self._published)):
            if pub.frame_id <= frame_id:
                return pub
        return None

    def _start(self) -> None:
        for target, name in ((self._read, "reader"), (self._model, "model")):
            thread = threading.Thread(target=target, name=f"gi_sdk-stream-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    # ------------------------------------------------------------------ reader thread
    def _read(self) -> None:
        frame_id, period = 0, None
        fps = self.source.fps
        if self.realtime and fps:
            period = 1.0 / fps
        due = time.perf_counter()
        try:
            while not self._stop.is_set():
                if period is not None:
                    wait = due - time.perf_counter()
                    if wait > 0 and self._stop.wait(wait):
                        break
                    # behind schedule (your loop was slow): go on at once, not in a burst of catch-up reads
                    due = max(due + period, time.perf_counter())
                frame = self.source.read()
                if frame is END:
                    break
                clock, stamp = time.perf_counter(), time.time()
                try:
                    check_frame(frame)
                except InvalidFrameError as exc:
                    self._bad_frame(frame_id, stamp, exc)
                    frame_id += 1
                    continue
                if self._copy:
                    frame = frame.copy()
                frame.flags.writeable = False
                item = _Captured(frame_id, stamp, clock, frame)
                self._latest.put(item)
                if not self._put_out(item):
                    break
                frame_id += 1
        except Exception as exc:   # a source that failed (SourceError after reconnecting): your loop raises it
            self._put_out(exc)
            return
        finally:
            self._latest.close()
            self.source.close()
        self._put_out(_END)

    def _put_out(self, item) -> bool:
        """Hand ``item`` to the loop, waiting while it is behind; False once stopping."""
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=_POLL_S)
                return True
            except Full:
                continue
        return False

    def _bad_frame(self, frame_id: int, stamp: float, exc: InvalidFrameError) -> None:
        self.invalid_frames += 1
        if self.invalid_frames == 1:
            warnings.warn(f"stream from {self.source.name}: skipping frames that are not images: {exc}",
                          RuntimeWarning, stacklevel=2)
        if self._log is not None:
            self._log.write({"frame_id": frame_id, "timestamp": stamp, "error": str(exc)})

    # ------------------------------------------------------------------ model thread
    def _model(self) -> None:
        try:
            while True:
                item = self._latest.take()
                if item is None:
                    return
                result = self.session.run(item.frame, self.task, self.text, max_new_tokens=self.max_new_tokens)
                marker_ms = (time.perf_counter() - item.clock) * 1e3
                if self.tracker is not None:
                    ids = self.tracker.update(result.boxes, result.labels, result.scores)
                    seen = dict(self.tracker.seen)
                else:
                    ids, seen = np.zeros(len(result), np.int64), {}
                self._published.append(_Published(item.frame_id, result, ids, seen, marker_ms))
                self._write_log(item, result, marker_ms, ids, seen)
                self._answer_questions(item)
        except Exception as exc:   # handed to your loop, which raises it
            self._error = exc
        finally:
            while self._questions:
                self._questions.popleft()[2].cancel()

    def _answer_questions(self, item: _Captured) -> None:
        while self._questions and not self._stop.is_set():
            question, budget, future = self._questions.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                # same frame as the task just run: the Session reuses its vision features
                answer = self.session.ask(item.frame, question, max_new_tokens=budget)
            except Exception as exc:
                future.set_exception(exc)
                continue
            self._answer = answer
            future.set_result(answer)
            if self._log is not None:
                self._log.write({"frame_id": item.frame_id, "timestamp": item.timestamp, "task": "ask",
                                 "question": question, "result": answer.to_dict()})

    def _write_log(self, item: _Captured, result: Result, marker_ms: float, ids, seen) -> None:
        if self._log is not None:
            self._log.write({
                "frame_id": item.frame_id, "timestamp": item.timestamp, "task": self.task, "text": self.text,
                "marker_ms": round(marker_ms, 3), "skipped": self._latest.skipped,
                "track_ids": [int(i) for i in ids], "seen": seen, "result": result.to_dict(),
            })
