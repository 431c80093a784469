"""The tracker's start score for a model, chosen on synthetic videos whose truth is known.

``IouTracker`` starts a track only from a detection whose instance score is at least its
``start_score`` (ByteTrack's rule); how sure is sure depends on the model, so a bundle carries
its own (manifest ``tracking``). This chooses it the way every built-in round was chosen:

1. run ``detect`` on every frame of synthetic endoscope videos (seeds 8-15, 1280 x 720, 300
   frames each: ``make demo``'s video is seed 0 at that size, so seeds 0-7 stay for checking);
2. replay the tracker over candidate start scores, on every frame and on every second frame
   (a live stream skips frames while the model runs), and compare its distinct-polyp count
   with the truth (distinct polyps the video shows);
3. take the score with the least mean count error averaged with its two neighbours, so that a
   score at the edge of a cliff (one step higher and nothing starts) loses to one in the
   middle of a low stretch; a tie goes to the lower score (it misses fewer polyps).

The detections are computed once per video; the replay is cheap. Run it on a bundle::

    python -m gi_sdk.train.track_start sdk/models/synthetic-demo --json track_start.json

``gi_sdk.train.builtin`` runs it on every built-in model it installs and writes the choice
into the bundle's manifest.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEEDS = tuple(range(8, 16))
FRAME_SIZE = (1280, 720)
N_FRAMES = 300
STRIDES = (1, 2)
CANDIDATES = tuple(round(0.70 + 0.01 * i, 2) for i in range(26))   # 0.70 .. 0.95
LABEL = "polyp"


@dataclass
class VideoDetections:
    """A model's detections on every frame of one synthetic video, and the video's truth."""

    seed: int
    results: list            # per frame (boxes (N, 4), labels, scores (N,))
    true_count: int          # distinct polyps the frames show


def detect_video(session, seed: int, n_frames: int = N_FRAMES, size=FRAME_SIZE) -> VideoDetections:
    """Run ``session.detect`` on frames 0 .. n_frames - 1 of the synthetic video ``seed``."""
    from gi_sdk.synthetic import SyntheticEndoscope

    scope = SyntheticEndoscope(seed=seed, width=size[0], height=size[1])
    results, polyps = [], set()
    for frame, truth in scope.frames(n_frames):
        # track ids are stable within a segment; a cut shows another stretch of colon
        polyps.update((truth.segment, t) for t, label in zip(truth.track_ids, truth.labels) if label == LABEL)
        r = session.detect(frame)
        results.append((np.asarray(r.boxes, np.float32), list(r.labels), np.asarray(r.scores, np.float32)))
    return VideoDetections(seed=seed, results=results, true_count=len(polyps))


def counted(video: VideoDetections, start_score: float, stride: int = 1, **tracker_options) -> int:
    """Distinct polyps the tracker counts on every ``stride``-th result at this start score."""
    from gi_sdk.tracker import IouTracker

    tracker = IouTracker(start_score=start_score, **tracker_options)
    for boxes, labels, scores in video.results[::stride]:
        tracker.update(boxes, labels, scores)
    return int(tracker.seen.get(LABEL, 0))


def choose(videos: list, candidates=CANDIDATES, strides=STRIDES) -> dict:
    """The start score with the least neighbour-averaged mean count error, and every figure."""
    candidates = sorted(float(c) for c in candidates)
    errors = np.array([[np.mean([abs(counted(v, c, s) - v.true_count) for v in videos]) for s in strides]
                       for c in candidates])                    # (candidates, strides)
    mean = errors.mean(axis=1)
    smooth = np.array([mean[max(i - 1, 0): i + 2].mean() for i in range(len(candidates))])
    best = int(np.flatnonzero(smooth == smooth.min())[0])       # ties: the lower score
    return {
        "start_score": candidates[best],
        "rule": "least mean |counted - true| over the videos and strides, averaged with the two "
                "neighbouring candidates; ties to the lower score",
        "seeds": [v.seed for v in videos],
        "true_counts": [v.true_count for v in videos],
        "strides": list(strides),
        "candidates": [{"start_score": c, "mean_error": {f"every_{s}": float(e) for s, e in zip(strides, row)},
                        "smoothed": float(sm)} for c, row, sm in zip(candidates, errors, smooth)],
        "counts_at_choice": {f"every_{s}": [counted(v, candidates[best], s) for v in videos] for s in strides},
    }


def choose_start_score(model, seeds=SEEDS, n_frames: int = N_FRAMES, size=FRAME_SIZE,
                       candidates=CANDIDATES, log=print) -> dict:
    """Detect on each seed's video with ``model`` (a bundle or checkpoint folder, or a
    ``Session``) and ``choose`` the start score; returns the report."""
    from gi_sdk import Session

    session = model if isinstance(model, Session) else Session(model, backend="auto")
    videos = []
    for seed in seeds:
        videos.append(detect_video(session, seed, n_frames, size))
        if log:
            log(f"seed {seed}: {videos[-1].true_count} polyps, {sum(len(r[0]) for r in videos[-1].results)} boxes")
    report = choose(videos, candidates)
    report.update(n_frames=int(n_frames), frame_size=list(size))
    return report


def table(report: dict) -> str:
    """The report's candidates as a Markdown table."""
    keys = [f"every_{s}" for s in report["strides"]]
    lines = ["| start score | " + " | ".join(f"mean error, {k.replace('_', ' ')} frame" for k in keys)
             + " | smoothed |", "|---:|" + "---:|" * (len(keys) + 1)]
    for row in report["candidates"]:
        mark = "**" if row["start_score"] == report["start_score"] else ""
        lines.append(f"| {mark}{row['start_score']:.2f}{mark} | "
                     + " | ".join(f"{row['mean_error'][k]:.2f}" for k in keys) + f" | {row['smoothed']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="bundle or checkpoint folder")
    parser.add_argument("--seeds", default="8-15", help="synthetic video seeds: A-B or a comma list")
    parser.add_argument("--frames", type=int, default=N_FRAMES, help="frames per video")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if "-" in args.seeds:
        lo, hi = (int(x) for x in args.seeds.split("-"))
        seeds = range(lo, hi + 1)
    else:
        seeds = [int(x) for x in args.seeds.split(",")]
    report = choose_start_score(args.model, seeds, args.frames)
    print(table(report))
    print(f"start score: {report['start_score']} (counts {report['counts_at_choice']} "
          f"for {report['true_counts']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
