"""Quantized variants of a staged bundle, measured against its fp32 parts, and the choice
of a precision per part.

For the precision asked (``gi_sdk.export.quantize.parse_precision``) each quantized part is
made once, then run: fp32, each quantized part alone (when more than one is), and the whole
choice, on held-out frames (``gi_sdk.export.report``). ``precision="auto"`` starts from
dynamic int8 of every part (``AUTO_CANDIDATES``), keeps the parts whose own run does not hurt localization, checks them
together and drops the least faithful one while they do.
"""
from __future__ import annotations

from pathlib import Path

from gi_sdk.bundle import PARTS, Bundle
from gi_sdk.checkpoint import Checkpoint
from gi_sdk.errors import ExportError

from .frames import HELD_OUT_SEED, calibration_frames, folder_frames, real_frames_dir, synthetic_frames
from .parts import PART_FILES
from .quantize import AUTO_CANDIDATES, make_variant, parse_precision
from .report import LOCALIZATION_MIN_IOU, REPORT_TASKS, agreement, hurts_localization, part_latency, run_cases


def _variant_session(staging: Path, manifest: dict, assignment: dict, files: dict):
    """A Session on the staged parts with the files of ``assignment`` (no copy, no rewrite)."""
    from gi_sdk.session import Session

    parts = {part: {"file": files[(part, precision)].name, "precision": precision}
             for part, precision in assignment.items()}
    bundle = Bundle(path=staging, manifest={**manifest, "parts": parts})
    return Session(Checkpoint.from_bundle(bundle), backend="onnxruntime")


def _held_out(calibration_names: set, synthetic: int, real: int, real_dir) -> tuple[list, str]:
    frames = synthetic_frames(synthetic, HELD_OUT_SEED)
    folder = real_dir if real_dir is not None else real_frames_dir()
    taken = folder_frames(folder, real, skip=calibration_names) if folder is not None and real else []
    what = f"{synthetic} synthetic (seed {HELD_OUT_SEED})" + (f", {len(taken)} real from {folder}" if taken else "")
    return frames + taken, what


def quantize_bundle(staging: Path, graphs: Path, manifest: dict, ck, precision, calibration, real_dir,
                    checks, log=None) -> tuple[dict, dict]:
    """Make the variants ``precision`` asks for beside the staged fp32 parts, measure them
    against fp32, choose per part.

    staging: the staged bundle (fp32 parts, manifest); graphs: the decoder's two graphs.
    ck: the staged bundle's ``Checkpoint``; checks: ``gi_sdk.export.writer.ExportChecks``.
    Returns (the manifest's ``parts`` table for the choice, the report).
    """
    import onnxruntime
    from gi_sdk.preprocessing import preprocess

    auto = precision == "auto"
    requested = dict(AUTO_CANDIDATES) if auto else parse_precision(precision)
    pixels, calibration_what, calibration_names = [], None, set()
    if "int8-static" in requested.values():
        frames, calibration_what = calibration_frames(calibration, checks.calibration_frames)
        calibration_names = {name for name, _ in frames}
        calibration_what = f"{len(frames)} frames from {calibration_what}"
        pixels = [preprocess(f, size=ck.image_size, mean=ck.image_mean, std=ck.image_std) for _, f in frames]
    held, held_what = _held_out(calibration_names, checks.report_synthetic, checks.report_real, real_dir)
    if not held:  # before minutes of quantization: a variant nobody measured must not ship
        raise ExportError(f"precision {precision!r} needs held-out frames to measure the quantized parts against "
                          f"fp32, and there are none (report_synthetic={checks.report_synthetic}, report_real="
                          f"{checks.report_real}); give ExportChecks at least one report frame, or export fp32")
    files = {(part, "fp32"): staging / PART_FILES[part] for part in PARTS}
    for part, chosen in requested.items():
        if chosen != "fp32":
            if log is not None:
                log(f"making {part} {chosen}")
            files[(part, chosen)] = make_variant(part, files[(part, "fp32")], chosen, pixels, graphs)

    fp32 = dict.fromkeys(PARTS, "fp32")
    results, variants = {}, []

    def measure(name: str, assignment: dict) -> dict:
        session = _variant_session(staging, manifest, assignment, files)
        out = run_cases(session, held, max_new_tokens=checks.report_tokens)
        used = {part: files[(part, q)] for part, q in assignment.items()}
        entry = {"name": name, "precision": assignment,
                 "files": {p: {"file": f.name, "bytes": f.stat().st_size} for p, f in used.items()},
                 "total_bytes": sum(f.stat().st_size for f in used.values()),
                 "latency_ms": part_latency(session, held[0][1], repeats=checks.latency_repeats)}
        if name != "fp32":
            entry["accuracy"] = agreement(results["fp32"], out)
            entry["hurts_localization"] = hurts_localization(entry["accuracy"])
        results[name] = out
        variants.append(entry)
        return entry

    measure("fp32", fp32)
    quantized = [part for part, q in requested.items() if q != "fp32"]
    solo = {}
    if len(quantized) > 1 or auto:  # one part at a time: which part costs what
        for part in quantized:
            solo[part] = measure(f"{part} {requested[part]} only", {**fp32, part: requested[part]})

    def worst_iou(part: str) -> float:
        acc = solo[part]["accuracy"]
        return min(v for v in (acc["box_iou"], acc["mask_iou"], 1.0) if v is not None)

    if auto:
        kept = [p for p in quantized if not solo[p]["hurts_localization"]]
        chosen = fp32
        while kept:
            chosen = {**fp32, **{p: requested[p] for p in kept}}
            together = solo[kept[0]] if len(kept) == 1 else measure(
                "auto: " + ", ".join(f"{p} {requested[p]}" for p in kept), chosen)
            if not together["hurts_localization"]:
                break
            kept.remove(min(kept, key=worst_iou))  # together they hurt: drop the part that agreed least
            chosen = fp32
        hurt = [p for p in quantized if p not in kept]
        why = (f"kept {', '.join(f'{p} {requested[p]}' for p in kept) or 'no quantized part'}"
               + (f"; left fp32 because quantizing them hurt localization (IoU against fp32 < "
                  f"{LOCALIZATION_MIN_IOU}): {', '.join(hurt)}." if hurt else "; no part hurt localization."))
    else:
        chosen = requested
        final = measure(str(precision), requested)
        hurt = [p for p in quantized if solo[p]["hurts_localization"]] if solo else (
            quantized if final["hurts_localization"] else [])
        if final["hurts_localization"]:
            keep = [p for p in quantized if p not in hurt]
            why = (f"{precision} HURTS LOCALIZATION (box or mask IoU against fp32 below {LOCALIZATION_MIN_IOU}); "
                   f"parts that hurt it on their own: {', '.join(hurt) or 'none alone, only together'}. "
                   "Per-part precisions that do not: "
                   + (",".join(f"{p}={requested[p]}" for p in keep) or "all fp32")
                   + " (or export with --precision auto). Written as asked.")
        else:
            why = f"{precision} keeps localization (box and mask IoU against fp32 >= {LOCALIZATION_MIN_IOU})."
    if log is not None:
        log(why)
    report = {
        "reference": "fp32",
        "held_out": {"frames": [name for name, _ in held], "description": held_what,
                     "tasks": [t for t, _ in REPORT_TASKS], "max_new_tokens": checks.report_tokens},
        "calibration": calibration_what,
        "machine": _machine(),
        "onnxruntime": onnxruntime.__version__,
        "latency_repeats": checks.latency_repeats,
        "latency_columns": list(variants[0]["latency_ms"]),
        "thresholds": {"localization_min_iou": LOCALIZATION_MIN_IOU},
        "variants": variants,
        "choice": {"precision": chosen, "why": why},
    }
    return {part: {"file": files[(part, q)].name, "precision": q} for part, q in chosen.items()}, report


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} logical cores"
