"""The gi-sdk command line: demo writes a playable overlay video; errors exit cleanly."""
import json
import subprocess
import sys

import cv2
import pytest

pytest.importorskip("torch")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gi_sdk.cli", *args], capture_output=True, text=True)


def test_demo_writes_a_playable_overlay_video(tiny_checkpoint, tmp_path):
    out = tmp_path / "overlay.mp4"
    proc = _cli("demo", "--model", str(tiny_checkpoint), "--out", str(out), "--frames", "4",
                "--width", "320", "--height", "240")
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout  # it says where the video went
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 4 and frames[0].shape == (240, 320, 3)


def test_info_describes_a_checkpoint(tiny_checkpoint):
    proc = _cli("info", str(tiny_checkpoint))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["family"] == "florence2" and info["image_size"] == [768, 768]


def test_bad_model_path_is_a_clear_error_not_a_traceback(tmp_path):
    proc = _cli("demo", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2
    assert "missing" in proc.stderr and "Traceback" not in proc.stderr
