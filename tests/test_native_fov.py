"""gi_sdk.find_fov: the scope image's rectangle inside the black border, native == twin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gi_sdk.native
from gi_sdk.errors import InvalidFrameError
from gi_sdk.fov import find_fov, find_fov_numpy

cv2 = pytest.importorskip("cv2")
POLYPGEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "polypgen" / "images"


def mucosa(h, w, seed=0):
    """Pinkish tissue with texture: lit everywhere (max channel well above 40)."""
    rng = np.random.default_rng(seed)
    base = np.array([90, 110, 200], np.uint8)  # BGR
    small = np.clip(base + rng.normal(0, 20, (min(h, 540), min(w, 960), 3)), 60, 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).reshape(h, w, 3)


def disk(h=1080, w=1920, cx=1000, cy=540, r=500, seed=0):
    frame = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    frame[mask > 0] = mucosa(h, w, seed)[mask > 0]
    return frame


def octagon(h=1080, w=1920, x0=400, y0=20, side=1040, cut=300):
    pts = np.array([[x0 + cut, y0], [x0 + side - cut, y0], [x0 + side - 1, y0 + cut], [x0 + side - 1, y0 + side - cut],
                    [x0 + side - cut, y0 + side - 1], [x0 + cut, y0 + side - 1], [x0, y0 + side - cut], [x0, y0 + cut]])
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    frame = np.zeros((h, w, 3), np.uint8)
    frame[mask > 0] = mucosa(h, w)[mask > 0]
    return frame


def near(got, want, tol):
    """Each of the four edges within tol pixels."""
    edges = lambda r: (r[0], r[1], r[0] + r[2], r[1] + r[3])  # noqa: E731
    return all(abs(g - e) <= tol for g, e in zip(edges(got), edges(want)))


def with_text(frame):
    cv2.putText(frame, "ID 0042  12:03:55", (20, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return frame


def with_inset(frame, touching=False):
    x1 = 560 if touching else 300
    frame[700:1000, 20:x1] = (120, 170, 40)  # a scope-position inset, drawn on the border
    return frame


def with_lumen(frame):
    cv2.circle(frame, (1000, 540), 180, (5, 5, 5), -1)  # the dark lumen in the middle
    return frame


def with_noise(frame):
    rng = np.random.default_rng(1)
    border = frame.max(axis=2) == 0
    frame[border] = rng.integers(0, 26, (int(border.sum()), 3), dtype=np.uint8)  # JPEG ringing in the black
    return frame


CASES = [
    # (frame factory, expected (x, y, w, h), tolerance px, why)
    (lambda: disk(), (500, 40, 1001, 1001), 4, "round field of view: rows whose chord is under 10% are left out"),
    (lambda: octagon(), (400, 20, 1040, 1040), 1, "octagonal field of view: flat sides give exact edges"),
    (lambda: with_text(disk()), (500, 40, 1001, 1001), 4, "text on the border is too sparse to count"),
    (lambda: with_inset(disk()), (500, 40, 1001, 1001), 4, "an inset separated by black is left out"),
    (lambda: with_lumen(disk()), (500, 40, 1001, 1001), 4, "a dark lumen inside does not split the image"),
    (lambda: with_noise(disk()), (500, 40, 1001, 1001), 4, "border noise up to 25 stays below the threshold"),
    (lambda: mucosa(720, 1280), (0, 0, 1280, 720), 0, "no border at all: the whole frame"),
    (lambda: np.zeros((480, 640, 3), np.uint8), (0, 0, 640, 480), 0, "nothing lit: the whole frame"),
    (lambda: np.full((1, 1, 3), 200, np.uint8), (0, 0, 1, 1), 0, "a 1-pixel frame"),
    (lambda: np.dstack([disk(540, 960, 500, 270, 250), np.full((540, 960), 255, np.uint8)]), (250, 20, 501, 501), 3,
     "BGRA: the alpha channel is not colour"),
]


@pytest.mark.parametrize("make, want, tol, why", CASES, ids=[c[-1] for c in CASES])
def test_cases(impl, make, want, tol, why):
    frame = make()
    got = find_fov(frame)
    assert near(got, want, tol), (got, want, why)
    x, y, w, h = got
    assert 0 <= x and 0 <= y and x + w <= frame.shape[1] and y + h <= frame.shape[0]


def test_touching_inset_is_inside_the_rectangle(impl):
    # documented limit: an inset drawn against the image joins it (its columns are contiguous)
    x, y, w, h = find_fov(with_inset(disk(), touching=True))
    assert x <= 20 and x + w >= 1490


def test_8k_frame_and_crop_round_trip(impl):
    # 8K: the grid step grows (16 px) but the edges are still refined to the pixel
    frame = octagon(4320, 7680, 1600, 80, 4160, 1200)
    rect = find_fov(frame)
    assert near(rect, (1600, 80, 4160, 4160), 1)
    if impl == "native":  # the twin's 8K resize takes seconds
        assert gi_sdk.preprocess(frame, crop=rect).shape == (3, 768, 768)


@pytest.mark.parametrize("bad, error, why", [
    (np.zeros((0, 5, 3), np.uint8), InvalidFrameError, "zero rows"),
    (np.zeros((5, 5), np.uint8), InvalidFrameError, "grayscale"),
    (np.zeros((5, 5, 3), np.float32), InvalidFrameError, "float frame"),
    ([[[0, 0, 0]]], InvalidFrameError, "a list"),
])
def test_bad_frames(impl, bad, error, why):
    with pytest.raises(error):
        find_fov(bad)


@pytest.mark.parametrize("kwargs, why", [
    ({"threshold": 256}, "threshold past 255"), ({"threshold": -1}, "negative threshold"),
    ({"threshold": 1.5}, "float threshold"), ({"min_fill": 0}, "min_fill 0 accepts everything"),
    ({"min_fill": 1.5}, "min_fill past 1"), ({"step": 0}, "step 0"), ({"step": True}, "a bool step"),
])
def test_bad_options(impl, kwargs, why):
    with pytest.raises(ValueError):
        find_fov(disk(64, 64, 32, 32, 20), **kwargs)


def test_random_frames_native_equals_twin():
    # blobs and noise at random sizes, thresholds, fills and steps: identical rectangles
    mod = gi_sdk.native.native()
    if mod is None:
        pytest.skip("gi_sdk._native is not built")
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        frame = ((rng.random((h, w, 3)) < rng.random()) * rng.integers(0, 256)).astype(np.uint8)
        if rng.random() < 0.5:
            frame = cv2.GaussianBlur(frame, (5, 5), 0)
        th, fill, step = int(rng.integers(0, 256)), float(rng.uniform(0.01, 1)), int(rng.integers(1, 8))
        assert tuple(mod.find_fov(frame, th, fill, step)) == find_fov_numpy(frame, th, fill, step)


@pytest.mark.skipif(not POLYPGEN.is_dir(), reason="PolypGen sample not found at ../shared/data/polypgen")
def test_polypgen():
    # real frames: both builds agree, and the rectangle holds the scope image (the largest
    # lit region; insets and text elsewhere may be left out)
    mod = gi_sdk.native.native()
    for path in sorted(POLYPGEN.glob("*.jpg")):
        frame = cv2.imread(str(path))
        step = max(1, min(frame.shape[:2]) // 256)
        rect = find_fov_numpy(frame, 40, 0.1, step)
        if mod is not None:
            assert tuple(mod.find_fov(frame, 40, 0.1, step)) == rect, path.name
        x, y, w, h = rect
        _, labels, stats, _ = cv2.connectedComponentsWithStats((frame.max(axis=2) > 40).astype(np.uint8))
        image = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        assert image[y:y + h, x:x + w].sum() >= 0.98 * image.sum(), path.name
