"""Choosing a model's tracker start score on synthetic videos (gi_sdk.train.track_start)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gi_sdk.train.track_start import VideoDetections, choose, counted, detect_video


def _video(n_frames: int = 12) -> VideoDetections:
    """Two real polyps scoring 0.9 and 0.8 on every frame, and a steady false box at 0.75."""
    boxes = np.array([[10, 10, 50, 50], [100, 100, 150, 150], [200, 20, 240, 60]], np.float32)
    frame = (boxes, ["polyp"] * 3, np.array([0.9, 0.8, 0.75], np.float32))
    return VideoDetections(seed=0, results=[frame] * n_frames, true_count=2)


def test_counted_follows_the_start_score():
    video = _video()
    assert [counted(video, s) for s in (0.7, 0.78, 0.85, 0.95)] == [3, 2, 1, 0]
    assert counted(video, 0.78, stride=2) == 2
    # a box seen once never becomes a track (min_hits 2)
    once = VideoDetections(seed=0, results=_video(1).results, true_count=2)
    assert counted(once, 0.0) == 0


def test_choose_takes_the_middle_of_the_low_stretch_and_says_why():
    # error 1 up to 0.75 (the false box counts), 0 from 0.76 to 0.80, 1 to 0.90, then 2
    report = choose([_video()])
    by_score = {row["start_score"]: row for row in report["candidates"]}
    assert by_score[0.75]["mean_error"]["every_1"] == 1 and by_score[0.78]["mean_error"]["every_2"] == 0
    assert by_score[0.95]["mean_error"]["every_1"] == 2
    # 0.76's neighbour 0.75 has error 1, so the first score whose neighbours are both right wins
    assert report["start_score"] == 0.77
    assert by_score[0.77]["smoothed"] == 0 < by_score[0.76]["smoothed"]
    assert report["counts_at_choice"] == {"every_1": [2], "every_2": [2]} and report["true_counts"] == [2]
    json.dumps(report)   # goes into the bundle as track_start.json


def test_detect_video_counts_the_distinct_polyps_the_frames_show():
    from gi_sdk import Session
    from gi_sdk.synthetic import SyntheticEndoscope

    session = Session()
    video = detect_video(session, seed=0, n_frames=4, size=(455, 256))
    scope = SyntheticEndoscope(seed=0, width=455, height=256)
    truths = [scope.frame(i)[1] for i in range(4)]
    shown = {(t.segment, k) for t in truths for k, label in zip(t.track_ids, t.labels) if label == "polyp"}
    assert video.true_count == len(shown) > 0
    assert len(video.results) == 4
    boxes, labels, scores = video.results[0]
    assert boxes.shape == (len(labels), 4) and scores.shape == (len(labels),)
    with pytest.raises(ValueError):
        counted(video, 1.5)   # not a score: IouTracker refuses it


def test_choose_tracking_writes_the_choice_into_the_bundle(tmp_path):
    """The built-in model's install step: the score goes into the manifest, the figures into
    track_start.json, hashed like every bundle file, and Session.stream's tracker takes it."""
    import shutil

    from gi_sdk.bundle import Bundle, builtin_bundle
    from gi_sdk.checkpoint import Checkpoint
    from gi_sdk.train.builtin import choose_tracking

    bundle = tmp_path / "bundle"
    shutil.copytree(builtin_bundle(), bundle)
    score = choose_tracking(bundle, seeds=[0], n_frames=3, size=(455, 256), log=None)
    report = json.loads((bundle / "track_start.json").read_text())
    assert score == report["start_score"] and report["seeds"] == [0] and report["n_frames"] == 3
    opened = Bundle.open(bundle)   # hashes checked: the rewritten manifest lists the new file
    assert "track_start.json" in opened.manifest["files"]
    assert opened.manifest["tracking"] == {"start_score": score, "chosen_by": "track_start.json"}
    assert Checkpoint.open(bundle).track_start_score == score
