"""``export_bundle``: checkpoint -> four ONNX parts -> verified -> (quantized) -> bundle folder.

Everything is built in a hidden staging folder beside ``out`` and moved into place only
after the fp32 parts have passed verification against the torch model, so an export that
fails leaves nothing behind (ExportError says what differed).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gi_sdk.bundle import PARTS, Bundle
from gi_sdk.checkpoint import Checkpoint
from gi_sdk.errors import ExportError, ModelLoadError, require

from .manifest import describe_model, provenance, write_manifest
from .parts import PART_FILES, export_parts
from .quantize import PRESETS, parse_precision
from .report import write_report
from .source import merged_source
from .variants import quantize_bundle
from .verify import compare_sessions, summarize, verification_frames


@dataclass(frozen=True)
class ExportChecks:
    """How much checking an export does (the defaults are what ``gi-sdk export`` runs).

    verify_synthetic, verify_real: frames of the fp32 verification (real: from the PolypGen
        sample or ``real_frames``), each run with every task of ``verify.VERIFY_TASKS``.
    checks: how many frames, tokens and timing runs verification and the report use.
    report_synthetic, report_real: held-out frames of the quantization report.
    report_tokens: token budget per report case.
    calibration_frames: frames for int8-static calibration.
    latency_repeats: timed runs per part (the median is reported).
    """

    verify_synthetic: int = 2
    verify_real: int = 3
    verify_tokens: int = 32
    report_synthetic: int = 4
    report_real: int = 6
    report_tokens: int = 48
    calibration_frames: int = 32
    latency_repeats: int = 10


def _say(log, message: str) -> None:
    if log is not None:
        log(message)


def export_bundle(checkpoint, out, precision="fp32", calibration=None, tensorrt: bool = False, *,
                  real_frames=None, track_start_score: float | None = None,
                  checks: ExportChecks = ExportChecks(), log=print) -> Path:
    """Export ``checkpoint`` to a verified model bundle at ``out``; return ``out``.

    checkpoint: a merged Florence-2 checkpoint folder, or a LoRA adapter folder (merged into
        its base first; the log and the manifest say so).
    out: the bundle folder to create (must not exist, or be empty).
    precision: ``"fp32"``, ``"fp16"``, ``"int8"`` (text parts int8, vision fp32),
        ``"int8-static"`` (text parts int8, vision int8 QDQ), ``"auto"`` (the int8 parts that
        do not hurt localization), or per part: ``"vision_encoder=int8-static,..."`` / a dict.
    calibration: folder of images or video file for int8-static (default: synthetic frames).
    tensorrt: also build TensorRT engines into ``engines/`` (needs tensorrt and a GPU).
    real_frames: folder of real frames for verification and the report (default: the
        PolypGen sample beside the checkout when present).
    track_start_score: the least instance score for a detection to start a track in
        ``Session.stream`` with this model (``gi_sdk.IouTracker``'s ``start_score``; how sure
        is sure depends on the model, so it travels with it); None: the tracker's default.
    checks: how many frames, tokens and timing runs verification and the report use.
    log: where progress lines go (None: silent).

    Raises ExportError (nothing written) when the export fails verification, ModelLoadError
    for a path that is no checkpoint, MissingDependencyError naming the pip extra to install.

    >>> export_bundle("runs/merged", "bundles/polyp-int8", precision="int8")   # doctest: +SKIP
    """
    # refuse what cannot be done before seconds of imports and minutes of work, not after
    if precision != "auto":
        parse_precision(precision)
    if track_start_score is not None and not 0.0 <= float(track_start_score) <= 1.0:
        raise ExportError(f"track_start_score {track_start_score} is not a score in [0, 1]")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder; choose a new bundle folder")
    if not Path(checkpoint).expanduser().exists():
        raise ModelLoadError(f"checkpoint {checkpoint} does not exist; give a merged Florence-2 checkpoint "
                             "folder or a LoRA adapter folder")
    require("torch", "export")
    transformers = require("transformers", "export")
    require("onnx", "export")
    require("onnxruntime", "export")
    if tensorrt:
        from .tensorrt import check_can_build

        check_can_build()
    from tokenizers import Tokenizer

    from gi_sdk.session import Session

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        work = Path(work)
        source, adapter = merged_source(checkpoint, work)
        if adapter:
            _say(log, f"{adapter['path']} is a LoRA adapter: merged it into its base {adapter['base']}")
        ck = Checkpoint.open(source)
        if ck.bundle is not None:
            raise ExportError(f"{source} is already a bundle; give the checkpoint it was exported from")
        if ck.family.answers != "location_tokens":  # see gi_sdk.backends.torch_vlm
            raise ExportError(f"{source} is a {ck.family.name} checkpoint: bundles hold Florence-2's four ONNX parts "
                              "only; run decoder-only VLMs from the checkpoint with backend 'torch'")
        staging = work / "bundle"
        _say(log, f"exporting {source} to ONNX")
        model = transformers.Florence2ForConditionalGeneration.from_pretrained(source).eval()
        graphs = work / "decoder_graphs"  # the merged decoder's two graphs, for quantization
        export_parts(model, staging, ck.image_size, graphs)
        del model
        shutil.copyfile(ck.tokenizer_file, staging / "tokenizer.json")
        record = None
        if (source / "training_record.json").is_file():
            shutil.copyfile(source / "training_record.json", staging / "training_record.json")
            record = json.loads((source / "training_record.json").read_text(encoding="utf-8"))
        manifest = {
            **describe_model(ck, Tokenizer.from_file(str(ck.tokenizer_file))),
            "parts": {part: {"file": PART_FILES[part], "precision": "fp32"} for part in PARTS},
            "provenance": provenance(source, adapter, record),
        }
        if track_start_score is not None:
            manifest["tracking"] = {"start_score": float(track_start_score)}
        write_manifest(staging, manifest)

        _say(log, "verifying the ONNX parts against torch")
        frames, frames_info = verification_frames(checks.verify_synthetic, checks.verify_real, real_frames)
        reference = Session(source, backend="torch")
        candidate = Session(staging, backend="onnxruntime")  # Bundle.open: format and hashes checked
        results = compare_sessions(reference, candidate, frames, max_new_tokens=checks.verify_tokens)
        del reference, candidate
        verification = summarize(results, frames_info, checks.verify_tokens)
        if not verification["passed"]:
            shown = "; ".join(verification["problems"][:5])
            raise ExportError(f"the ONNX export of {source} failed verification against torch, no bundle written: "
                              f"{shown} ({len(verification['problems'])} of {len(results)} cases)")
        _say(log, f"verified: {verification['cases']} cases, tokens identical, max |logit diff| "
                  f"{verification['max_abs_logit_diff']:.2g}")
        manifest["verification"] = verification

        if precision == "auto" or parse_precision(precision) != PRESETS["fp32"]:
            manifest["parts"], report = quantize_bundle(staging, graphs, manifest, ck, precision, calibration,
                                                        real_frames, checks, log)
            write_report(staging, report)
            manifest["quantization"] = {"report": "quantization_report.json", "report_markdown": "quantization_report.md",
                                        "requested": str(precision), "choice": report["choice"]}
        if tensorrt:
            from .tensorrt import build_engines

            manifest["tensorrt"] = build_engines(staging, graphs, manifest, log or (lambda line: None))
        # the bundle keeps only the ONNX files it runs; the report keeps the numbers of the others
        used = {entry["file"] for entry in manifest["parts"].values()}
        for path in staging.glob("*.onnx"):
            if path.name not in used:
                path.unlink()
        write_manifest(staging, manifest)
        Bundle.open(staging)  # the finished bundle passes the checks every loader makes
        if out.exists():
            out.rmdir()
        staging.rename(out)
    _say(log, f"wrote bundle {out}")
    return out
