"""gi_sdk.codec: location codec, encoders, mask -> polygons, and the runtime's precise parser.

transformers itself is compared against in test_codec_differential.py; here parse_florence
is only the reference that parse_instances must agree with.
"""
from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gi_sdk import codec, locations
from gi_sdk.codec import (dequantize, dequantize_numpy, encode_boxes, encode_points, encode_polygons,
                          encode_region, mask_to_polygons, parse_florence, parse_instances, quantize,
                          quantize_numpy)
from gi_sdk.native import native
from gi_sdk.tasks import BOXES, BOXES_OR_POLYGONS, OUTPUT_KINDS, PHRASE_BOXES, POINTS, POLYGONS, TEXT

cv2 = pytest.importorskip("cv2")

POLYPGEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "polypgen"
F32 = np.float32


def _loc(*bins) -> str:
    return "".join(f"<loc_{b}>" for b in bins)


def _twins():
    """(name, quantize, dequantize) for the twin and, when built, the compiled extension."""
    impls = [("numpy", quantize_numpy, dequantize_numpy)]
    mod = native()
    if mod is not None:
        impls.append(("native", mod.quantize, mod.dequantize))
    return impls


# ---------------------------------------------------------------------- quantize / dequantize

QUANTIZE_CASES = [
    # (coords x, y, image (W, H), expected bins, why)
    ((0.0, 0.0), (640, 480), (0, 0), "the origin is bin 0"),
    ((640.0, 480.0), (640, 480), (999, 999), "x = W would be bin 1000: clamped to 999, never <loc_1000>"),
    ((float(np.nextafter(F32(640), F32(0))), float(np.nextafter(F32(480), F32(0)))), (640, 480), (999, 999),
     "the last float32 before the edge is in the last bin"),
    ((0.64, 0.48), (640, 480), (1, 1), "an exact bin edge belongs to the upper bin (floor)"),
    ((0.6399, 0.4799), (640, 480), (0, 0), "just below a bin edge stays in the lower bin"),
    ((-0.001, -1e6), (640, 480), (0, 0), "negative (outside the image) clamps to 0"),
    ((1e6, 480.5), (640, 480), (999, 999), "past the right / bottom edge clamps to 999"),
    ((float("nan"), float("nan")), (640, 480), (0, 0), "NaN is bin 0, as in the native code"),
    ((float("inf"), float("-inf")), (640, 480), (999, 0), "infinities clamp to the ends"),
    ((320.0, 320.0), (640, 480), (500, 666), "non-square image: x uses W, y uses H"),
    ((100.0, 1079.0), (1920, 1080), (52, 999), "1080p frame: y = H - 1 is in the last bin"),
    ((0.5, 0.9999), (1, 1), (499, 999),
     "1-pixel image: 0.5 / float32(0.001) = 499.99997 -> 499, not 500 (transformers and the "
     "native code divide by the float32 bin width)"),
    ((0.0, 0.0011), (1, 1), (0, 1), "1-pixel image: a bin is 0.001 px"),
    ((2.0, 2.0), (3, 7), (666, 285), "tiny odd-sized image"),
]


@pytest.mark.parametrize("coords, size, expected, why", QUANTIZE_CASES, ids=[c[3] for c in QUANTIZE_CASES])
def test_quantize_cases(coords, size, expected, why):
    assert quantize(coords, size).tolist() == list(expected)
    for name, q, _ in _twins():
        assert q(np.array(coords, F32), *map(float, size)).tolist() == list(expected), name


DEQUANTIZE_CASES = [
    # (bins, image (W, H), expected centres, why)
    ((0, 0), (640, 480), (0.32, 0.24), "bin 0 decodes to the centre of the first bin"),
    ((999, 999), (640, 480), (639.68, 479.76), "bin 999 decodes inside the image"),
    ((500, 500), (1920, 1080), (960.96, 540.54), "bin centre, not bin edge"),
    ((1000, 1234), (640, 480), (640.32, 592.56), "out-of-range bins are not clamped (transformers neither)"),
    ((0, 999), (1, 1), (0.0005, 0.9995), "1-pixel image"),
]


@pytest.mark.parametrize("bins, size, expected, why", DEQUANTIZE_CASES, ids=[c[3] for c in DEQUANTIZE_CASES])
def test_dequantize_cases(bins, size, expected, why):
    got = dequantize(bins, size)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(2,), (5, 2), (3, 4), (2, 3, 8), (0, 4)],
                         ids=["one point", "points", "boxes", "nested polygons", "empty"])
def test_quantize_keeps_shape_and_dtype(shape):
    # any (..., 2k) layout of x, y pairs comes back in the same shape
    coords = np.random.default_rng(0).uniform(0, 100, shape)
    bins = quantize(coords, (100, 50))
    assert bins.shape == shape and bins.dtype == np.int32
    back = dequantize(bins, (100, 50))
    assert back.shape == shape and back.dtype == np.float32


@pytest.mark.parametrize("coords, size", [
    (np.zeros(3), (640, 480)),          # odd last axis: not x, y pairs
    (np.zeros((2, 5)), (640, 480)),     # same, nested
    (np.zeros(2), (0, 480)),            # zero width
    (np.zeros(2), (640, -1)),           # negative height
    (np.zeros(2), (640,)),              # not (width, height)
    (np.zeros(2), (float("nan"), 480)),  # NaN size
])
def test_quantize_rejects_bad_input(coords, size):
    with pytest.raises(ValueError):
        quantize(coords, size)
    with pytest.raises(ValueError):
        dequantize(coords.astype(np.int32), size)


def test_round_trip_is_within_half_a_bin():
    # decoding gives the bin centre: never further than half a bin from the encoded pixel
    rng = np.random.default_rng(1)
    for _ in range(50):
        w, h = rng.integers(1, 5000, 2)
        xy = rng.uniform(0, 1, (200, 2)) * np.array([w, h]) * 0.99999
        back = dequantize(quantize(xy, (w, h)), (w, h))
        assert (np.abs(back - xy) <= np.array([w, h]) / 2000 * (1 + 1e-4)).all()


def _random_coords(rng, shape, w, h):
    """Pixels with the awkward cases mixed in: edges, bin edges, outside, NaN, inf, huge, tiny."""
    c = rng.uniform(-0.5, 1.5, shape) * np.where(np.arange(shape[-1]) % 2 == 0, w, h)
    special = np.array([0, -0.0, w, h, np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-40, -1e-40,
                        float(np.nextafter(F32(w), F32(0)))])
    mask = rng.random(shape) < 0.15
    c[mask] = rng.choice(special, mask.sum())
    edges = rng.random(shape) < 0.15  # exact multiples of the bin width
    per = np.where(np.arange(shape[-1]) % 2 == 0, w, h) / 1000
    c[edges] = (rng.integers(0, 1001, shape) * per)[edges]
    return c.astype(F32)


def test_native_and_numpy_twin_agree_exactly():
    # DESIGN.md §10: every native function has a numpy twin, and they agree bit for bit
    mod = native()
    if mod is None:
        pytest.skip("gi_sdk._native is not built here: only the numpy twin runs")
    rng = np.random.default_rng(2)
    cases = 0
    for _ in range(300):
        w, h = (float(v) for v in rng.choice([rng.integers(1, 8000, 2), rng.uniform(0.5, 5000, 2)]))
        shape = [(int(rng.integers(0, 50)), 2), (int(rng.integers(0, 20)), 4), (3, 2, 6)][cases % 3]
        coords = _random_coords(rng, shape, w, h)
        assert np.array_equal(mod.quantize(coords, w, h), quantize_numpy(coords, w, h))
        wide = rng.integers(-(2**31), 2**31 - 1, shape).astype(np.int32)  # the whole int32 range
        near = rng.integers(-5, 1500, shape).astype(np.int32)              # around the valid bins
        for b in (wide, near):
            assert np.array_equal(mod.dequantize(b, w, h), dequantize_numpy(b, w, h), equal_nan=True)
        cases += 1
    assert cases == 300


def test_quantize_falls_back_to_the_twin(monkeypatch):
    # without the compiled extension the public functions give the very same answers
    coords = _random_coords(np.random.default_rng(3), (100, 4), 640, 480)
    with_native = quantize(coords, (640, 480)), dequantize(np.arange(8, dtype=np.int32), (640, 480))
    monkeypatch.setattr(locations, "native", lambda: None)
    assert np.array_equal(quantize(coords, (640, 480)), with_native[0])
    assert np.array_equal(dequantize(np.arange(8, dtype=np.int32), (640, 480)), with_native[1])


def test_import_is_light():
    # DESIGN.md: the runtime imports no torch / transformers; cv2 only when masks are traced
    code = ("import sys, gi_sdk.codec; heavy = {'torch', 'transformers', 'cv2'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- encoders

LABELS = ["polyp", "pólyp", "a red polyp", "instrument", "Ölfleck", "fold 2", "  spaced  ", "ß"]


def _ascii(label: str) -> str:
    return label.encode("ascii", "ignore").decode("ascii")


def _inside(rng, n, w, h):
    return rng.uniform(0, 1, (n, 2)) * np.array([w, h]) * 0.99999


def test_encode_boxes_round_trip():
    # encode -> parse_instances gives each box back within half a bin, with its label
    rng = np.random.default_rng(4)
    pyrng = random.Random(4)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(1, 4000, 2))
        n = int(rng.integers(0, 10))
        boxes = np.concatenate([_inside(rng, n, w, h), _inside(rng, n, w, h)], axis=1)
        labels = [pyrng.choice(LABELS) for _ in range(n)] if pyrng.random() < 0.8 else None
        # unlabelled boxes are region proposals: <OD>'s grammar needs a label before a box
        task = None if labels else "<REGION_PROPOSAL>"
        parsed = parse_instances(encode_boxes(boxes, (w, h), labels), BOXES, (w, h), task=task)
        assert parsed.boxes.shape == (n, 4) and parsed.boxes.dtype == np.float32
        tol = np.array([w, h, w, h]) / 2000 * (1 + 1e-4)
        assert (np.abs(parsed.boxes - boxes) <= tol).all()
        # box labels come back as transformers gives them: stripped, ASCII only
        assert parsed.box_labels == ([_ascii(lab.strip()) for lab in labels] if labels else [""] * n)


def test_encode_points_round_trip():
    rng = np.random.default_rng(5)
    pyrng = random.Random(5)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(1, 4000, 2))
        n = int(rng.integers(0, 12))
        points = _inside(rng, n, w, h)
        labels = [pyrng.choice(LABELS) for _ in range(n)]
        parsed = parse_instances(encode_points(points, (w, h), labels), POINTS, (w, h))
        assert (np.abs(parsed.points - points) <= np.array([w, h]) / 2000 * (1 + 1e-4)).all()
        assert parsed.point_labels == [lab.strip() for lab in labels]


def test_encode_polygons_round_trip():
    # each polygon is one instance; rings come back vertex by vertex within half a bin.
    # Segmentation (POLYGONS) never reads labels; open-vocabulary detection keeps them whole.
    rng = np.random.default_rng(6)
    for i in range(200):
        w, h = (int(v) for v in rng.integers(1, 4000, 2))
        polys = [_inside(rng, int(rng.integers(3, 12)), w, h) for _ in range(int(rng.integers(1, 4)))]
        label = LABELS[i % len(LABELS)]
        kind = (POLYGONS, BOXES_OR_POLYGONS)[i % 2]
        parsed = parse_instances(encode_polygons(polys, (w, h), label), kind, (w, h))
        assert parsed.polygon_labels == [label.strip() if kind == BOXES_OR_POLYGONS else ""] * len(polys)
        for inst, poly in zip(parsed.polygons, polys):
            assert len(inst) == 1 and inst[0].dtype == np.float32
            assert (np.abs(inst[0] - poly) <= np.array([w, h]) / 2000 * (1 + 1e-4)).all()


def test_encode_region_is_an_unlabelled_box():
    # the REGION_TO_SEGMENTATION input: four location tokens, nothing else
    assert encode_region((64, 48, 128, 96), (640, 480)) == _loc(100, 100, 200, 200)
    assert encode_region(np.array([[0, 0, 640, 480]]), (640, 480)) == _loc(0, 0, 999, 999)


@pytest.mark.parametrize("call", [
    lambda: encode_boxes([[0, 0, 1, 1]], (10, 10), ["a<b"]),         # '<' would end the label early
    lambda: encode_boxes([[0, 0, 1, 1]], (10, 10), ["two\nlines"]),  # transformers drops such phrases
    lambda: encode_boxes([[0, 0, 1, 1]], (10, 10), ["a", "b"]),      # one label per box
    lambda: encode_boxes([[0, 0, 1]], (10, 10)),                     # not xyxy
    lambda: encode_points([[0, 0, 1, 1]], (10, 10)),                 # not x, y
    lambda: encode_polygons([[[0, 0], [1, 1]]], (10, 10)),           # fewer than 3 points
    lambda: encode_polygons([[[0, 0], [1, 1], [2, 0]]], (10, 10), "x<"),
    lambda: encode_boxes([[0, 0, 1, 1]], (0, 10)),                   # no image
], ids=["lt in label", "newline in label", "label count", "box shape", "point shape",
        "2-point polygon", "polygon label", "zero width"])
def test_encoders_reject_what_cannot_round_trip(call):
    with pytest.raises(ValueError):
        call()


def test_encoders_of_nothing_are_empty():
    # no instances: no text (and the parser gives real empty arrays back)
    assert encode_boxes(np.zeros((0, 4)), (10, 10)) == ""
    assert encode_points([], (10, 10)) == ""
    assert encode_polygons([], (10, 10), "polyp") == ""


# ------------------------------------------------------------------------- mask -> polygons


def _raster(polygons, shape) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    if polygons:
        cv2.fillPoly(out, [np.round(p).astype(np.int32) for p in polygons], 1)
    return out.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


_YY, _XX = np.mgrid[:240, :320]
_R = np.hypot(_XX - 160, _YY - 120)
MASK_CASES = [
    # (name, mask, expected polygon count, why)
    ("disk", _R < 70, 1, "a round polyp: one smooth ring"),
    ("ring", (_R < 90) & (_R >= 40), 1, "a hole is cut into its region's ring, not filled"),
    ("rectangle", (_XX >= 30) & (_XX < 200) & (_YY >= 20) & (_YY < 100), 1, "straight edges: 4 vertices"),
    ("two blobs", (np.hypot(_XX - 60, _YY - 60) < 30) | (np.hypot(_XX - 230, _YY - 160) < 45), 2,
     "two polyps: one polygon each"),
    ("blob and specks", (_R < 50) | ((_XX % 97 < 2) & (_YY % 89 < 2)), 1, "2x2 JPEG-noise specks are dropped"),
    ("touching the border", _XX < 100, 1, "a region cut by the frame edge"),
    ("thin sliver", (_YY >= 100) & (_YY < 104) & (_XX >= 10) & (_XX < 300), 1, "a 4 px wide region is kept"),
]


@pytest.mark.parametrize("name, mask, count, why", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_mask_to_polygons_synthetic(name, mask, count, why):
    polygons = mask_to_polygons(mask)
    assert len(polygons) == count
    assert all(p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 2 and len(p) >= 3 for p in polygons)
    iou = _iou(_raster(polygons, mask.shape), mask)
    print(f"mask_to_polygons {name}: {[len(p) for p in polygons]} vertices, IoU {iou:.4f}")
    assert iou >= 0.9


def test_mask_to_polygons_small_cases():
    assert mask_to_polygons(np.zeros((50, 60), bool)) == []      # nothing: no polygon
    rect = np.zeros((100, 100), bool)
    rect[20:60, 30:90] = True
    assert [p.tolist() for p in mask_to_polygons(rect)] == [[[30, 20], [30, 59], [89, 59], [89, 20]]]
    ring = (_R < 90) & (_R >= 40)
    assert _iou(_raster(mask_to_polygons(ring, holes=False), ring.shape), _R < 90) > 0.97  # holes off: filled
    circle = _R < 100
    assert max(len(p) for p in mask_to_polygons(circle, max_points=8)) <= 8  # vertex budget honoured
    with pytest.raises(ValueError):
        mask_to_polygons(np.zeros((4, 4, 3), bool))  # a colour image is no mask
    with pytest.raises(ValueError):
        mask_to_polygons(circle, max_points=2)  # no polygon fits: would never converge


def _polypgen_masks():
    folder = POLYPGEN / "masks"
    if not folder.is_dir():
        pytest.skip(f"PolypGen sample not found at {folder} (see /work/shared/data/polypgen/README.md)")
    return sorted(folder.glob("*.jpg"))


def test_mask_to_polygons_on_polypgen():
    # real colonoscopy masks, JPEG-noisy, thresholded at 127: the polygons and their
    # location-token round trip (what training targets hold) must both cover the mask
    direct, via_tokens, vertices = [], [], []
    for path in _polypgen_masks():
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        mask = img > 127
        h, w = mask.shape
        polygons = mask_to_polygons(mask)
        if not mask.any():  # the frames without a polyp: nothing to outline
            assert polygons == []
            continue
        parsed = parse_instances(encode_polygons(polygons, (w, h), "polyp"), POLYGONS, (w, h))
        back = [ring for inst in parsed.polygons for ring in inst]
        direct.append(_iou(_raster(polygons, mask.shape), mask))
        via_tokens.append(_iou(_raster(back, mask.shape), mask))
        vertices += [len(p) for p in polygons]
        assert direct[-1] >= 0.9 and via_tokens[-1] >= 0.9, path.name
    assert direct, "no PolypGen mask with a polyp"
    print(f"PolypGen mask_to_polygons: {len(direct)} masks with a polyp, mean IoU {np.mean(direct):.4f} "
          f"(min {np.min(direct):.4f}), after <loc> round trip {np.mean(via_tokens):.4f} "
          f"(min {np.min(via_tokens):.4f}), mean {np.mean(vertices):.1f} vertices a polygon")


# ----------------------------------------------------------------------------- parse_instances


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
@pytest.mark.parametrize("text", ["", "</s><s></s>", "   ", "<pad><pad>"], ids=["empty", "specials", "blank", "pads"])
def test_parse_instances_empty_results_are_real_arrays(kind, text):
    # FORMATS / DESIGN: empty results are empty arrays of the right shape, never None
    p = parse_instances(text, kind, (640, 480))
    assert p.text == ""
    assert p.boxes.shape == (0, 4) and p.boxes.dtype == np.float32
    assert p.points.shape == (0, 2) and p.points.dtype == np.float32
    assert p.polygons == [] and p.polygon_labels == [] and p.box_labels == [] and p.point_labels == []


def _centres(bins, width, size=(1000, 1000)):
    return dequantize(np.array(bins, np.int32).reshape(-1, width), size).tolist()


PRECISE_CASES = [
    # (text, kind, task, field, expected, why); image is 1000x1000 so bin b decodes to b + 0.5
    ("</s><s>Yes, there is one polyp.</s><pad><pad>", TEXT, None, "text", "Yes, there is one polyp.",
     "answers lose BART's specials and padding (transformers keeps <pad> in pure text)"),
    ("<MedVQA> No.<unk>", TEXT, None, "text", "No.", "task tokens and <unk> are not answer text"),
    ("a polyp" + _loc(1, 2, 3, 4) + " on a fold" + _loc(5, 6, 7, 8), PHRASE_BOXES, None, "text",
     "a polyp on a fold", "structured answers keep their words as text"),
    ("polyp" + _loc(1, 2, 3, 4, 5), POINTS, None, "points", [[1.5, 2.5], [3.5, 4.5]],
     "POINTS: a label applies to the points after it; an odd trailing coordinate is dropped"),
    ("polyp" + _loc(1, 2) + "tool" + _loc(3, 4), POINTS, None, "point_labels", ["polyp", "tool"],
     "POINTS: each label covers the points until the next label"),
    ("pólyp" + _loc(1, 2), POINTS, None, "point_labels", ["pólyp"], "POINTS (ours) keeps non-ASCII labels"),
    ("polyp" + _loc(1, 2, 3) + "<sep>" + _loc(4, 5), POINTS, None, "points", [[1.5, 2.5], [4.5, 5.5]],
     "POINTS: <sep> ends a run, its odd coordinate is dropped there"),
    ("polyp" + _loc(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), BOXES, None, "boxes",
     [[1.5, 2.5, 3.5, 4.5], [5.5, 6.5, 7.5, 8.5]], "one label for a run of boxes; a 3-bin remainder is dropped"),
    ("polyp" + _loc(1, 2, 3, 4, 5, 6, 7, 8), BOXES, None, "box_labels", ["polyp", "polyp"],
     "Florence writes a shared label once before its boxes"),
    (_loc(1, 2, 3, 4, 5, 6, 7, 8), BOXES, "<REGION_PROPOSAL>", "box_labels", ["", ""],
     "region proposals: unlabelled boxes"),
    (_loc(1, 2, 3, 4, 5, 6, 7, 8), BOXES, None, "boxes", [[2.5, 3.5, 4.5, 5.5]],
     "transformers quirk kept: <OD>'s grammar takes 'loc_1>' as the label of the next four"),
    (_loc(1, 2, 3, 4, 5, 6, 7, 8), BOXES, None, "box_labels", ["loc_1>"], "... and that is the label"),
    ("<sep>polyp" + _loc(1, 2, 3, 4), BOXES, None, "box_labels", ["sep>polyp"],
     "transformers quirk kept: a label starts after the last '<', not after the last tag"),
    ("pólyp" + _loc(1, 2, 3, 4), BOXES, None, "box_labels", ["plyp"], "transformers quirk kept: box labels are ASCII"),
    ("a\nb" + _loc(1, 2, 3, 4), BOXES, None, "boxes", [], "transformers quirk kept: a line break drops the phrase"),
    ("the image" + _loc(1, 2, 3, 4) + "polyp" + _loc(5, 6, 7, 8), PHRASE_BOXES, None, "box_labels", ["polyp"],
     "phrase grounding drops the banned phrase 'the image', as Florence-2 does"),
    ("the image" + _loc(1, 2, 3, 4), BOXES, None, "box_labels", ["the image"], "only grounding bans phrases"),
    (_loc(1, 2, 3, 4, 5, 6) + "<sep>" + _loc(7, 8, 9, 10, 11, 12, 13, 14), POLYGONS, None, "polygons",
     [[_centres([1, 2, 3, 4, 5, 6], 2), _centres([7, 8, 9, 10, 11, 12, 13, 14], 2)]],
     "Florence's own segmentation output: rings split by <sep>, one instance"),
    ("polyp<poly>" + _loc(1, 2, 3, 4, 5, 6) + "</poly><sep>polyp<poly>" + _loc(7, 8, 9, 10, 11, 12) + "</poly>",
     POLYGONS, None, "polygon_labels", ["", ""],
     "encode_polygons' layout: one instance a <poly>; segmentation never reads labels"),
    ("polyp<poly>" + _loc(1, 2, 3, 4, 5, 6) + "</poly>", BOXES_OR_POLYGONS, None, "polygon_labels", ["polyp"],
     "open-vocabulary polygons keep their label"),
    ("<poly>" + _loc(1, 2, 3, 4, 5, 6, 7) + "<sep>" + _loc(1, 2, 3, 4) + "</poly>", POLYGONS, None, "polygons",
     [[_centres([1, 2, 3, 4, 5, 6], 2), _centres([1, 2, 3, 4], 2)]],
     "odd coordinate dropped; a 2-point ring is kept, as transformers keeps it"),
    ("polyp<poly>" + _loc(1, 2, 3, 4, 5, 6), POLYGONS, None, "polygons", [[_centres([1, 2, 3, 4, 5, 6], 2)]],
     "an unclosed <poly> (generation cut off) still gives its ring"),
    ("car" + _loc(1, 2, 3, 4) + "polyp<poly>" + _loc(5, 6, 7, 8, 9, 10) + "</poly>", BOXES_OR_POLYGONS, None,
     "polygon_labels", ["car", "polyp"], "transformers quirk kept: one <poly> makes every instance a polygon"),
    ("x" + _loc(1000, 1234, 7, "0007"), BOXES, None, "boxes", [[1000.5, 1234.5, 7.5, 7.5]],
     "out-of-range bins decode past the edge (as transformers); leading zeros read as numbers"),
    ("x" + _loc(1, 2, 3, 10**30), BOXES, None, "boxes", [[1.5, 2.5, 3.5, float(2**31)]],  # float32 centre
     "an absurd bin is clipped to int32, not an error (transformers raises)"),
    ("po</s>lyp" + _loc(1, 2, 3, 4), BOXES, None, "box_labels", ["polyp"], "stray specials inside a label vanish"),
]


@pytest.mark.parametrize("text, kind, task, field, expected, why", PRECISE_CASES, ids=[c[-1] for c in PRECISE_CASES])
def test_parse_instances_grammar(text, kind, task, field, expected, why):
    value = getattr(parse_instances(text, kind, (1000, 1000), task=task), field)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif field == "polygons":
        value = [[ring.tolist() for ring in inst] for inst in value]
    assert value == expected


def test_parse_instances_banned_phrases_parameter():
    text = "the image" + _loc(1, 2, 3, 4)
    assert parse_instances(text, PHRASE_BOXES, (10, 10), banned_phrases=()).box_labels == ["the image"]
    assert parse_florence(text, "<CAPTION_TO_PHRASE_GROUNDING>", (10, 10), banned_phrases=())[
        "<CAPTION_TO_PHRASE_GROUNDING>"]["labels"] == ["the image"]


def test_task_picks_the_grammar():
    # a task transformers knows picks its grammar; gi_sdk's own tokens use the kind's default
    text = _loc(1, 2, 3, 4, 5, 6, 7, 8)
    assert len(parse_instances(text, BOXES, (10, 10), task="<REGION_PROPOSAL>").boxes) == 2
    assert len(parse_instances(text, BOXES, (10, 10), task="<OD>").boxes) == 1
    assert len(parse_instances(text, BOXES, (10, 10), task="<MedCOUNT>").boxes) == 1
    assert codec.KIND_GRAMMARS[BOXES][0] == "description_with_bboxes"


@pytest.mark.parametrize("call", [
    lambda: parse_instances("x", "masks", (10, 10)),        # not an output kind
    lambda: parse_instances("x" + _loc(1, 2, 3, 4), BOXES),  # locations need the image size
    lambda: parse_instances("x", POLYGONS, (10, 10), task="<OD>"),  # <OD> writes no polygons
    lambda: parse_florence("x" + _loc(1, 2, 3, 4), "<OD>"),
], ids=["unknown kind", "no image size", "task of another kind", "florence without size"])
def test_parsers_reject_bad_calls(call):
    with pytest.raises(ValueError):
        call()


# -------------------------------------------- parse_instances agrees with parse_florence

def _random_label(rng: random.Random) -> str:
    return rng.choice(LABELS + ["the image", "x", "polyp 2", "Polyp-Ø", "", " "])


def _xy_list(rng, size, n):
    return np.array([[rng.uniform(-0.1, 1.1) * size[0], rng.uniform(-0.1, 1.1) * size[1]]
                     for _ in range(n)]).reshape(n, 2)


def _boxes_text(rng, size):
    n = rng.randint(0, 8)
    boxes = np.concatenate([_xy_list(rng, size, n), _xy_list(rng, size, n)], axis=1)
    return encode_boxes(boxes, size, [_random_label(rng) for _ in range(n)] if rng.random() < 0.8 else None)


def _polygons_text(rng, size):
    polys = [_xy_list(rng, size, rng.randint(3, 9)) for _ in range(rng.randint(0, 4))]
    return encode_polygons(polys, size, _random_label(rng))


def _raw_segmentation_text(rng, size):
    # Florence's own <REFERRING_EXPRESSION_SEGMENTATION> output: rings split by <sep>
    rings = [quantize(_xy_list(rng, size, rng.randint(1, 9)), size).ravel() for _ in range(rng.randint(1, 3))]
    return "<sep>".join(_loc(*r) for r in rings)


PIECES = ["<s>", "</s>", "<pad>", "<sep>", "<poly>", "</poly>", " ", "\n", "<od>", "<unk>", "<", "polyp",
          "pólyp", "the image", "<loc_1000>", "<loc_0007>", "<loc_١٢>", "<loc_"]


def _malformed(rng, text):
    # a stray piece, a dropped coordinate or a cut: what a half-trained model writes
    choice = rng.randrange(3)
    if choice == 0:
        at = rng.randint(0, len(text))
        return text[:at] + rng.choice(PIECES) + text[at:]
    locs = list(re.finditer(r"<loc_\d+>", text))
    if choice == 1 and locs:
        m = rng.choice(locs)
        return text[:m.start()] + text[m.end():]
    return text[:rng.randint(0, len(text))]


def _soup(rng, size):
    return "".join(rng.choice(PIECES) if rng.random() < 0.4 else f"<loc_{rng.randint(0, 999)}>"
                   for _ in range(rng.randint(0, 20)))


GENERATORS = [_boxes_text, _polygons_text, _raw_segmentation_text, _soup]
AGREEMENT = [
    # (kind, task given to parse_instances, task given to parse_florence, why)
    (BOXES, None, "<OD>", "detection, the BOXES default"),
    (BOXES, "<DENSE_REGION_CAPTION>", "<DENSE_REGION_CAPTION>", "region captions"),
    (BOXES, "<REGION_PROPOSAL>", "<REGION_PROPOSAL>", "region proposals"),
    (BOXES, "<MedCOUNT>", "<OD>", "gi_sdk's counting: boxes in <OD>'s grammar"),
    (PHRASE_BOXES, None, "<CAPTION_TO_PHRASE_GROUNDING>", "phrase grounding, 'the image' banned"),
    (POLYGONS, None, "<REFERRING_EXPRESSION_SEGMENTATION>", "segmentation"),
    (POLYGONS, "<REGION_TO_SEGMENTATION>", "<REGION_TO_SEGMENTATION>", "region to segmentation"),
    (BOXES_OR_POLYGONS, None, "<OPEN_VOCABULARY_DETECTION>", "open vocabulary: boxes or polygons"),
]


def _truncated(rows):
    return np.asarray(rows, np.float32).astype(np.int32).ravel().tolist()


@pytest.mark.parametrize("kind, task, florence_task, why", AGREEMENT, ids=[c[-1] for c in AGREEMENT])
def test_parse_instances_agrees_with_parse_florence(kind, task, florence_task, why):
    # on any text (well-formed, malformed, soups): the same instances, the same labels,
    # float centres that truncate to parse_florence's ints
    rng = random.Random(why)
    for i in range(500):
        size = (rng.randint(1, 4000), rng.randint(1, 4000))
        text = rng.choice(GENERATORS)(rng, size)
        for _ in range(i % 3):
            text = _malformed(rng, text)
        text = "</s><s>" + text + "</s>" if i % 2 else text
        parsed = parse_instances(text, kind, size, task=task)
        answer = parse_florence(text, florence_task, size)[florence_task]
        boxes, box_labels = answer.get("bboxes", []), answer.get("bboxes_labels", answer.get("labels"))
        polygons, polygon_labels = answer.get("polygons", []), answer.get("polygons_labels", answer.get("labels"))
        assert [_truncated(b) for b in parsed.boxes] == boxes, text
        assert [[_truncated(r) for r in inst] for inst in parsed.polygons] == polygons, text
        assert parsed.box_labels == (box_labels if "bboxes" in answer else []), text
        assert parsed.polygon_labels == (polygon_labels if "polygons" in answer else []), text
        assert all(r.dtype == np.float32 and r.shape[1:] == (2,) for inst in parsed.polygons for r in inst)
