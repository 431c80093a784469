"""gi_sdk geometry: polygons -> masks (== cv2.fillPoly), box and mask IoU, polygon area."""
from __future__ import annotations

import numpy as np
import pytest

import gi_sdk.native
from gi_sdk.geometry import (box_iou, box_iou_numpy, mask_iou, mask_iou_numpy, polygon_area, polygons_to_mask,
                             polygons_to_mask_numpy)

cv2 = pytest.importorskip("cv2")
F32 = np.float32


def cv2_mask(polygons, h, w):
    """The definition: cv2.fillPoly of the vertices rounded to pixel centres (as Result.masks)."""
    canvas = np.zeros((h, w), np.uint8)
    pts = [np.round(p - F32(0.5)).astype(np.int32) for p in polygons if len(p) >= 3]
    if pts and h and w:
        cv2.fillPoly(canvas, pts, 1)
    return canvas.astype(bool)


def poly(*xy):
    return np.array(xy, F32).reshape(-1, 2)


MASK_CASES = [
    # (polygons, (h, w), why)
    ([poly(10, 10, 50, 10, 50, 40, 10, 40)], (60, 80), "an axis-aligned rectangle"),
    ([poly(5.5, 5.5, 30.2, 8.7, 12.9, 33.3)], (40, 40), "a triangle with fractional vertices"),
    ([poly(-20, -20, 100, 10, 30, 90)], (50, 60), "vertices outside the frame: clipped edges"),
    ([poly(10, 10, 40, 10, 40, 40, 10, 40), poly(20, 20, 30, 20, 30, 30, 20, 30)], (50, 50),
     "a polygon inside another: even-odd leaves a hole, as fillPoly with both does"),
    ([poly(0, 0, 30, 30, 30, 0, 0, 30)], (40, 40), "a self-intersecting bow tie"),
    ([poly(1, 1, 5, 5)], (10, 10), "two vertices: skipped (no area), like Result.masks"),
    ([], (10, 10), "no polygons: an empty mask"),
    ([poly(0, 0, 10, 0, 10, 10)], (0, 10), "zero rows"),
    ([poly(0.4, 0.4, 0.6, 0.4, 0.5, 0.6)], (1, 1), "a 1-pixel frame"),
    ([poly(3, 3, 3, 3, 3, 3)], (8, 8), "a degenerate polygon: its one pixel, as fillPoly draws it"),
    ([poly(1e9, 1e9, -1e9, 5, 7, -1e9)], (30, 30), "absurd vertices: clamped to +-2^16 first"),
]


@pytest.mark.parametrize("polygons, hw, why", MASK_CASES, ids=[c[-1] for c in MASK_CASES])
def test_polygons_to_mask_cases(impl, polygons, hw, why):
    got = polygons_to_mask(polygons, *hw)
    assert got.dtype == bool and got.shape == hw
    clamped = [np.clip(p, -2.0 ** 16, 2.0 ** 16).astype(F32) for p in polygons]
    assert np.array_equal(got, cv2_mask(clamped, *hw)), why


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
_coord = st.floats(-40, 140, allow_nan=False, width=32)


@hypothesis.settings(max_examples=400, deadline=None, derandomize=True, database=None)
@hypothesis.given(polys=st.lists(st.lists(st.tuples(_coord, _coord), min_size=0, max_size=9), max_size=4),
                  h=st.integers(1, 100), w=st.integers(1, 100))
def test_polygons_to_mask_equals_cv2(polys, h, w):
    # the native port of OpenCV's scanline must equal cv2.fillPoly pixel for pixel
    polygons = [np.array(p, F32).reshape(-1, 2) for p in polys]
    want = cv2_mask(polygons, h, w)
    assert np.array_equal(polygons_to_mask_numpy(polygons, h, w), want)
    mod = gi_sdk.native.native()
    if mod is not None:
        assert np.array_equal(mod.polygons_to_mask(polygons, h, w), want)


def test_mask_of_codec_polygons_has_their_area():
    # a decoded polygon rasterizes to about its shoelace area (fillPoly adds the outline)
    rng = np.random.default_rng(0)
    for _ in range(20):
        centre, r = rng.uniform(200, 800, 2), rng.uniform(50, 150)
        t = np.sort(rng.uniform(0, 2 * np.pi, 24))
        p = (centre + np.stack([np.cos(t), np.sin(t)], 1) * r).astype(F32)
        area = polygon_area(p)
        filled = polygons_to_mask([p], 1000, 1000).sum()
        assert area <= filled <= area + 2.5 * cv2.arcLength(p, True) + 4


BOX_CASES = [
    # (a, b, iou, why)
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0, "identical"),
    ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3, "half overlap: 50 / 150"),
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0, "touching edges share no area"),
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0, "disjoint"),
    ([0, 0, 10, 10], [2, 2, 4, 4], 0.04, "contained: 4 / 100"),
    ([5, 5, 5, 5], [5, 5, 5, 5], 0.0, "two points: union 0, IoU 0 (not NaN)"),
    ([10, 10, 0, 0], [0, 0, 10, 10], 0.0, "inverted box: area 0"),
    ([0.25, 0.25, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0], 0.0625 / 0.4375, "sub-pixel boxes"),
    ([-1e30, -1e30, 1e30, 1e30], [0, 0, 1, 1], 1e-60, "huge box: float64 keeps it finite"),
]


@pytest.mark.parametrize("a, b, want, why", BOX_CASES, ids=[c[-1] for c in BOX_CASES])
def test_box_iou_cases(impl, a, b, want, why):
    got = box_iou(np.array([a], F32), np.array([b], F32))
    assert got.shape == (1, 1) and got.dtype == F32
    assert np.isclose(got[0, 0], want, rtol=1e-6, atol=1e-30), (got, why)


def test_box_iou_matrix_and_twin():
    # (N, M) shape, empty sides, symmetry, and native == numpy bit for bit
    rng = np.random.default_rng(1)
    a = np.sort(rng.uniform(0, 100, (13, 2, 2)), axis=1).transpose(0, 2, 1).reshape(13, 4)[:, [0, 2, 1, 3]]
    a = np.ascontiguousarray(a, F32)
    b = a[::-1].copy()
    got = box_iou(a, b)
    assert got.shape == (13, 13) and np.allclose(got, box_iou(b, a).T)
    assert box_iou(a, np.zeros((0, 4), F32)).shape == (13, 0)
    assert box_iou(np.zeros((0, 4), F32), a).shape == (0, 13)
    mod = gi_sdk.native.native()
    if mod is not None:
        assert np.array_equal(mod.box_iou(a, b).view(np.uint32), box_iou_numpy(a, b).view(np.uint32))


def test_mask_iou(impl):
    # single masks give a float; stacks give (N, M); empty pairs give 0
    m = np.zeros((6, 10, 10), bool)
    m[0, :5] = True
    m[1, :, :5] = True
    m[2, :] = True
    assert mask_iou(m[0], m[0]) == 1.0
    assert mask_iou(m[0], m[2]) == 0.5
    assert np.allclose(mask_iou(m[:3], m[:3]), [[1, 1 / 3, 0.5], [1 / 3, 1, 0.5], [0.5, 0.5, 1]])
    assert mask_iou(m[3], m[4]) == 0.0
    rng = np.random.default_rng(2)
    big = rng.random((3, 37, 61)) < 0.4  # not a multiple of 64 pixels: the padded last word
    assert np.array_equal(mask_iou(big, big[::-1]), mask_iou_numpy(big, big[::-1]))


def test_polygon_area(impl):
    # shoelace in float64; orientation does not matter; matches cv2.contourArea
    square = poly(0, 0, 4, 0, 4, 4, 0, 4)
    assert polygon_area(square) == 16.0 and polygon_area(square[::-1].copy()) == 16.0
    assert polygon_area(poly(0, 0, 1, 1)) == 0.0 and polygon_area(np.zeros((0, 2), F32)) == 0.0
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.uniform(0, 1000, (int(rng.integers(3, 40)), 2)).astype(F32)
        assert polygon_area(p) == pytest.approx(abs(cv2.contourArea(p)), rel=1e-9)


BAD = [
    # (call, why)
    (lambda: polygons_to_mask(np.zeros((3, 2), F32), 10, 10), "one array, not a list of polygons"),
    (lambda: polygons_to_mask([np.zeros((3, 2), np.float64)], 10, 10), "float64 polygon"),
    (lambda: polygons_to_mask([np.zeros((3, 3), F32)], 10, 10), "(K, 3) polygon"),
    (lambda: polygons_to_mask([poly(0, 0, np.nan, 1, 2, 2)], 10, 10), "NaN vertex"),
    (lambda: polygons_to_mask([], -1, 10), "negative height"),
    (lambda: box_iou(np.zeros((2, 4), np.float64), np.zeros((2, 4), F32)), "float64 boxes"),
    (lambda: box_iou(np.zeros((2, 5), F32), np.zeros((2, 4), F32)), "(N, 5) boxes"),
    (lambda: box_iou([[0, 0, 1, 1]], np.zeros((2, 4), F32)), "a list"),
    (lambda: box_iou(np.array([[0, 0, np.inf, 1]], F32), np.zeros((2, 4), F32)), "infinite coordinate"),
    (lambda: mask_iou(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), bool)), "uint8 masks"),
    (lambda: mask_iou(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), bool)), "masks of two sizes"),
    (lambda: polygon_area(np.zeros((4,), F32)), "flat array"),
]


@pytest.mark.parametrize("call, why", BAD, ids=[c[-1] for c in BAD])
def test_bad_inputs_raise_value_error(impl, call, why):
    with pytest.raises(ValueError, match="expected"):
        call()
