"""Smaller variants of the ONNX parts, made with ONNX Runtime's own tools.

    fp16         onnxruntime.transformers.float16 (inputs and outputs stay float32, so the
                 runtime feeds every precision the same arrays; LayerNormalization and
                 Softmax-heavy paths are kept as they convert)
    int8         onnxruntime.quantization.quantize_dynamic: int8 weights, activations
                 quantized on the fly (the text parts: embedding, encoder, decoder; the
                 vision encoder's matrix products, its convolutions staying fp32)
    int8-static  onnxruntime.quantization.quantize_static, QDQ format, per-channel weights,
                 activation ranges calibrated on frames (the vision encoder)

A precision is chosen per part: ``parse_precision("int8-static")`` expands a preset,
``parse_precision("vision_encoder=int8-static,decoder_model_merged=int8")`` names parts
(unnamed ones stay fp32).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gi_sdk.bundle import PARTS
from gi_sdk.errors import ExportError, require

from .merge_decoder import merge_decoders
from .parts import DECODER_GRAPHS

PRECISIONS = ("fp32", "fp16", "int8", "int8-static")
TEXT_PARTS = ("embed_tokens", "encoder_model", "decoder_model_merged")
#: What each part may be made: dynamic int8 needs no calibration but quantizes convolutions
#: poorly (ConvInteger), so the vision encoder's int8 is its matrix products only
#: (``VISION_DYNAMIC_OPS``) or static QDQ; static QDQ of the text parts would need calibration
#: prompts and is not offered.
ALLOWED = {"vision_encoder": ("fp32", "fp16", "int8", "int8-static"),
           **{part: ("fp32", "fp16", "int8") for part in TEXT_PARTS}}
PRESETS = {
    "fp32": dict.fromkeys(PARTS, "fp32"),
    "fp16": dict.fromkeys(PARTS, "fp16"),
    "int8": {"vision_encoder": "fp32", **dict.fromkeys(TEXT_PARTS, "int8")},
    "int8-static": {"vision_encoder": "int8-static", **dict.fromkeys(TEXT_PARTS, "int8")},
}
#: What ``precision="auto"`` tries, part by part, before keeping what does not hurt: dynamic
#: int8 everywhere. Not int8-static for the vision encoder: on every built-in model round it
#: moved masks far more (mask IoU against fp32 0.50-0.56) than dynamic int8 of the same matrix
#: products, and ran no faster on a CPU (docs/export.md); it stays a preset for TensorRT's
#: explicit quantization.
AUTO_CANDIDATES = {"vision_encoder": "int8", **dict.fromkeys(TEXT_PARTS, "int8")}
#: Ops the int8-static vision encoder computes in int8 (QDQ around them); the rest stays float.
STATIC_OPS = ["Conv", "MatMul", "Gemm"]
#: Ops the dynamic int8 vision encoder computes in int8 (MatMulInteger; Gemm is not one of
#: onnxruntime's dynamic ops, and exported Linear layers are MatMul + Add anyway).
VISION_DYNAMIC_OPS = ["MatMul"]
SUFFIX = {"fp32": "", "fp16": "_fp16", "int8": "_int8", "int8-static": "_int8_static"}


def parse_precision(spec) -> dict:
    """``{part: precision}`` for a preset name, a ``part=precision,...`` string or a dict.

    >>> parse_precision("int8")["decoder_model_merged"]
    'int8'
    """
    if isinstance(spec, dict):
        chosen = dict(spec)
    elif isinstance(spec, str) and spec in PRESETS:
        return dict(PRESETS[spec])
    elif isinstance(spec, str) and "=" in spec:
        chosen = {}
        for item in spec.split(","):
            part, _, precision = item.partition("=")
            chosen[part.strip()] = precision.strip()
    else:
        raise ExportError(f"precision {spec!r}: give one of {', '.join(PRESETS)} or per part, e.g. "
                          "'vision_encoder=int8-static,decoder_model_merged=int8'")
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise ExportError(f"precision names unknown parts {unknown}; the parts are {', '.join(PARTS)}")
    out = {part: chosen.get(part, "fp32") for part in PARTS}
    for part, precision in out.items():
        if precision not in ALLOWED[part]:
            raise ExportError(f"part {part} cannot be made {precision!r}; it can be {', '.join(ALLOWED[part])}")
    return out


class FrameReader:
    """onnxruntime's CalibrationDataReader over preprocessed frames (``pixel_values``)."""

    def __init__(self, pixels: list):
        self._items = iter([{"pixel_values": p[None].astype(np.float32)} for p in pixels])

    def get_next(self):
        return next(self._items, None)


def _fp16(src: Path, dst: Path) -> None:
    onnx = require("onnx", "export")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def _int8_dynamic(src: Path, dst: Path, op_types: list | None = None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # per-channel weight scales: a vocabulary-sized projection has rows of very different ranges
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=op_types)


def _int8_static(src: Path, dst: Path, pixels: list) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not pixels:
        raise ExportError("int8-static needs calibration frames (--calibration DIR_OR_VIDEO)")
    prepared = dst.with_name(dst.stem + "_prep.onnx")
    # ONNX Runtime's recommended preparation: shape inference and graph optimization first
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    try:
        # the compute-heavy ops only: Q/DQ around every add, reshape and softmax of the
        # window attention would cost accuracy and time and save next to nothing
        quantize_static(str(prepared), str(dst), FrameReader(pixels), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=STATIC_OPS, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)


@contextmanager
def _quiet():
    """ONNX Runtime's quantizers log a warning per tensor they skip (rank-1 norm weights for
    per-channel scales, "consider pre-processing"): keep them out of the export's output."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _convert(src: Path, precision: str, pixels: list, int8_ops: list | None = None) -> Path:
    dst = src.with_name(src.stem + SUFFIX[precision] + ".onnx")
    with _quiet():
        if precision == "fp16":
            _fp16(src, dst)
        elif precision == "int8":
            _int8_dynamic(src, dst, int8_ops)
        elif precision == "int8-static":
            _int8_static(src, dst, pixels)
        else:
            raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return dst


def make_variant(part: str, src, precision: str, calibration_pixels: list | None = None,
                 decoder_graphs=None) -> Path:
    """Write the ``precision`` variant of ``part`` (ONNX file ``src``) beside it
    (``<stem>_int8.onnx`` and so on); return its path (``src`` itself for fp32).

    The merged decoder is made from its two graphs in ``decoder_graphs``
    (``gi_sdk.export.parts.DECODER_GRAPHS``): each is converted, then the two are merged
    again, because ONNX Runtime's quantizers do not reach into ``If`` branches.
    """
    src = Path(src)
    if precision == "fp32":
        return src
    if part == "vision_encoder":
        return _convert(src, precision, calibration_pixels or [], VISION_DYNAMIC_OPS)
    if part != "decoder_model_merged":
        return _convert(src, precision, calibration_pixels or [])
    if decoder_graphs is None:
        raise ExportError("the merged decoder is converted from its two graphs; pass decoder_graphs")
    made = [_convert(Path(decoder_graphs) / name, precision, []) for name in DECODER_GRAPHS]
    return merge_decoders(*made, src.with_name(src.stem + SUFFIX[precision] + ".onnx"))
