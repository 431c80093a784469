"""Fuzzing every entry point of gi_sdk._native: random and malformed frames, arrays and token
sequences. Passing means no crash (a segfault or abort would end the run) and no exception
other than the documented ValueError (TypeError where pybind11 rejects an argument's type).

Three sources of cases, counted and printed at the end of the module (>= 100k in all):
- a seeded bulk loop (numpy random: wrong dtypes, shapes, strides, NaN, huge values, empty);
- hypothesis strategies per entry point;
- atheris (coverage-guided byte mutation), run as a subprocess of this file when installed:
  ``python tests/test_native_fuzz.py -runs=5000``.
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

CASES: Counter = Counter()
ACCEPTED = (ValueError, TypeError)
DTYPES = [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]


def _native():
    import gi_sdk.native

    return gi_sdk.native.native()


def _array(rng, dtypes=DTYPES, max_dim=4, max_side=12):
    """A random array: any dtype, 0-4 dims, sometimes a strided view, sometimes NaN / inf."""
    shape = tuple(int(v) for v in rng.integers(0, max_side, int(rng.integers(0, max_dim + 1))))
    dt = np.dtype(dtypes[int(rng.integers(len(dtypes)))])
    if dt.kind == "f":
        with np.errstate(over="ignore"):  # float16 overflows to inf on purpose
            a = (rng.standard_normal(shape) * 10.0 ** rng.integers(0, 12)).astype(dt)
        if a.size and rng.random() < 0.2:
            a.flat[int(rng.integers(a.size))] = rng.choice([np.nan, np.inf, -np.inf])
    elif dt.kind == "b":
        a = rng.random(shape) < 0.5
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    if a.ndim and a.shape[0] > 2 and rng.random() < 0.2:
        a = a[::2]  # not C-contiguous
    return a


def _frame(rng):
    """A frame-like uint8 array, usually valid, sometimes a crop view or a wrong shape."""
    h, w = (int(v) for v in rng.integers(0, 40, 2))
    c = int(rng.choice([1, 2, 3, 3, 4, 4, 5]))
    f = rng.integers(0, 256, (h + 1, w + 1, c), dtype=np.uint8)
    r = rng.random()
    if r < 0.15:
        return f[1:, 1:]  # rows strided: accepted
    if r < 0.2:
        return f[:, ::2]  # pixels strided: refused
    return f[:h, :w] if rng.random() < 0.1 else f


def _ids(rng):
    n = int(rng.integers(0, 60))
    dt = rng.choice([np.int64, np.int32] * 5 + [np.int16, np.float32])
    ids = rng.integers(-5, 1700, n)
    locs = rng.random(n) < 0.5  # the tiny vocabulary's location ids: 585 .. 1584
    ids[locs] = rng.integers(585, 1585, int(locs.sum()))
    return ids.astype(dt)


def _classes(rng):
    return rng.integers(0, 10, int(rng.integers(0, 1700)), dtype=np.uint8) if rng.random() < 0.9 else _array(rng)


REFUSED: Counter = Counter()


def _call(name: str, fn, *args) -> None:
    try:
        fn(*args)
    except ACCEPTED:
        REFUSED[name] += 1  # refused at the boundary, as documented
    CASES[name] += 1


def _values(rng, shape, dtype=np.float32):
    """Floats over many magnitudes: tiny, pixel-sized, huge (but finite), sometimes NaN / inf."""
    with np.errstate(over="ignore"):
        a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 30)).astype(dtype)
    if a.size and rng.random() < 0.1:
        a.flat[int(rng.integers(a.size))] = rng.choice([np.nan, np.inf, -np.inf])
    return a


def _one_case(mod, rng) -> None:
    """One call of each entry point: well-typed arguments with random contents 80% of the time
    (they reach the kernels), malformed arrays otherwise (they must be refused cleanly)."""
    r = rng
    bad = lambda: r.random() < 0.2  # noqa: E731
    size = lambda: float(r.choice([640.0, 1.0, 3.5, 1e9, r.uniform(0, 5000)] * 4 + [0, -1, np.nan, np.inf]))  # noqa: E731
    pairs = (int(r.integers(0, 5)), 2 * int(r.integers(0, 4)))
    _call("quantize", mod.quantize, _array(r) if bad() else _values(r, pairs), size(), size())
    bins = r.integers(-(2 ** 31), 2 ** 31 - 1, pairs, dtype=np.int32, endpoint=True)
    _call("dequantize", mod.dequantize, _array(r) if bad() else bins, size(), size())

    frame = _frame(r)
    oh, ow = int(r.integers(1, 30)), int(r.integers(1, 30))
    out = _array(r) if bad() else np.empty((3, oh, ow), r.choice([np.float32, np.float16]))
    fh, fw = (frame.shape[0], frame.shape[1]) if frame.ndim == 3 else (1, 1)
    x, y = int(r.integers(0, max(fw, 1))), int(r.integers(0, max(fh, 1)))
    crop = (x, y, int(r.integers(1, max(fw - x, 1) + 1)), int(r.integers(1, max(fh - y, 1) + 1)))
    if bad():
        crop = tuple(int(v) for v in r.integers(-5, 45, 4))
    cmap = tuple(int(v) for v in r.integers(-1, 5, 3)) if bad() else tuple(int(v) for v in r.integers(0, 3, 3))
    scale = [float(v) for v in _values(r, 3)] if bad() else [float(v) for v in r.uniform(-10, 10, 3)]
    _call("resize_normalize", mod.resize_normalize, frame, out, crop, cmap, scale, [0.0, -1.0, 2.0],
          int(r.choice([1, 1, 2, 3])) if not bad() else int(r.choice([0, 300, -1])))
    _call("resize_weights", mod.resize_weights, int(r.integers(-2, 3000)), int(r.integers(-2, 300)))
    _call("find_fov", mod.find_fov, frame, int(r.integers(-5, 300)) if bad() else int(r.integers(0, 256)),
          float(r.choice([0, 2, np.nan])) if bad() else float(r.uniform(0.001, 1)),
          int(r.integers(-1, 1)) if bad() else int(r.integers(1, 9)))
    polygons = [_array(r, [np.float32, np.float64], 2) if bad() else _values(r, (int(r.integers(0, 12)), 2))
                for _ in range(int(r.integers(0, 4)))]
    _call("polygons_to_mask", mod.polygons_to_mask, polygons, int(r.integers(-2, 50)) if bad() else int(r.integers(0, 50)),
          int(r.integers(0, 50)))
    n, m = int(r.integers(0, 6)), int(r.integers(0, 6))
    _call("box_iou", mod.box_iou, _array(r) if bad() else _values(r, (n, 4)), _values(r, (m, 4)))
    hw = (int(r.integers(0, 70)), int(r.integers(0, 70)))
    _call("mask_iou", mod.mask_iou, _array(r, [np.bool_, np.uint8], 3, 9) if bad() else r.random((n,) + hw) < 0.5,
          r.random((m,) + hw) < r.random())
    _call("polygon_area", mod.polygon_area, _array(r) if bad() else _values(r, (int(r.integers(0, 12)), 2)))
    classes = _classes(r) if bad() else r.integers(0, 9, int(r.integers(0, 1700)), dtype=np.uint8)
    _call("decode_tokens", mod.decode_tokens, _ids(r), classes, int(r.choice([585, 585, 0, -1000, 2 ** 40])),
          int(r.integers(-1, 9)) if bad() else int(r.integers(0, 8)), size(), size())
    _decode_ids(mod, r, classes, bad, size)


def _result_classes():
    """(parsed, fill) pairs for IdDecoder: gi_sdk's Parsed filled natively or called, a tuple."""
    from gi_sdk.florence_parser import Parsed
    from gi_sdk.token_decoder import _PARSED_FIELDS

    class Fields:
        def __init__(self, *fields):
            self.fields = fields

    return [(Parsed, _PARSED_FIELDS), (Parsed, None), (Fields, None)]


_RESULT = _result_classes()


def _span_text(ids, tail, phrase):
    """A stand-in for TokenVocab's text of a span: some text, None for some phrases."""
    if phrase and len(ids) % 3 == 1:
        return None
    return "é x"[: len(ids) % 4] + ("\n" if tail % 5 == 0 else "")


def _decode_ids(mod, r, classes, bad, size) -> None:
    """IdDecoder (gi_sdk.decode_ids' native half): a decoder, then a few sequences through it."""
    try:
        decoder = mod.IdDecoder(classes, int(r.choice([585, 585, 0, -1000, 2 ** 40])),
                                _span_text if not bad() else (lambda *a: 7), np.zeros((0, 4), np.float32),
                                np.zeros((0, 2), np.float32), *_RESULT[int(r.integers(len(_RESULT)))])
    except ACCEPTED:
        REFUSED["IdDecoder"] += 1
        CASES["IdDecoder"] += 1
        return
    CASES["IdDecoder"] += 1
    odd_sizes = [None, (1.0,), "xy", 5, (np.nan, 2.0)]
    image = (float(r.uniform(0.5, 5000)), float(r.uniform(0.5, 5000))) if not bad() else (
        odd_sizes[int(r.integers(len(odd_sizes)))] if r.random() < 0.5 else (size(), size()))
    bans = [None, None, None, ("the image", " x"), frozenset({"é x"}), 3]
    banned = bans[int(r.integers(len(bans)))]
    for _ in range(2):
        _call("IdDecoder.decode", decoder.decode, _ids(r) if not bad() else _array(r),
              int(r.integers(-1, 9)) if bad() else int(r.integers(0, 8)), image, banned)


def test_bulk_random_calls():
    # 10,000 rounds of every entry point with random, mostly malformed, arguments
    mod = _native()
    if mod is None:
        import pytest

        pytest.skip("gi_sdk._native is not built")
    rng = np.random.default_rng(20240611)
    for _ in range(10_000):
        _one_case(mod, rng)
    assert sum(CASES.values()) >= 100_000


def test_hypothesis_structured_calls():
    # hypothesis picks the sizes and values; shrinking would point at the smallest crasher
    import pytest

    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    mod = _native()
    if mod is None:
        pytest.skip("gi_sdk._native is not built")

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @hypothesis.given(seed=st.integers(0, 2 ** 32 - 1), h=st.integers(1, 64), w=st.integers(1, 64),
                      oh=st.integers(1, 48), ow=st.integers(1, 48), cn=st.sampled_from([3, 4]),
                      ids=st.lists(st.integers(-(2 ** 31), 2 ** 31 - 1), max_size=40),
                      grammar=st.integers(0, 7), loc=st.integers(-(2 ** 40), 2 ** 40))
    def run(seed, h, w, oh, ow, cn, ids, grammar, loc):
        rng = np.random.default_rng(seed)
        frame = rng.integers(0, 256, (h, w, cn), dtype=np.uint8)
        out = np.empty((3, oh, ow), np.float32)
        _call("resize_normalize", mod.resize_normalize, frame, out, (0, 0, w, h), (0, 1, 2), [1, 1, 1], [0, 0, 0], 1)
        _call("find_fov", mod.find_fov, frame, int(rng.integers(0, 256)), 0.1, int(rng.integers(1, 9)))
        classes = rng.integers(0, 9, 1700, dtype=np.uint8)
        _call("decode_tokens", mod.decode_tokens, np.array(ids, np.int64), classes, loc, grammar, 640.0, 480.0)
        _call("decode_tokens", mod.decode_tokens, np.array(ids, np.int64).astype(np.int32), classes, 585, grammar,
              640.0, 480.0)
        decoder = mod.IdDecoder(classes, loc, _span_text, np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32),
                                *_RESULT[0])
        _call("IdDecoder.decode", decoder.decode, np.array(ids, np.int64), grammar, (640.0, 480.0), ("x",))
        poly = (rng.standard_normal((int(rng.integers(0, 12)), 2)) * 10 ** rng.integers(0, 9)).astype(np.float32)
        _call("polygons_to_mask", mod.polygons_to_mask, [poly], oh, ow)

    run()


def test_atheris_subprocess(tmp_path):
    # coverage-guided mutation of the same calls (skipped when atheris is not installed)
    import pytest

    pytest.importorskip("atheris")
    if _native() is None:
        pytest.skip("gi_sdk._native is not built")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "-runs=5000", "-seed=1",
                           f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = re.findall(r"Done (\d+) runs", proc.stderr)
    assert runs and int(runs[-1]) >= 5000, proc.stderr[-2000:]
    CASES["atheris (all entry points)"] += int(runs[-1])


def test_report(request):
    # prints the number of fuzz cases (run last in this module)
    parts = ", ".join(f"{k} {v} ({REFUSED[k]} refused)" for k, v in sorted(CASES.items()))
    line = f"native fuzz: {sum(CASES.values())} cases, 0 crashes; per entry point: {parts}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("\n" + line)


def _atheris_main() -> None:
    import atheris

    with atheris.instrument_imports():
        import gi_sdk.native  # noqa: F401
    mod = _native()

    def one_input(data: bytes) -> None:
        # the bytes seed a generator: atheris steers it through the Python-side branches
        fdp = atheris.FuzzedDataProvider(data)
        _one_case(mod, np.random.default_rng(fdp.ConsumeIntInRange(0, 2 ** 63 - 1)))

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main()
