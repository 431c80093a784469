"""The frames an export checks itself on and calibrates with.

Three kinds, each a list of ``(name, BGR uint8 frame)``: synthetic frames
(``gi_sdk.synthetic.SyntheticEndoscope``, always there), real frames from a folder of images
(the PolypGen sample beside the checkout when present), and frames from a video file.
Verification, calibration and the accuracy report draw from disjoint seeds and files, so
the report's held-out set never contains a calibration frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2

from gi_sdk.errors import SourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")

#: Synthetic seeds: verification, calibration and the held-out report set never share one.
VERIFY_SEED, CALIBRATION_SEED, HELD_OUT_SEED = 11, 101, 201


def real_frames_dir() -> Path | None:
    """Folder of real endoscopy frames to check exports on: ``$GI_SDK_REAL_FRAMES``, else the
    PolypGen sample at ``../shared/data/polypgen/images`` beside the checkout; None if absent."""
    env = os.environ.get("GI_SDK_REAL_FRAMES")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "polypgen" / "images"
    return folder if folder.is_dir() else None


def synthetic_frames(count: int, seed: int, size=(640, 480)) -> list:
    """``count`` frames of the synthetic endoscope ``seed``, 37 frames apart (a varied set)."""
    from gi_sdk.synthetic import SyntheticEndoscope

    scope = SyntheticEndoscope(seed=seed, width=size[0], height=size[1])
    return [(f"synthetic-{seed}-{i * 37}", scope.frame(i * 37)[0]) for i in range(count)]


def folder_frames(folder, count: int | None = None, skip=()) -> list:
    """Up to ``count`` images of ``folder`` in name order, leaving out the names in ``skip``."""
    paths = [p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in skip]
    frames = []
    for path in paths[:count]:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is not None:
            frames.append((path.name, frame))
    return frames


def video_frames(path, count: int) -> list:
    """``count`` frames spread evenly over the video at ``path``."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}; give a readable video file or a folder of images")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    step = max(1, total // count)
    frames = []
    for i in range(0, total, step):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, frame = cap.read()
        if not ok:
            break
        frames.append((f"{Path(path).name}#{i}", frame))
        if len(frames) == count:
            break
    cap.release()
    return frames


def calibration_frames(source=None, count: int = 32) -> tuple[list, str]:
    """(frames, description) for int8 static calibration: a folder of images, a video, or
    (``source`` None) synthetic frames. Raises SourceError when ``source`` yields none."""
    if source is None:
        return synthetic_frames(count, CALIBRATION_SEED), f"synthetic endoscope seed {CALIBRATION_SEED}"
    path = Path(source).expanduser()
    if path.is_dir():
        frames = folder_frames(path, count)
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        frames = video_frames(path, count)
    else:
        raise SourceError(f"calibration source {path} is neither a folder of images nor a video file "
                          f"({', '.join(VIDEO_SUFFIXES)})")
    if not frames:
        raise SourceError(f"calibration source {path} gave no readable frames")
    return frames, str(path.resolve())
