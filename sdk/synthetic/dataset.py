"""Writers: an MP4 of the synthetic video, and a Kvasir-style image/mask/VQA dataset.

Dataset layout under ``out_dir``::

    images/{img_id}.jpg           the frame (JPEG)
    masks/{img_id}_{k}.png        instance k of truth.jsonl's lists (white = visible pixels)
    polyp_masks/{img_id}.png      Kvasir-SEG style union of the polyp masks (white = polyp)
    truth.jsonl                   one line per image: img_id, boxes, labels, kinds, colours,
                                  size_classes, regions, fov, overlays, file names
    vqa.jsonl                     question/answer records (Kvasir-VQA-x1 schema, see .qa)
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .endoscope import SyntheticEndoscope
from .qa import qa_records


def write_video(scope: SyntheticEndoscope, path, n_frames: int, fps: float = 30.0,
                start: int = 0) -> str:
    """Write frames ``start`` .. ``start + n_frames - 1`` of ``scope`` to an MP4 (mp4v)."""
    path = str(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                             (scope.width, scope.height))
    if not writer.isOpened():
        raise OSError(f"cannot open a video writer for {path!r} (mp4v); check the folder and "
                      "that OpenCV was built with a video backend")
    try:
        for frame, _ in scope.frames(n_frames, start):
            writer.write(frame)
    finally:
        writer.release()
    return path


def _sample_frames(scope: SyntheticEndoscope, n_images: int, rng: np.random.Generator):
    # one frame per segment: every image shows another stretch of colon, scope and overlays
    i = 0
    for _ in range(n_images):
        start, stop = scope.segment_range(i)
        yield int(rng.integers(start, stop))
        i = stop


def write_dataset(out_dir, n_images: int, seed: int = 0, width: int = 720, height: int = 576,
                  jpeg_quality: int = 92) -> dict:
    """Write ``n_images`` synthetic frames with masks, truth and VQA records to ``out_dir``.

    Returns a summary: ``out_dir``, ``n_images``, ``n_instances``, ``n_polyps``,
    ``n_instruments``, ``n_qa``, ``images_with_polyps`` and the written ``files`` (paths
    relative to ``out_dir``, by kind).
    """
    out = Path(out_dir)
    for sub in ("images", "masks", "polyp_masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    scope = SyntheticEndoscope(seed=seed, width=width, height=height)
    rng = np.random.default_rng([seed, 0xDA7A])
    files = {"images": [], "masks": [], "polyp_masks": [], "truth": "truth.jsonl", "vqa": "vqa.jsonl"}
    summary = {"out_dir": str(out), "n_images": 0, "n_instances": 0, "n_polyps": 0,
               "n_instruments": 0, "n_qa": 0, "images_with_polyps": 0}
    with open(out / "truth.jsonl", "w", encoding="utf-8") as ft, \
            open(out / "vqa.jsonl", "w", encoding="utf-8") as fq:
        for n, i in enumerate(_sample_frames(scope, n_images, rng)):
            img_id = f"syn{seed:03d}_{n:05d}"
            frame, truth = scope.frame(i)
            image = f"images/{img_id}.jpg"
            cv2.imwrite(str(out / image), frame, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            masks = []
            for k, m in enumerate(truth.masks):
                masks.append(f"masks/{img_id}_{k}.png")
                cv2.imwrite(str(out / masks[-1]), m.astype(np.uint8) * 255)
            polyp = np.zeros((height, width), bool)
            for m, label in zip(truth.masks, truth.labels):
                if label == "polyp":
                    polyp |= m
            polyp_mask = f"polyp_masks/{img_id}.png"
            cv2.imwrite(str(out / polyp_mask), polyp.astype(np.uint8) * 255)
            record = {"img_id": img_id, "image": image, "masks": masks, "polyp_mask": polyp_mask,
                      "width": width, "height": height, "seed": seed, **truth.to_json()}
            ft.write(json.dumps(record) + "\n")
            qa = qa_records(img_id, truth, rng)
            for r in qa:
                fq.write(json.dumps(r) + "\n")
            files["images"].append(image)
            files["masks"] += masks
            files["polyp_masks"].append(polyp_mask)
            summary["n_images"] += 1
            summary["n_instances"] += len(truth)
            summary["n_polyps"] += truth.count("polyp")
            summary["n_instruments"] += truth.count("instrument")
            summary["n_qa"] += len(qa)
            summary["images_with_polyps"] += truth.count("polyp") > 0
    summary["files"] = files
    return summary
