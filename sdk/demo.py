"""The overlay demo: run a Session over endoscope video and write what it sees onto it.

``gi-sdk demo --model CHECKPOINT --out overlay.mp4`` reads the built-in synthetic
endoscope video (or ``--source video.mp4``), runs one task per frame and writes an MP4 with
the results drawn on. This first version runs the model on every frame in turn; the live
version with a latest-frame buffer and tracking replaces the loop, not the API.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError
from .overlay import draw_hud, draw_result


def _frames(source, n_frames: int, width: int, height: int, seed: int):
    """Yield up to ``n_frames`` BGR frames from the synthetic endoscope or a video file."""
    if source is None:
        from .synthetic import SyntheticEndoscope

        scope = SyntheticEndoscope(seed=seed, width=width, height=height)
        for i in range(n_frames):
            yield scope.frame(i)[0]
        return
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise SourceError(f"cannot open video source {source!r}; give a readable video file path")
    try:
        for _ in range(n_frames):
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def run_demo(session, out: str | Path, task: str = "detect", text: str | None = None,
             source=None, n_frames: int = 90, fps: float = 30.0, width: int = 1280,
             height: int = 720, seed: int = 0, log=print) -> dict:
    """Run ``task`` on each frame, draw the result and the HUD, write ``out`` (MP4).

    Returns a summary: frames written, mean and p99 model milliseconds per frame, output path.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    model_ms = []
    for i, frame in enumerate(_frames(source, n_frames, width, height, seed)):
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (frame.shape[1], frame.shape[0]))
            if not writer.isOpened():
                raise SourceError(f"cannot write video to {out}; check the folder is writable")
        start = time.perf_counter()
        result = session.run(frame, task, text)
        model_ms.append((time.perf_counter() - start) * 1e3)
        shown = draw_result(frame, result)
        draw_hud(shown, [
            f"gi_sdk {session.backend_name} | task {task} | frame {i}",
            f"model {model_ms[-1]:.0f} ms | confidence {result.confidence:.2f} | instances {len(result)}",
        ])
        writer.write(shown)
        if i % 30 == 0:
            log(f"frame {i}: {len(result)} instances, {model_ms[-1]:.0f} ms, answer {result.answer[:60]!r}")
    if writer is None:
        raise SourceError(f"source {source!r} gave no frames")
    writer.release()
    ms = np.asarray(model_ms)
    return {"frames": len(ms), "mean_ms": float(ms.mean()), "p99_ms": float(np.percentile(ms, 99)),
            "out": str(out.resolve())}
