"""Source kind ``synthetic``: frames of ``gi_sdk.synthetic.SyntheticEndoscope`` with exact truth.

params: ``n_images`` (50), ``seed`` (0), ``width`` (320), ``height`` (256), ``tasks`` (all of
``SYNTHETIC_TASKS``), ``qa_per_image`` (3 questions from ``qa_records``), ``frames_per_scene`` (1),
``polygon_points`` (100: most vertices per polygon of a segment target; fewer = shorter
targets, for a model that must write them in real time), ``min_scene_polyps`` (0: scenes
holding fewer polyps are passed over before they are painted, e.g. 3 for a source of crowded
scenes beside an ordinary one; each frame's truth still counts what is visible in it).
By default one frame per segment of the synthetic colon, so every image shows another scene;
painting a scene costs ~0.2 s, so large sets take ``frames_per_scene`` frames spread over each
segment (the camera has moved between them: other views of the same polyps).
"""
from __future__ import annotations

import numpy as np

from gi_sdk.synthetic import SyntheticEndoscope, qa_records
from gi_sdk.tasks import build_prompt

from .examples import Example, SourceReport
from .targets import count_target, detect_target, ground_target, mask_centres, point_target, segment_target

SYNTHETIC_TASKS = ("detect", "segment", "count", "point", "ask", "ground")


def _polyps(truth):
    keep = [i for i, lab in enumerate(truth.labels) if lab == "polyp"]
    return truth.boxes[keep].reshape(-1, 4), truth.masks[keep]


def _examples_for(frame, truth, image_id, tasks, qa, source, polygon_points=100) -> list[Example]:
    size = (frame.shape[1], frame.shape[0])
    boxes, masks = _polyps(truth)
    out = []

    def add(task, text, target):
        out.append(Example(frame, image_id, task, build_prompt(task, text), target, source))

    if "detect" in tasks:
        add("detect", None, detect_target(truth.boxes, truth.labels, size))
    if "count" in tasks:
        add("count", "polyp", count_target(boxes, "polyp", size))
    if "point" in tasks:
        add("point", "polyp", point_target(mask_centres(masks), "polyp", size))
    if len(boxes) and "ground" in tasks:
        add("ground", "polyp", ground_target("polyp", boxes, size))
    if len(boxes) and "segment" in tasks:
        target = segment_target(masks.any(axis=0), polygon_points)
        if target is not None:  # a polyp too small for a polygon: no segment example
            add("segment", "polyp", target)
    for r in qa if "ask" in tasks else ():
        add("ask", r["question"], r["answer"])
    return out


#: Scenes in a row a ``min_scene_polyps`` filter may pass over before it gives up (a quarter
#: of the synthetic colon's scenes hold 3 polyps, its most).
MAX_PASSED_OVER = 200


def _next_scene(scope, start: int, min_polyps: int, report: SourceReport) -> tuple[int, int]:
    """Frame range of the first scene from frame ``start`` holding >= ``min_polyps`` polyps;
    the ones passed over are counted in ``report.filtered``."""
    reason = f"scene with fewer than {min_polyps} polyps"
    for _ in range(MAX_PASSED_OVER):
        lo, hi = scope.segment_range(start)
        if min_polyps <= 0 or len(scope.describe_segment(lo).polyps) >= min_polyps:
            return lo, hi
        report.filtered[reason] = report.filtered.get(reason, 0) + 1
        start = hi
    raise ValueError(f"synthetic source: no scene with >= {min_polyps} polyps in {MAX_PASSED_OVER} scenes "
                     f"from frame {start}; lower min_scene_polyps")


def synthetic_examples(spec, report: SourceReport) -> list[Example]:
    """Examples of every task in ``params.tasks`` for ``params.n_images`` synthetic frames."""
    p = dict(spec.params)
    tasks = tuple(p.get("tasks", SYNTHETIC_TASKS))
    unknown = sorted(set(tasks) - set(SYNTHETIC_TASKS))
    if unknown:
        raise ValueError(f"synthetic source: unknown tasks {unknown}; known: {list(SYNTHETIC_TASKS)}")
    seed = int(p.get("seed", 0))
    scope = SyntheticEndoscope(seed=seed, width=int(p.get("width", 320)), height=int(p.get("height", 256)))
    rng = np.random.default_rng([seed, 0x7EA1])
    n_qa = int(p.get("qa_per_image", 3))
    polygon_points = int(p.get("polygon_points", 100))
    per_scene = int(p.get("frames_per_scene", 1))
    if per_scene < 1:
        raise ValueError(f"synthetic source: frames_per_scene must be >= 1, got {per_scene}")
    min_polyps = int(p.get("min_scene_polyps", 0))
    examples, start, picks = [], 0, []
    for n in range(int(p.get("n_images", 50))):
        if not picks:
            lo, hi = _next_scene(scope, start, min_polyps, report)
            start = hi
            # one frame from each of per_scene equal stretches of the segment, in playing order
            edges = np.linspace(lo, hi, per_scene + 1).astype(int)
            picks = [int(rng.integers(a, max(a + 1, b))) for a, b in zip(edges[:-1], edges[1:])]
        frame, truth = scope.frame(picks.pop(0))
        image_id = f"synthetic{seed:03d}_{n:05d}"
        report.records += 1
        report.images += 1
        qa = qa_records(image_id, truth, rng, n_single=n_qa, n_pairs=0, n_triples=0)[:n_qa]
        examples += report.add(_examples_for(frame, truth, image_id, tasks, qa, report.name, polygon_points))
    return examples
