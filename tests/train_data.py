"""Small on-disk data sets in every layout gi_sdk.train reads, good and bad records mixed.

Used by tests/test_train_*.py. Images are drawn (a pink disc on red mucosa = a polyp), so
the targets are known exactly and writing them takes milliseconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

W, H = 64, 48


def scene(k: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(BGR image, bool mask, box) of scene ``k``: one disc at a position that depends on k."""
    img = np.full((H, W, 3), (60, 60, 170), np.uint8)
    cx, cy, r = 14 + (k * 9) % 36, 14 + (k * 7) % 20, 8
    cv2.circle(img, (cx, cy), r, (150, 140, 230), -1)
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (cx, cy), r, 255, -1)
    return img, mask > 0, (cx - r, cy - r, cx + r + 1, cy + r + 1)


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")
    return path


def _image(path: Path, k: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), scene(k)[0])


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 this is not a jpeg")


def write_vqa(root: Path) -> dict:
    """Kvasir-VQA-x1 and explanation records over 4 images; returns expected skips per kind."""
    for k in range(4):
        _image(root / "images" / f"img{k}.jpg", k)
    _corrupt(root / "images" / "broken.jpg")
    good = [{"img_id": f"img{k}", "question": q, "answer": a, "complexity": 1, "question_class": ["polyp_count"]}
            for k in range(4) for q, a in (("Is there a polyp?", "Yes, one polyp."),
                                           ("How many polyps are there?", "There is one polyp."))]
    bad = [
        {"img_id": "gone", "question": "Is there a polyp?", "answer": "Yes."},      # missing image
        {"img_id": "broken", "question": "Is there a polyp?", "answer": "Yes."},    # corrupt image
        "{not json",                                                               # unparseable line
        {"img_id": "img0", "question": "What colour is it?"},                      # no answer
    ]
    _jsonl(root / "vqa.jsonl", good + bad)
    explained = [{"img_id": f"img{k}", "question": "Is there a polyp?", "answer": "Yes.",
                  "textual_explanation": "A raised pink lesion is visible."} for k in range(4)]
    _jsonl(root / "explanations.jsonl", explained + [{"img_id": "img1", "question": "Why?", "answer": "Yes."}])
    return {"vqa": {"missing image": 1, "corrupt image": 1, "unparseable record": 2},
            "explanations": {"unparseable record": 1}}


def write_seg(root: Path) -> dict:
    """Kvasir-SEG layout: 4 good image/mask pairs and one of each bad kind."""
    for k in range(4):
        img, mask, _ = scene(k)
        cv2.imwrite(str(_mk(root / "images" / f"s{k}.jpg")), img)
        # one mask with another suffix, as some sets ship PNG masks for JPEG images
        cv2.imwrite(str(_mk(root / "masks" / (f"s{k}.png" if k == 3 else f"s{k}.jpg"))), mask.astype(np.uint8) * 255)
    _image(root / "images" / "nomask.jpg", 5)
    _image(root / "images" / "black.jpg", 6)
    cv2.imwrite(str(root / "masks" / "black.jpg"), np.zeros((H, W), np.uint8))
    _image(root / "images" / "small.jpg", 7)
    cv2.imwrite(str(root / "masks" / "small.jpg"), np.full((H // 2, W // 2), 255, np.uint8))
    _corrupt(root / "images" / "broken.jpg")
    cv2.imwrite(str(root / "masks" / "broken.jpg"), np.full((H, W), 255, np.uint8))
    return {"missing mask": 1, "empty mask": 1, "mismatched mask": 1, "corrupt image": 1}


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_points(root: Path) -> dict:
    """MedMultiPoints-style records: 4 good, one of each bad kind."""
    rows = []
    for k in range(4):
        _image(root / f"p{k}.png", k)
        _, _, box = scene(k)
        centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
        rows.append({"image": f"p{k}.png", "img_size": [W, H], "points": [centre], "bbox": [list(box)],
                     "count": 1, "label": "polyp", "collection_method": "synthetic", "organ": "colon"})
    rows += [
        {**rows[0], "count": 3},                                   # count disagrees with the boxes
        {**rows[1], "img_size": [W * 2, H * 2]},                   # coordinates for another size
        {**rows[2], "points": [[1, 2, 3]]},                        # a point is not (x, y)
        {**rows[3], "image": "gone.png"},                          # missing image
    ]
    _jsonl(root / "points.jsonl", rows)
    return {"count does not match the boxes or points": 1, "mismatched image size": 1,
            "unparseable record": 1, "missing image": 1}


def write_prefix_suffix(root: Path) -> dict:
    """dataset/{train,valid}/annotations.jsonl with <OD>, <MedVQA> and segmentation lines."""
    for split, ks in (("train", range(3)), ("valid", range(3, 5))):
        rows = []
        for k in ks:
            _image(root / split / f"f{k}.jpg", k)
            _, _, box = scene(k)
            locs = "".join(f"<loc_{int(v * 1000 / s)}>" for v, s in zip(box, (W, H, W, H)))
            rows += [{"image": f"f{k}.jpg", "prefix": "<OD>", "suffix": "polyp" + locs},
                     {"image": f"f{k}.jpg", "prefix": "<MedVQA> Is there a polyp?", "suffix": "Yes."}]
        rows += [{"image": f"f{ks[0]}.jpg", "prefix": "<NOT_A_TASK> hi", "suffix": "x"},  # unknown task
                 {"image": "gone.jpg", "prefix": "<OD>", "suffix": "polyp"}]             # missing image
        _jsonl(root / split / "annotations.jsonl", rows)
    return {"unknown task prefix": 2, "missing image": 2}


def all_sources(root: Path, synthetic: dict | None = None) -> tuple[list, dict]:
    """Source specs (dicts) of every kind over data written under ``root``; expected skips by name."""
    expect = write_vqa(root / "vqa")
    specs = [
        {"kind": "synthetic", "name": "synthetic",
         "params": synthetic or {"n_images": 3, "width": 96, "height": 72, "qa_per_image": 2}},
        {"kind": "kvasir-vqa-x1", "name": "vqa", "path": str(root / "vqa" / "vqa.jsonl")},
        {"kind": "explanations", "name": "explanations", "path": str(root / "vqa" / "explanations.jsonl"),
         "params": {"images": str(root / "vqa" / "images")}},
        {"kind": "kvasir-seg", "name": "seg", "path": str(root / "seg")},
        {"kind": "points", "name": "points", "path": str(root / "points" / "points.jsonl")},
        {"kind": "jsonl", "name": "prefix", "path": str(root / "dataset")},
    ]
    expect = {"synthetic": {}, **expect, "seg": write_seg(root / "seg"),
              "points": write_points(root / "points"), "prefix": write_prefix_suffix(root / "dataset")}
    return specs, expect
