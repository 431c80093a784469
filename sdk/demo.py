"""The live overlay demo (``gi-sdk demo``): a Session streaming over endoscope video.

``gi-sdk demo`` plays the built-in synthetic endoscope (or a file, camera or stream), runs
detection (or ``--segment polyp``) on the newest frame, answers ``--ask`` questions about the
live frame while detection keeps running, and shows every frame with the latest overlay:
boxes, translucent polygon fills, labels with confidence and track ids (what the tracker has
not confirmed as a thin outline, ``--unconfirmed``), the count of distinct
objects seen, the latest answer and a HUD with fps, pass-through and marker delay. Outputs:
an MP4, a window (when a display exists) and a local web viewer (``--web``).

A YAML file with one section per stage can replace the flags (flags given override it)::

    source:  {uri: synthetic, frames: 300, width: 1280, height: 720, seed: 0}
    model:   {path: null, backend: auto, device: cpu}       # null: the built-in model
    tasks:   {detect: true, segment: null, ask: "Is there a polyp?", ask_every_s: 2.0}
    overlay: {alpha: 0.35, hud: true, confidence: true, unconfirmed: faint}
    outputs: {mp4: out/overlay.mp4, window: auto, web: false, host: 127.0.0.1, port: 8080, log: null}
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError, ModelLoadError, SourceError
from .overlay import UNCONFIRMED_STYLES, draw_stream_frame

_WINDOW = "gi_sdk demo"
_STATS_WINDOW = 10_000     # frames the summary percentiles cover: memory stays flat on long runs


@dataclass
class SourceConfig:
    """Where frames come from (``gi_sdk.video_sources.open_source``)."""

    uri: str = "synthetic"          # synthetic[:SEED], a video file, camera index, /dev/videoN, URL, GStreamer pipeline
    frames: int | None = None       # stop after this many frames (None: 300 of the synthetic video, all of a file)
    width: int = 1280               # synthetic frame size
    height: int = 720
    seed: int = 0                   # synthetic video seed
    realtime: bool = True           # play files at their own fps, as a camera would deliver them
    reconnect_s: float = 5.0        # how long a camera or stream that drops out is retried


@dataclass
class ModelConfig:
    """Which model runs, where."""

    path: str | None = None         # bundle or merged checkpoint folder; None: the built-in model
    backend: str = "auto"
    device: str = "cpu"


@dataclass
class TasksConfig:
    """What the model is asked on the live video."""

    detect: bool = True             # boxes of polyps and instruments, tracked
    segment: str | None = None      # a phrase ("polyp"): polygons instead of boxes
    ask: str | None = None          # a question answered about the live frame, again and again
    ask_every_s: float = 2.0        # the least time between two answers to ``ask``
    task: str | None = None         # any other task of gi_sdk.tasks instead of detect/segment
    text: str | None = None         # its input text
    max_new_tokens: int | None = None


@dataclass
class OverlayConfig:
    """How results are drawn."""

    alpha: float = 0.35             # opacity of polygon fills
    hud: bool = True                # fps and delays in the corner
    confidence: bool = True         # confidence next to each label
    unconfirmed: str = "faint"      # instances the tracker has not confirmed: faint, hide or show


@dataclass
class OutputsConfig:
    """Where the overlay goes."""

    mp4: str | None = "overlay.mp4"  # MP4 file to write, or a folder to write overlay.mp4 in (None: none)
    window: str | bool = "auto"      # a window: True, False, or "auto" (when a display exists)
    web: bool = False                # serve an MJPEG web viewer
    host: str = "127.0.0.1"          # web viewer address; 0.0.0.0 exposes it to the network
    port: int = 8080
    log: str | None = None           # JSON Lines file with every result


_SECTIONS = {"source": SourceConfig, "model": ModelConfig, "tasks": TasksConfig,
             "overlay": OverlayConfig, "outputs": OutputsConfig}


@dataclass
class DemoConfig:
    """The demo pipeline, one section per stage (Holoscan-style)."""

    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "DemoConfig":
        """Build from nested dicts; unknown sections or keys raise ConfigError naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with sections {sorted(_SECTIONS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {unknown}; sections are {sorted(_SECTIONS)}")
        config = cls()
        for name, values in data.items():
            if values is not None and not isinstance(values, dict):
                raise ConfigError(f"{where}: section {name!r} must be a mapping of keys, got {values!r}")
            for key, value in (values or {}).items():
                config.set(name, key, value, where)
        return config

    @classmethod
    def from_yaml(cls, path) -> "DemoConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"demo config {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        return cls.from_dict(data, str(path))

    def set(self, section: str, key: str, value, where: str = "config") -> None:
        """Set one field (flags use this to override a YAML file)."""
        part = getattr(self, section)
        names = {f.name for f in fields(part)}
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r} in section {section!r}; known: {sorted(names)}")
        if (section, key) == ("overlay", "unconfirmed") and value not in UNCONFIRMED_STYLES:
            raise ConfigError(f"{where}: overlay.unconfirmed is {value!r}; give one of {', '.join(UNCONFIRMED_STYLES)}")
        setattr(part, key, value)

    def to_dict(self) -> dict:
        return asdict(self)

    def task_and_text(self) -> tuple[str, str | None]:
        """The task the stream runs on every model turn, and its input."""
        t = self.tasks
        if t.task:
            return t.task, t.text
        if t.segment:
            return "segment", t.segment
        if t.detect:
            return "detect", None
        if t.ask:
            return "ask", t.ask   # only a question: it is the stream's task
        raise ConfigError("no task chosen; give --detect, --segment PHRASE or --ask QUESTION")


class _Mp4Output:
    """Frames to an MP4 file (mp4v), opened at the first frame's size."""

    def __init__(self, path, fps: float):
        self.path, self.fps, self._writer = Path(path), fps, None
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise SourceError(f"cannot write video to {self.path}; check the folder is writable")
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class _WindowOutput:
    """Frames to an OpenCV window; ``q`` or Esc stops the demo."""

    def __init__(self):
        self.quit = False

    def write(self, frame: np.ndarray) -> None:
        cv2.imshow(_WINDOW, frame)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit = True

    def close(self) -> None:
        cv2.destroyWindow(_WINDOW)


def window_available() -> tuple[bool, str]:
    """Whether a window can be shown here, and why not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY is not set)"
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
        return False, "this OpenCV build has no GUI (opencv-python-headless); use --web or the MP4"
    return True, ""


class _Rate:
    """Events per second over the last second."""

    def __init__(self):
        self._times: deque = deque()
        self.value = 0.0

    def tick(self, now: float) -> float:
        self._times.append(now)
        while self._times and now - self._times[0] > 1.0:
            self._times.popleft()
        span = now - self._times[0]
        self.value = (len(self._times) - 1) / span if span > 0 else 0.0
        return self.value


class _Meters:
    """What the HUD and the summary report: frame rate, model rate, the two delays."""

    def __init__(self):
        self.passthrough, self.marker = deque(maxlen=_STATS_WINDOW), deque(maxlen=_STATS_WINDOW)
        self.fps, self.model_hz = _Rate(), _Rate()
        self.frames, self.last, self.started = 0, None, time.perf_counter()

    def add(self, fr, now: float) -> None:
        self.fps.tick(now)
        self.passthrough.append(fr.passthrough_ms)
        if fr.marker_ms is not None:
            self.marker.append(fr.marker_ms)
            self.model_hz.tick(now)
        self.frames, self.last = self.frames + 1, fr

    def hud(self, fr, backend: str, task: str, text: str | None) -> list[str]:
        marker = f"{self.marker[-1]:4.0f} ms" if self.marker else "-"
        return [f"gi_sdk {backend} | {task}{' ' + text if text else ''} | frame {fr.frame_id}",
                f"fps {self.fps.value:4.1f} | model {self.model_hz.value:4.1f} Hz | skipped {fr.skipped}",
                f"pass-through {fr.passthrough_ms:5.1f} ms | marker {marker}"]

    def progress(self, fr) -> str:
        marker = self.marker[-1] if self.marker else float("nan")
        answer = f", answer {fr.answer.answer!r}" if fr.answer is not None else ""
        return (f"frame {fr.frame_id}: seen {fr.seen or '{}'}, pass-through {fr.passthrough_ms:.1f} ms, "
                f"marker {marker:.0f} ms{answer}")


def _open_outputs(config: DemoConfig, fps: float, log) -> tuple[list, object]:
    out = config.outputs
    outputs, viewer = [], None
    if out.mp4 and Path(out.mp4).is_dir():   # a folder: the video goes in it under the default name
        out.mp4 = str(Path(out.mp4) / OutputsConfig.mp4)
    if out.mp4:
        outputs.append(_Mp4Output(out.mp4, fps))
    want_window = out.window not in (False, "false", "no", "off")
    if want_window:
        ok, why = window_available()
        if ok:
            outputs.append(_WindowOutput())
        elif out.window not in ("auto",):
            log(f"no window: {why}")
    if out.web:
        from .webview import WebViewer

        viewer = WebViewer(out.host, out.port)
        log(f"web viewer: {viewer.url}  (from another machine: ssh -L {out.port}:127.0.0.1:{out.port} THIS_HOST)")
    return outputs, viewer


def run_demo(config: DemoConfig, session=None, log=print, stop=None) -> dict:
    """Run the demo pipeline; returns a summary (frames, delays, counts, where the video went).

    session: a loaded Session to use (default: load ``config.model``).
    log: where progress lines go. stop: a ``threading.Event`` that ends the demo when set
    (as ``q`` in the window or Ctrl-C do).
    """
    task, text = config.task_and_text()
    if session is None:
        from .session import Session

        try:
            session = Session(config.model.path, backend=config.model.backend, device=config.model.device)
        except ModelLoadError as exc:
            if config.model.path is not None:
                raise
            raise ModelLoadError(f"{exc}. For the demo, give one with --model FOLDER "
                                 "(python -m gi_sdk.train.tiny --out FOLDER builds a tiny random one)") from None
        log(f"loaded {session}")
    src = config.source
    is_synthetic = str(src.uri).startswith("synthetic")
    limit = src.frames if src.frames is not None else (300 if is_synthetic else None)
    stream = session.stream(src.uri, task, text, max_new_tokens=config.tasks.max_new_tokens,
                            log=config.outputs.log, realtime=src.realtime, reconnect_s=src.reconnect_s,
                            width=src.width, height=src.height, seed=src.seed,
                            n_frames=limit if is_synthetic else None)
    outputs, viewer = _open_outputs(config, stream.source.fps or 30.0, log)
    question = config.tasks.ask if task != "ask" else None
    meters, pending, asked_at = _Meters(), None, -1e9
    try:
        with stream:
            for fr in stream:
                now = time.perf_counter()
                meters.add(fr, now)
                if question and (pending is None or pending.done()) and now - asked_at >= config.tasks.ask_every_s:
                    pending, asked_at = stream.ask(question, config.tasks.max_new_tokens), now
                hud = meters.hud(fr, session.backend_name, task, text) if config.overlay.hud else []
                shown = draw_stream_frame(fr, hud, question, config.overlay.alpha, config.overlay.confidence,
                                          config.overlay.unconfirmed)
                for output in outputs:
                    output.write(shown)
                if viewer is not None:
                    viewer.publish(shown)
                if meters.frames % 30 == 0:
                    log(meters.progress(fr))
                if ((limit is not None and meters.frames >= limit) or (stop is not None and stop.is_set())
                        or any(getattr(o, "quit", False) for o in outputs)):
                    break
    except KeyboardInterrupt:
        log("stopped (Ctrl-C)")
    finally:
        for output in outputs:
            output.close()
        if viewer is not None:
            viewer.close()
    if meters.frames == 0:
        raise SourceError(f"source {src.uri!r} gave no frames")
    return _summary(config, stream, meters)


def _summary(config, stream, meters: _Meters) -> dict:
    def pct(values, q):
        return float(np.percentile(np.asarray(values), q)) if values else None

    seconds, last = time.perf_counter() - meters.started, meters.last
    pt, mk = meters.passthrough, meters.marker
    summary = {
        "frames": meters.frames, "seconds": round(seconds, 3), "fps": meters.frames / seconds if seconds > 0 else 0.0,
        "results_shown": len(mk), "skipped": stream.skipped, "invalid_frames": stream.invalid_frames,
        "seen": dict(last.seen) if last is not None else {},
        "passthrough_ms": {"p50": pct(pt, 50), "p99": pct(pt, 99), "max": max(pt) if pt else None},
        "marker_ms": {"p50": pct(mk, 50), "p99": pct(mk, 99), "max": max(mk) if mk else None},
        "answer": last.answer.answer if last is not None and last.answer is not None else None,
        "out": str(Path(config.outputs.mp4).resolve()) if config.outputs.mp4 else None,
        "log": str(Path(config.outputs.log).resolve()) if config.outputs.log else None,
    }
    truth = getattr(stream.source, "truth_seen", None)
    if truth is not None:   # the synthetic video knows how many objects there really were
        summary["truth_seen"] = {label: len(ids) for label, ids in truth.items()}
    return summary


def format_summary(summary: dict) -> str:
    """The lines ``gi-sdk demo`` prints at the end."""
    pt, mk = summary["passthrough_ms"], summary["marker_ms"]
    lines = [f"wrote {summary['frames']} frames to {summary['out']}" if summary["out"]
             else f"showed {summary['frames']} frames",
             f"{summary['fps']:.1f} fps; {summary['results_shown']} model results shown, "
             f"{summary['skipped']} frames skipped by the model",
             f"pass-through delay p50 {pt['p50']:.2f} ms, p99 {pt['p99']:.2f} ms, max {pt['max']:.2f} ms"]
    if mk["p50"] is not None:
        lines.append(f"marker delay p50 {mk['p50']:.0f} ms, p99 {mk['p99']:.0f} ms, max {mk['max']:.0f} ms")
    lines.append(f"distinct objects tracked: {summary['seen'] or 'none'}"
                 + (f"; in the synthetic truth: {summary['truth_seen']}" if "truth_seen" in summary else ""))
    if summary.get("answer") is not None:
        lines.append(f"latest answer: {summary['answer']!r}")
    if summary.get("log"):
        lines.append(f"results log: {summary['log']}")
    return "\n".join(lines)
