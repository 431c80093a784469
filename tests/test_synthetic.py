"""gi_sdk.synthetic: deterministic synthetic colonoscopy video, its truth, QA and writers.

Frames are rendered at 320x240 (a few ms each) so the whole file stays fast; one test
renders a full-HD frame to check the field of view at the size the live demo uses.
"""
from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from gi_sdk.synthetic import SyntheticEndoscope, Truth, qa_records, write_dataset
from gi_sdk.synthetic.qa import NUMBERS
from gi_sdk.synthetic.truth import region, size_class

W, H = 320, 240
POLYPGEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "polypgen"


@pytest.fixture(scope="module")
def scope():
    return SyntheticEndoscope(seed=1, width=W, height=H)


@pytest.fixture(scope="module")
def survey():
    """(seed, index, frame, truth) every 6th frame of the first ~1500 frames of three seeds."""
    out = []
    for seed in (0, 1, 2):
        s = SyntheticEndoscope(seed=seed, width=W, height=H)
        out += [(seed, i, *s.frame(i)) for i in range(0, 1500, 6)]
    return out


def _disc(fov, shape):
    cx, cy, r = fov
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("i", [
    0,      # first frame of the first segment: the cold path (segment painted on demand)
    157,    # around the first segment cut for seed 1
    611,    # a later segment, reached without rendering what comes before
])
def test_same_seed_same_frame(i):
    a, ta = SyntheticEndoscope(seed=7, width=W, height=H).frame(i)
    b, tb = SyntheticEndoscope(seed=7, width=W, height=H).frame(i)
    assert np.array_equal(a, b)
    assert np.array_equal(ta.masks, tb.masks) and ta.labels == tb.labels


def test_random_access_equals_playback(scope):
    # frame(i) may not depend on which frames were asked for before it (or on prefetching)
    played = [f for f, _ in SyntheticEndoscope(seed=1, width=W, height=H).frames(5, start=300)]
    for k, f in enumerate(played):
        assert np.array_equal(f, scope.frame(300 + k)[0])


@pytest.mark.parametrize("seed_a, seed_b", [(0, 1), (1, 2), (3, 4)])  # several pairs: not one lucky one
def test_different_seeds_differ(seed_a, seed_b):
    a, _ = SyntheticEndoscope(seed=seed_a, width=W, height=H).frame(40)
    b, _ = SyntheticEndoscope(seed=seed_b, width=W, height=H).frame(40)
    assert np.abs(a.astype(int) - b).mean() > 5


# ---------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("w, h", [
    (320, 240),     # small: what the tests and quick previews use
    (640, 360),     # 16:9 with room for the OSD text beside the view
    (200, 300),     # portrait: the field of view must fit the narrow side
])
def test_frame_and_truth_shapes(w, h):
    frame, t = SyntheticEndoscope(seed=2, width=w, height=h).frame(30)
    assert frame.shape == (h, w, 3) and frame.dtype == np.uint8
    n = len(t)
    assert t.boxes.shape == (n, 4) and t.boxes.dtype == np.float32
    assert t.masks.shape == (n, h, w) and t.masks.dtype == bool
    for field in (t.labels, t.kinds, t.colours, t.size_classes, t.track_ids):
        assert len(field) == n
    assert t.areas.shape == (n,)


def test_empty_truth_has_real_arrays():
    # consumers index boxes[:, 0] and masks.any(0) without special-casing "nothing there"
    t = Truth.empty(H, W)
    assert len(t) == 0 and t.count("polyp") == 0
    assert t.boxes.shape == (0, 4) and t.boxes.dtype == np.float32
    assert t.masks.shape == (0, H, W) and t.masks.dtype == bool


def test_empty_frames_occur_with_empty_arrays(survey):
    # a frame with nothing visible must come back as Truth.empty, not as lists or None
    empties = [t for *_, t in survey if len(t) == 0]
    assert empties, "expected some frames without any object"
    assert all(t.boxes.shape == (0, 4) and t.masks.shape == (0, H, W) for t in empties)


# ---------------------------------------------------------------------------- field of view
@pytest.mark.parametrize("w, h", [(W, H), (1920, 1080)])  # test size and the live demo's size
def test_corners_black_centre_bright(w, h):
    frame, t = SyntheticEndoscope(seed=3, width=w, height=h).frame(12)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    # the top-right corner is outside every field of view and never holds overlays
    k = max(2, h // 20)
    assert grey[:k, -k:].max() == 0
    # outside the disc only the overlays (text top left, green box bottom left) may be lit
    cx, cy, r = t.fov
    right = np.zeros_like(grey, bool)
    right[:, int(cx):] = True
    assert grey[right & ~_disc(t.fov, grey.shape)].max(initial=0) == 0
    centre = grey[int(cy - r / 2): int(cy + r / 2), int(cx - r / 2): int(cx + r / 2)]
    assert centre.mean() > 40


def test_masks_inside_fov(survey):
    for *_, t in survey:
        if len(t):
            assert not (t.masks.any(0) & ~_disc(t.fov, (H, W))).any()


def test_boxes_tight_around_masks(survey):
    for *_, t in survey:
        for box, m in zip(t.boxes, t.masks):
            ys, xs = np.nonzero(m)
            assert ys.size > 0
            assert tuple(box) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_count_agrees_with_labels(survey):
    for *_, t in survey:
        assert t.count("polyp") + t.count("instrument") == len(t)
        assert t.count("polyp") == sum(lab == "polyp" for lab in t.labels)


# ---------------------------------------------------------------------------- video
def test_consecutive_frames_close_distant_frames_differ(scope):
    start, stop = scope.segment_range(0)
    for i in (start + 10, start + 60):
        a, _ = scope.frame(i)
        b, _ = scope.frame(i + 1)
        c, _ = scope.frame(i + 60)
        near = np.abs(a.astype(int) - b).mean()
        far = np.abs(a.astype(int) - c).mean()
        assert near < 4, "a camera drift, not a cut"
        assert far > 3 * near and far > 5


def test_objects_persist_across_frames(scope):
    # a tracker needs the same track id on the same polyp from one frame to the next
    start, stop = scope.segment_range(0)
    ids = [set(scope.frame(i)[1].track_ids) for i in range(start + 20, start + 40)]
    assert any(ids) and all(a & b for a, b in zip(ids, ids[1:]) if a and b)


def test_variety_over_many_frames(survey):
    counts = collections.Counter(t.count("polyp") for *_, t in survey)
    assert {0, 1, 2, 3} <= set(counts), counts
    assert any(t.count("instrument") for *_, t in survey)
    assert any(t.text_overlay for *_, t in survey) and not all(t.text_overlay for *_, t in survey)
    assert any(t.box_artifact for *_, t in survey) and not all(t.box_artifact for *_, t in survey)
    kinds = {k for *_, t in survey for k in t.kinds}
    assert {"sessile", "pedunculated", "forceps", "snare"} <= kinds


def test_truth_matches_pixels(survey):
    # where the truth says "instrument" the pixels are grey metal or white plastic (low
    # saturation); where it says "polyp" they are tissue (red dominant, not black)
    for *_, frame, t in survey:
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        for lab, m in zip(t.labels, t.masks):
            if m.sum() < 30:
                continue
            sat = np.median(hsv[..., 1][m])
            if lab == "instrument":
                assert sat < 80
            else:
                bgr = frame[m].astype(float).mean(0)
                assert bgr[2] > bgr[0] and bgr.max() > 10   # deep in the lumen polyps are dim


@pytest.mark.skipif(not POLYPGEN.is_dir(), reason="PolypGen sample not present at ../shared/data/polypgen")
def test_colour_statistics_like_polypgen():
    # realism floor: inside the view, synthetic frames have the red > green > blue balance
    # and brightness of real colonoscopy frames (per-channel means within the real range)
    def mean_bgr(img):
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return img[grey > 20].reshape(-1, 3).mean(0)

    real = np.array([mean_bgr(cv2.imread(str(p))) for p in sorted((POLYPGEN / "images").glob("*.jpg"))])
    lo, hi = real.min(0) - 25, real.max(0) + 25
    for seed in range(6):
        m = mean_bgr(SyntheticEndoscope(seed=seed, width=W, height=H).frame(37 * seed + 10)[0])
        assert m[2] > m[1] > m[0]
        assert np.all(m >= lo) and np.all(m <= hi), (m, lo, hi)


# ---------------------------------------------------------------------------- truth helpers
@pytest.mark.parametrize("box, expected", [
    ((150, 110, 170, 130), "center"),          # centre of the view
    ((20, 10, 60, 40), "upper-left"),          # top-left of the disc
    ((260, 200, 300, 230), "lower-right"),     # bottom-right
    ((150, 10, 170, 30), "upper-center"),      # straight above the centre
    ((280, 110, 300, 130), "center-right"),    # straight right of the centre
])
def test_region_words(box, expected):
    assert region(box, (160, 120, 130)) == expected


@pytest.mark.parametrize("fraction, expected", [(0.001, "small"), (0.02, "medium"), (0.2, "large")])
def test_size_classes(fraction, expected):
    assert size_class(fraction) == expected


# ---------------------------------------------------------------------------- QA
def _said_number(answer: str):
    words = re.findall(r"[a-z]+|\d+", answer.lower())
    for w in words:
        if w in NUMBERS:
            return NUMBERS.index(w)
        if w.isdigit():
            return int(w)
    return None


def test_qa_consistent_with_truth(survey):
    rng = np.random.default_rng(0)
    for seed, i, _, t in survey[::3]:
        records = qa_records(f"s{seed}_{i}", t, rng)
        assert {r["complexity"] for r in records} == {1, 2, 3}
        n = t.count("polyp")
        for r in records:
            assert set(r) == {"img_id", "question", "answer", "complexity", "question_class", "original"}
            assert r["complexity"] == len(r["question_class"]) == len(r["original"])
            assert r["question"].endswith("?") and r["answer"].endswith(".")
            for o, cls in zip(r["original"], r["question_class"]):
                if cls == "polyp_presence":
                    assert o["answer"].startswith("Yes" if n else "No")
                if cls == "polyp_count":
                    assert _said_number(o["answer"]) == n
                if cls == "instrument_presence":
                    assert o["answer"].startswith("Yes" if t.count("instrument") else "No")
                if cls == "text_presence":
                    assert o["answer"].startswith("Yes" if t.text_overlay else "No")
                if cls == "box_artifact_presence":
                    assert o["answer"].startswith("Yes" if t.box_artifact else "No")
                if cls == "polyp_location":
                    for word, lab in zip(t.regions(), t.labels):
                        assert lab != "polyp" or word in o["answer"]
            if r["question_class"][:1] == ["polyp_count"] or r["question_class"][:1] == ["polyp_presence"]:
                assert _said_number(r["answer"]) in (n, None)


@pytest.mark.parametrize("n_polyps, expected", [
    (0, "No, there are no polyps in this image."),                          # negative
    (2, "Yes, there are two polyps, in the upper-left and the center."),    # merged count + where
])
def test_merged_presence_count_location(n_polyps, expected):
    boxes = np.array([[20, 10, 60, 40], [150, 110, 170, 130]], np.float32)[:n_polyps].reshape(-1, 4)
    t = Truth(boxes, np.zeros((n_polyps, H, W), bool), labels=["polyp"] * n_polyps,
              kinds=["sessile"] * n_polyps, colours=["pink"] * n_polyps,
              size_classes=["small"] * n_polyps, areas=np.zeros(n_polyps, np.float32),
              track_ids=list(range(n_polyps)), fov=(160, 120, 130))
    from gi_sdk.synthetic.qa import atoms_for, merge
    atoms = atoms_for(t, np.random.default_rng(0))
    if n_polyps:
        q, a = merge([atoms["polyp_presence"], atoms["polyp_count"], atoms["polyp_location"]])
        assert q == "Are there any polyps, how many and where are they?"
    else:
        q, a = merge([atoms["polyp_presence"], atoms["polyp_count"]])
    assert a == expected


# ---------------------------------------------------------------------------- writers
def test_write_video_reads_back(tmp_path):
    path = SyntheticEndoscope(seed=4, width=W, height=H).write_video(tmp_path / "clip.mp4", 24, fps=12)
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n, size = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, frame.shape
    cap.release()
    assert n == 24 and size == (H, W, 3)


def test_write_dataset(tmp_path):
    summary = write_dataset(tmp_path, 5, seed=2, width=W, height=H)
    assert summary["n_images"] == 5
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    vqa = [json.loads(line) for line in (tmp_path / "vqa.jsonl").read_text().splitlines()]
    assert len(truth) == 5 and len(vqa) == summary["n_qa"] > 0
    for kind in ("images", "masks", "polyp_masks"):
        for rel in summary["files"][kind]:
            assert (tmp_path / rel).is_file(), rel
    assert summary["n_instances"] == sum(len(r["labels"]) for r in truth)
    for r in truth:
        img = cv2.imread(str(tmp_path / r["image"]))
        assert img.shape == (H, W, 3)
        inst = [cv2.imread(str(tmp_path / m), cv2.IMREAD_GRAYSCALE) > 127 for m in r["masks"]]
        assert len(inst) == len(r["labels"]) == len(r["boxes"])
        union = np.zeros((H, W), bool)
        for m, lab in zip(inst, r["labels"]):
            if lab == "polyp":
                union |= m
        polyp = cv2.imread(str(tmp_path / r["polyp_mask"]), cv2.IMREAD_GRAYSCALE) > 127
        assert Path(r["polyp_mask"]).stem == Path(r["image"]).stem
        assert np.array_equal(polyp, union)
    assert {q["img_id"] for q in vqa} == {r["img_id"] for r in truth}
