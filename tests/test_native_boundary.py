"""The boundary of gi_sdk._native: strict types with useful errors, the stub, the fallback."""
from __future__ import annotations

import ast
import importlib
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gi_sdk
import gi_sdk.native
from gi_sdk.native import NativeExtensionWarning

STUB = Path(gi_sdk.__file__).with_name("_native.pyi")
F32, U8 = np.float32, np.uint8


@pytest.fixture
def mod():
    m = gi_sdk.native.native()
    if m is None:
        pytest.skip("gi_sdk._native is not built")
    return m


def frame(h=8, w=8, c=3):
    return np.zeros((h, w, c), U8)


def out(h=4, w=4, dtype=F32):
    return np.empty((3, h, w), dtype)


def resize(m, f=None, o=None, crop=(0, 0, 8, 8), cmap=(2, 1, 0), scale=(1, 1, 1), threads=1):
    return m.resize_normalize(frame() if f is None else f, out() if o is None else o, crop, cmap, list(scale),
                              [0, 0, 0], threads)


BAD = [
    # (call, words the message must hold, why)
    (lambda m: m.quantize(np.zeros(4), 10, 10), ["float32", "float64"], "quantize: wrong dtype, both named"),
    (lambda m: m.quantize([1.0, 2.0], 10, 10), ["numpy array", "list"], "quantize: a list"),
    (lambda m: m.quantize(np.zeros(3, F32), 10, 10), ["pairs"], "quantize: odd last axis"),
    (lambda m: m.dequantize(np.zeros(4, np.int32), 0, 10), ["positive"], "dequantize: zero width"),
    (lambda m: resize(m, f=np.zeros((8, 8, 3), np.float32)), ["uint8", "float32"], "resize: float frame"),
    (lambda m: resize(m, f=np.zeros((8, 8), U8)), ["(H, W, 3)", "(8, 8)"], "resize: grayscale frame"),
    (lambda m: resize(m, f=np.zeros((0, 8, 3), U8), crop=(0, 0, 8, 1)), ["1x1", "(0, 8, 3)"], "resize: zero rows"),
    (lambda m: resize(m, f=np.zeros((8, 16, 3), U8)[:, ::2]), ["packed"], "resize: strided pixels"),
    (lambda m: resize(m, o=out(dtype=np.float64)), ["float32 or float16", "float64"], "resize: float64 out"),
    (lambda m: m.resize_normalize(frame(), np.empty((4, 4), F32), (0, 0, 8, 8), (0, 1, 2), [1] * 3, [0] * 3, 1),
     ["(3, H, W)", "(4, 4)"], "resize: 2-D out"),
    (lambda m: resize(m, o=np.empty((3, 8, 8), F32)[:, ::2]), ["C-contiguous"], "resize: strided out"),
    (lambda m: resize(m, crop=(4, 4, 8, 8)), ["crop", "inside"], "resize: crop past the frame"),
    (lambda m: resize(m, crop=(0, 0, 0, 8)), ["crop"], "resize: empty crop"),
    (lambda m: resize(m, cmap=(0, 1, 3)), ["channel_map"], "resize: a 4th channel of a 3-channel frame"),
    (lambda m: resize(m, scale=(1, float("nan"), 1)), ["finite"], "resize: NaN scale"),
    (lambda m: resize(m, threads=0), ["threads"], "resize: zero threads"),
    (lambda m: m.resize_weights(0, 10), ["sizes"], "weights: zero input size"),
    (lambda m: m.find_fov(frame(), 300, 0.1, 1), ["threshold"], "fov: threshold past 255"),
    (lambda m: m.find_fov(frame(), 40, 0.0, 1), ["min_fill"], "fov: zero fill"),
    (lambda m: m.find_fov(frame(), 40, 0.1, 0), ["step"], "fov: zero step"),
    (lambda m: m.polygons_to_mask([np.zeros((3, 2))], 4, 4), ["float32", "float64"], "mask: float64 polygon"),
    (lambda m: m.polygons_to_mask([np.zeros((3, 2), F32)], -1, 4), ["height"], "mask: negative height"),
    (lambda m: m.box_iou(np.zeros((2, 3), F32), np.zeros((1, 4), F32)), ["(N, 4)", "(2, 3)"], "iou: 3 columns"),
    (lambda m: m.mask_iou(np.zeros((1, 4, 4), U8), np.zeros((1, 4, 4), bool)), ["bool", "uint8"], "iou: uint8 mask"),
    (lambda m: m.polygon_area(np.full((3, 2), np.nan, F32)), ["finite"], "area: NaN"),
    (lambda m: m.decode_tokens(np.zeros(3, np.uint8), np.zeros(9, U8), 0, 1, 1, 1), ["int64 or int32", "uint8"],
     "decoder: uint8 ids"),
    (lambda m: m.decode_tokens(np.zeros(3, np.int64), np.zeros(9, np.int32), 0, 1, 1, 1), ["uint8", "int32"],
     "decoder: int32 class table"),
    (lambda m: m.decode_tokens(np.zeros(3, np.int64), np.zeros(9, U8), 0, 8, 1, 1), ["grammar"], "decoder: grammar 8"),
    (lambda m: m.decode_tokens(np.zeros((2, 2), np.int64), np.zeros(9, U8), 0, 1, 1, 1), ["(T,)", "(2, 2)"],
     "decoder: 2-D ids"),
    (lambda m: id_decoder(m).decode(np.zeros(3, np.float32), 1, (10, 10), None), ["int64 or int32", "float32"],
     "id decoder: float ids"),
    (lambda m: id_decoder(m).decode([1, 2], 1, (10, 10), None), ["numpy array", "list"], "id decoder: a list"),
    (lambda m: id_decoder(m).decode(np.zeros((2, 2), np.int64), 1, (10, 10), None), ["(T,)", "(2, 2)"],
     "id decoder: 2-D ids"),
    (lambda m: id_decoder(m).decode(np.zeros(3, np.int64), 8, (10, 10), None), ["grammar"], "id decoder: grammar 8"),
    (lambda m: id_decoder(m).decode(np.zeros(3, np.int64), 1, (0, 10), None), ["positive", "(0, 10)"],
     "id decoder: zero width"),
    (lambda m: id_decoder(m).decode(np.zeros(3, np.int64), 1, "wide", None), ["positive", "wide"],
     "id decoder: a size that is no pair of numbers"),
    (lambda m: m.IdDecoder(np.zeros(9, np.int32), 0, str, None, None, tuple, None), ["uint8", "int32"],
     "id decoder: int32 classes"),
    (lambda m: m.IdDecoder(np.zeros(9, U8), 0, str, None, None, tuple, ("a", "b")), ["7 field names"],
     "id decoder: a result class with two fields"),
]


def id_decoder(m):
    return m.IdDecoder(np.zeros(9, U8), 0, lambda ids, tail, phrase: "", None, None, tuple, None)


@pytest.mark.parametrize("call, words, why", BAD, ids=[c[-1] for c in BAD])
def test_bad_arguments_raise_value_error_naming_both(mod, call, words, why):
    with pytest.raises(ValueError) as err:
        call(mod)
    for word in words:
        assert word in str(err.value), (why, str(err.value))


def test_equal_dtypes_made_elsewhere_are_accepted(mod):
    # an unpickled array carries its own dtype object, equal to numpy's (not the same object):
    # accepted; a big-endian float32 or float16 is another dtype: refused
    a, b = (pickle.loads(pickle.dumps(np.ones((n, 4), F32))) for n in (3, 2))
    assert a.dtype is not np.dtype(F32) or b.dtype is not np.dtype(F32)
    assert mod.box_iou(a, b).shape == (3, 2)
    half = pickle.loads(pickle.dumps(out(dtype=np.float16)))
    assert resize(mod, f=pickle.loads(pickle.dumps(frame())), o=half).dtype == np.float16
    with pytest.raises(ValueError):
        mod.box_iou(a.astype(">f4"), b)
    with pytest.raises(ValueError):
        resize(mod, o=out(dtype=">f2"))


def test_stub_matches_the_module(mod):
    # the .pyi ships next to the package and names exactly what the extension exports
    tree = ast.parse(STUB.read_text())
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    exported = {name for name in dir(mod) if not name.startswith("_") and callable(getattr(mod, name))}
    assert stubbed == exported
    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert '"_native.pyi"' in setup


def test_fallback_warns_once_and_twins_answer(monkeypatch):
    # no extension: one NativeExtensionWarning, then every public function still works
    real_import = importlib.import_module

    def no_native(name, *args, **kwargs):
        if name == "gi_sdk._native":
            raise ImportError("simulated missing build")
        return real_import(name, *args, **kwargs)

    gi_sdk.native.native.cache_clear()
    monkeypatch.setattr(importlib, "import_module", no_native)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert gi_sdk.native_available() is False
            assert gi_sdk.native.native() is None
            f = np.zeros((20, 30, 3), U8)
            assert gi_sdk.preprocess(f, size=(8, 8)).shape == (3, 8, 8)
            assert gi_sdk.find_fov(f) == (0, 0, 30, 20)
            assert gi_sdk.box_iou(np.zeros((1, 4), F32), np.zeros((2, 4), F32)).shape == (1, 2)
        assert sum(issubclass(w.category, NativeExtensionWarning) for w in caught) == 1
    finally:
        monkeypatch.undo()
        gi_sdk.native.native.cache_clear()
    assert gi_sdk.native_available() == (importlib.util.find_spec("gi_sdk._native") is not None)


def test_import_stays_light():
    # the new public names load without torch or transformers
    code = ("import sys, gi_sdk; [getattr(gi_sdk, n) for n in ('preprocess', 'find_fov', 'polygons_to_mask', "
            "'box_iou', 'mask_iou', 'polygon_area', 'decode_ids', 'TokenVocab', 'native_available')]; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
