"""gi_sdk.preprocess: the native resampler equals its numpy twin bit for bit, and stays within
one grey level of Pillow / transformers' Florence-2 image processor.

Tolerances (docs/native.md): native vs twin: identical bits (float32 and float16); native vs
Pillow's BICUBIC resize (22-bit fixed point; ours 16-bit): at most 1 grey level, on at most
0.05% of the values of real frames (0.013% measured on PolypGen) and 0.3% of synthetic ones
(smooth noise, 0.09-0.14% measured); native vs the HF image processor: the same plus float32
rounding of the normalization (<= 1e-6).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gi_sdk.native
from gi_sdk.errors import InvalidFrameError
from gi_sdk.preprocessing import (FLORENCE_MEAN, FLORENCE_STD, normalization, preprocess, preprocess_numpy,
                               resize_weights)

cv2 = pytest.importorskip("cv2")
POLYPGEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "polypgen" / "images"
GREY = 1 / 255 / min(FLORENCE_STD)  # one grey level in normalized units (largest channel)


def needs_native():
    mod = gi_sdk.native.native()
    if mod is None:
        pytest.skip("gi_sdk._native is not built")
    return mod


def scene(shape, seed=0) -> np.ndarray:
    """A frame with smooth areas and hard edges (both matter to the rounding)."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    noise = rng.integers(0, 256, (max(h // 4, 1), max(w // 4, 1), c), dtype=np.uint8)
    frame = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, c)
    frame[h // 3: h // 2, w // 4: w // 2] = 255  # a saturated block: overshoot gets clipped
    frame[: max(h // 10, 1)] = 0                  # a black band, like a scope border
    return frame


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


def twin_of(frame, size, channels="bgr", crop=None, dtype=np.float32):
    """preprocess_numpy called directly, as a reference independent of the dispatch."""
    index = {"bgr": (2, 1, 0), "bgra": (2, 1, 0), "rgb": (0, 1, 2), "rgba": (0, 1, 2)}[channels]
    x, y, w, h = crop if crop is not None else (0, 0, frame.shape[1], frame.shape[0])
    scale, bias = normalization(FLORENCE_MEAN, FLORENCE_STD)
    out = np.empty((3, size[1], size[0]), dtype)
    return preprocess_numpy(frame, index, (x, y, w, h), size, scale, bias, out)


CASES = [
    # (frame shape, size, channels, crop, dtype, why)
    ((1080, 1920, 3), (768, 768), "bgr", None, np.float32, "1080p from OpenCV: the 2.5x / 1.4x shrink of the hot path"),
    ((480, 640, 4), (768, 768), "rgba", None, np.float32, "RGBA from a Holoscan-style source, enlarged"),
    ((360, 640, 4), (96, 64), "bgra", None, np.float16, "BGRA to float16, the alpha byte ignored"),
    ((1, 1, 3), (768, 768), "rgb", None, np.float32, "1-pixel frame: every output reads the one pixel"),
    ((2, 3, 3), (5, 7), "bgr", None, np.float32, "tiny frame: windows wider than the image"),
    ((64, 64, 3), (64, 64), "bgr", None, np.float32, "same size: the resize is an identity"),
    ((33, 2900, 3), (40, 20), "bgr", None, np.float32, "72x shrink along x: 300-tap windows"),
    ((2900, 33, 3), (20, 30), "bgr", None, np.float32, "97x shrink along y: past the 64 rows the ring caches"),
    ((300, 400, 3), (37, 53), "bgr", None, np.float32, "odd output sizes: partial 8-lane vectors at every row end"),
    ((300, 400, 3), (1, 1), "bgr", None, np.float16, "a 1x1 model input"),
    ((720, 1280, 3), (224, 224), "bgr", (100, 50, 800, 600), np.float32, "crop inside the frame"),
    ((200, 300, 3), (50, 40), "rgb", (-20, 150, 100, 200), np.float32, "crop hanging off two edges: clipped"),
]


@pytest.mark.parametrize("shape, size, channels, crop, dtype, why", CASES, ids=[c[-1] for c in CASES])
def test_native_equals_twin(impl, shape, size, channels, crop, dtype, why):
    frame = scene(shape, seed=len(why))
    got = preprocess(frame, size=size, channels=channels, crop=crop, dtype=dtype)
    rect = None
    if crop is not None:
        x, y, w, h = crop
        x0, y0 = max(x, 0), max(y, 0)
        rect = (x0, y0, min(x + w, shape[1]) - x0, min(y + h, shape[0]) - y0)
    want = twin_of(frame, size, channels, rect, dtype)
    assert got.shape == (3, size[1], size[0]) and got.dtype == dtype
    assert np.array_equal(bits(got), bits(want)), why


def test_portable_build_equals_avx2_and_twin():
    # the plain C++ lanes (ARM, old x86) give the same bits as the AVX2 lanes and the twin
    mod = needs_native()
    cases = [((300, 500, 3), (77, 61), np.float32), ((97, 203, 4), (33, 129), np.float16), ((5, 3, 3), (9, 11), np.float32)]
    try:
        for shape, size, dtype in cases:
            frame = scene(shape, seed=shape[0])
            channels = "bgra" if shape[2] == 4 else "bgr"
            fast = preprocess(frame, size=size, channels=channels, dtype=dtype)
            assert mod.set_resize_isa("portable") == "portable"
            plain = preprocess(frame, size=size, channels=channels, dtype=dtype)
            mod.set_resize_isa("auto")
            assert np.array_equal(bits(plain), bits(fast))
            assert np.array_equal(bits(plain), bits(twin_of(frame, size, channels, None, dtype)))
    finally:
        mod.set_resize_isa("auto")


def test_resize_weights_equal_native():
    # the per-axis tables are built twice (C++ and numpy) and must agree to the bit; each
    # output's int16 weights sum to exactly 2^bits (a flat area keeps its value)
    mod = needs_native()
    rng = np.random.default_rng(3)
    pairs = [(1920, 768), (1080, 768), (768, 768), (1, 768), (7680, 768), (4320, 768), (640, 768)]
    pairs += [(int(a), int(b)) for a, b in rng.integers(1, 4000, (60, 2))]
    for a, b in pairs:
        s1, w1, bits1 = mod.resize_weights(a, b)
        s2, w2, bits2 = resize_weights(a, b)
        assert w1.dtype == w2.dtype == np.int16 and w1.shape[1] % 2 == 0, (a, b)
        assert np.array_equal(s1, s2) and np.array_equal(w1, w2) and bits1 == bits2, (a, b)
        assert 14 <= bits1 <= 22 and (w2.astype(np.int64).sum(axis=1) == 1 << bits2).all(), (a, b)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=120, deadline=None, derandomize=True, database=None)
@hypothesis.given(h=st.integers(1, 90), w=st.integers(1, 90), cn=st.sampled_from([3, 4]),
                  ow=st.integers(1, 70), oh=st.integers(1, 70), half=st.booleans(), seed=st.integers(0, 2**16),
                  crop=st.one_of(st.none(), st.tuples(st.integers(-10, 60), st.integers(-10, 60),
                                                      st.integers(1, 90), st.integers(1, 90))))
def test_random_frames_native_equals_twin(h, w, cn, ow, oh, half, seed, crop):
    # random sizes, channel counts, crops and dtypes: the two builds never differ by one bit
    needs_native()
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, cn), dtype=np.uint8)
    channels = "bgra" if cn == 4 else "bgr"
    dtype = np.float16 if half else np.float32
    try:
        got = preprocess(frame, size=(ow, oh), channels=channels, crop=crop, dtype=dtype)
    except InvalidFrameError:
        x, y, cw, ch = crop
        assert min(x + cw, w) <= max(x, 0) or min(y + ch, h) <= max(y, 0)  # the crop missed the frame
        return
    x, y = (max(crop[0], 0), max(crop[1], 0)) if crop else (0, 0)
    rect = (x, y, min(crop[0] + crop[2], w) - x, min(crop[1] + crop[3], h) - y) if crop else None
    assert np.array_equal(bits(got), bits(twin_of(frame, (ow, oh), channels, rect, dtype)))


def test_threads_and_strided_views_change_nothing():
    # bands of rows on 4 threads, and a crop view of a bigger array (rows strided, no copy)
    needs_native()
    big = scene((1200, 2100, 3), seed=5)
    view = big[60:1140, 90:2010]
    assert not view.flags.c_contiguous
    one = preprocess(np.ascontiguousarray(view))
    assert np.array_equal(preprocess(view, threads=4), one)
    assert np.array_equal(preprocess(big, crop=(90, 60, 1920, 1080), threads=3), one)


def test_output_alignment_changes_nothing():
    # a large float32 output is streamed in whole 32-byte lines: rows that start on a line, 16
    # bytes into one (numpy's usual) or off both (plain stores) all get the twin's values
    needs_native()
    frame = scene((720, 1280, 3), seed=11)
    want = twin_of(frame, (600, 500))
    raw = np.empty(3 * 500 * 600 + 16, np.float32)
    for shift in range(8):
        at = (-raw.ctypes.data // 4 + shift) % 8
        out = raw[at:at + 3 * 500 * 600].reshape(3, 500, 600)
        assert out.ctypes.data % 32 == 4 * shift
        out[...] = np.nan
        assert np.array_equal(bits(preprocess(frame, size=(600, 500), out=out)), bits(want)), shift


def test_out_buffer_is_reused(impl):
    # the caller's buffer is written in place and returned: no allocation per frame
    frame = scene((120, 160, 3))
    out = np.full((3, 48, 64), np.nan, np.float32)
    got = preprocess(frame, size=(64, 48), out=out)
    assert got is out and np.isfinite(out).all()


def test_8k_and_1_pixel_frames():
    # the largest frames a 8K endoscope delivers, and the smallest possible one
    needs_native()
    frame = np.zeros((4320, 7680, 3), np.uint8)
    frame[1000:3000, 2000:6000] = 200
    x = preprocess(frame)
    assert x.shape == (3, 768, 768) and np.isfinite(x).all()
    black = (0 - np.array(FLORENCE_MEAN)) / np.array(FLORENCE_STD)
    np.testing.assert_allclose(x[:, 0, 0], black, rtol=1e-6)
    one = preprocess(np.full((1, 1, 3), 200, np.uint8), size=(3, 2))
    assert np.allclose(one, one[:, :1, :1])


def pillow_rgb(rgb: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC)).transpose(2, 0, 1).astype(np.float32)


def test_random_frames_within_one_grey_level_of_pillow():
    # Pillow sums in 22-bit fixed point, we in 16-bit: a value near a rounding boundary can go
    # either way
    mod = needs_native()
    pytest.importorskip("PIL")
    for seed, (h, w, ow, oh) in enumerate([(1080, 1920, 768, 768), (300, 200, 768, 768), (97, 403, 61, 17)]):
        rgb = scene((h, w, 3), seed)
        ours = np.empty((3, oh, ow), np.float32)
        mod.resize_normalize(rgb, ours, (0, 0, w, h), (0, 1, 2), [1, 1, 1], [0, 0, 0], 1)
        diff = np.abs(ours - pillow_rgb(rgb, (ow, oh)))
        assert diff.max() <= 1 and (diff > 0).mean() <= 3e-3, (h, w, diff.max(), (diff > 0).mean())


@pytest.mark.skipif(not POLYPGEN.is_dir(), reason="PolypGen sample not found at ../shared/data/polypgen")
def test_polypgen_against_hf_image_processor(hf_processor):
    # transformers' Florence-2 image processor on real frames: at most one grey level apart
    needs_native()
    images = sorted(POLYPGEN.glob("*.jpg"))
    assert images
    worst, differing, total = 0.0, 0, 0
    for path in images:
        frame = cv2.imread(str(path))
        ours = preprocess(frame)
        hf = hf_processor.image_processor(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), return_tensors="np")["pixel_values"][0]
        diff = np.abs(ours - hf)
        worst = max(worst, float(diff.max()))
        differing += int((diff > 1e-5).sum())
        total += diff.size
    assert worst <= GREY + 1e-5 and differing / total <= 5e-4, (worst, differing / total)


@pytest.mark.skipif(not POLYPGEN.is_dir(), reason="PolypGen sample not found at ../shared/data/polypgen")
def test_polypgen_native_equals_twin():
    # real endoscopy frames (JPEG noise, black borders, overlays) through both builds
    needs_native()
    for path in sorted(POLYPGEN.glob("*.jpg"))[:3]:
        frame = cv2.imread(str(path))
        assert np.array_equal(bits(preprocess(frame)), bits(twin_of(frame, (768, 768))))


def test_gil_is_released():
    # another Python thread runs *during* the call: it could not if the GIL were held
    needs_native()
    frame = scene((4320, 7680, 3))
    stamps, done = [], threading.Event()

    def tick():
        while not done.is_set():
            stamps.append(time.perf_counter())

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        time.sleep(0.01)
        start = time.perf_counter()
        preprocess(frame)
        end = time.perf_counter()
    finally:
        done.set()
        ticker.join()
    inside = [t for t in stamps if start + 0.002 < t < end - 0.002]
    assert end - start > 0.005 and len(inside) > 10, (end - start, len(inside))
