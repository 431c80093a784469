"""TensorRT engines from a bundle's ONNX parts (``gi-sdk export --tensorrt``).

UNTESTED: written against the documented TensorRT 10 Python API (Builder, OnnxParser,
IBuilderConfig, IOptimizationProfile, ITimingCache) and never run: the machines this was
written on have neither TensorRT nor a GPU. Without them it refuses with
MissingDependencyError / BackendUnavailableError, and nothing else of the export changes.

What it builds, into ``engines/``:

    vision_encoder.plan            FP16; INT8 too when the bundle's vision encoder is the
                                   int8-static QDQ graph (explicit quantization: TensorRT
                                   takes the scales ONNX Runtime calibrated)
    embed_tokens.plan              FP16, from the fp32 graph
    encoder_model.plan             FP16, from the fp32 graph
    decoder_model.plan             FP16, first decoder step (the merged decoder's two graphs
    decoder_with_past_model.plan   FP16, later steps        are built apart: no If in TensorRT)

ONNX Runtime's dynamic int8 graphs (MatMulInteger) are not TensorRT graphs, so the text
parts are built from fp32 with FP16 kernels. FP8 is not offered: it needs FP8 Q/DQ nodes in
the graph (NVIDIA ModelOpt), which this exporter does not write.
One optimization profile per engine covers the dynamic axes (batch 1..MAX_BATCH, prompt up
to the text encoder's 1024 positions, decoded length up to 1023); a timing cache is kept
beside the engines. The manifest records GPU name, compute capability and TensorRT version;
``gi_sdk.bundle.Bundle.engine`` refuses an engine built for another GPU or TensorRT.
"""
from __future__ import annotations

from pathlib import Path

from gi_sdk.errors import BackendUnavailableError, ExportError, require

from .parts import DECODER_GRAPHS, PART_FILES

MAX_BATCH = 4
MAX_POSITIONS = 1024
WORKSPACE_BYTES = 4 << 30


def _gpu() -> dict:
    torch = require("torch", "export")
    if not torch.cuda.is_available():
        raise BackendUnavailableError("building TensorRT engines needs a CUDA GPU; this machine has none. "
                                      "Export without --tensorrt here and build engines on the target GPU")
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


def check_can_build() -> dict:
    """Raise MissingDependencyError without tensorrt, BackendUnavailableError without a GPU;
    else return the GPU's name and compute capability."""
    require("tensorrt", "gpu")
    return _gpu()


def _ranges(image_seq_length: int) -> dict:
    """(min, opt, max) per named ONNX axis (the dim_param names of gi_sdk.export.parts)."""
    prompt = image_seq_length + 16
    return {
        "batch_size": (1, 1, MAX_BATCH),
        "sequence_length": (1, prompt, MAX_POSITIONS),
        "encoder_sequence_length": (1, prompt, MAX_POSITIONS),
        "decoder_sequence_length": (1, 1, 64),
        "past_decoder_sequence_length": (1, 64, MAX_POSITIONS - 1),
    }


def _profile(builder, onnx_path: Path, ranges: dict):
    """An optimization profile for every input of ``onnx_path`` with a named dynamic axis."""
    onnx = require("onnx", "export")
    profile = builder.create_optimization_profile()
    shapes = {}
    for value in onnx.load(str(onnx_path), load_external_data=False).graph.input:
        dims = value.type.tensor_type.shape.dim
        if not any(d.dim_param for d in dims):
            continue
        per = [ranges[d.dim_param] if d.dim_param else (d.dim_value,) * 3 for d in dims]
        low, opt, high = (tuple(r[k] for r in per) for k in range(3))
        profile.set_shape(value.name, low, opt, high)
        shapes[value.name] = {"min": low, "opt": opt, "max": high}
    return profile, shapes


def _build(trt, logger, onnx_path: Path, plan: Path, int8: bool, ranges: dict, cache_bytes: bytes) -> tuple:
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    profile, shapes = _profile(builder, onnx_path, ranges)
    if shapes:
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} (see its log above)")
    plan.write_bytes(bytes(serialized))
    return shapes, bytes(config.get_timing_cache().serialize())


def build_engines(staging: Path, graphs: Path, manifest: dict, log=print) -> dict:
    """Build the engines into ``staging/engines``; return the manifest's ``tensorrt`` entry."""
    trt = require("tensorrt", "gpu")
    device = check_can_build()
    logger = trt.Logger(trt.Logger.WARNING)
    engines_dir = Path(staging) / "engines"
    engines_dir.mkdir(exist_ok=True)
    ranges = _ranges(int(manifest["tokenizer"]["image_seq_length"]))
    vision = manifest["parts"]["vision_encoder"]
    vision_int8 = vision["precision"] == "int8-static"
    sources = [
        ("vision_encoder", Path(staging) / (vision["file"] if vision_int8 else PART_FILES["vision_encoder"]), vision_int8),
        ("embed_tokens", Path(staging) / PART_FILES["embed_tokens"], False),
        ("encoder_model", Path(staging) / PART_FILES["encoder_model"], False),
        ("decoder_model", Path(graphs) / DECODER_GRAPHS[0], False),
        ("decoder_with_past_model", Path(graphs) / DECODER_GRAPHS[1], False),
    ]
    cache_path = engines_dir / "timing.cache"
    cache = b""
    engines = []
    for name, source, int8 in sources:
        if not source.is_file():
            raise ExportError(f"TensorRT source graph {source} is missing")
        log(f"building TensorRT engine {name} ({'INT8+FP16' if int8 else 'FP16'})")
        plan = engines_dir / f"{name}.plan"
        shapes, cache = _build(trt, logger, source, plan, int8, ranges, cache)
        engines.append({"name": name, "file": f"engines/{plan.name}", "source": source.name,
                        "precision": "int8+fp16" if int8 else "fp16", "profile": shapes, **device,
                        "tensorrt_version": trt.__version__})
    cache_path.write_bytes(cache)
    return {"engines": engines, "timing_cache": f"engines/{cache_path.name}", "tensorrt_version": trt.__version__,
            **device, "fp8": "not offered: needs FP8 Q/DQ nodes (NVIDIA ModelOpt) in the ONNX graphs"}
