"""What a quantized variant costs and gains, measured against the fp32 parts it came from.

For each variant: file sizes, CPU latency of each part (median of repeated runs on real
inputs), and agreement with fp32 over a held-out set of frames and tasks (frames no
calibration saw):

    token_agreement     share of token positions equal to fp32's (over the longer output)
    answer_exact_match  share of cases whose decoded text equals fp32's
    box_iou             detection/counting cases: each fp32 box's best IoU with the variant's
                        boxes, summed and divided by the larger box count (so missing or
                        extra boxes cost); 1 when both found none
    mask_iou            segmentation cases: IoU of the union masks; 1 when both are empty
    count_agreement     share of cases whose count equals fp32's

A variant whose box or mask IoU falls below ``LOCALIZATION_MIN_IOU`` hurts localization; the
report says so and names the parts that do (from one-part-at-a-time runs).
The metric functions are pure: lists of ``Result`` in, numbers out.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from gi_sdk.geometry import box_iou, mask_iou

#: Box or mask IoU against fp32 below this: the variant hurts localization.
LOCALIZATION_MIN_IOU = 0.9
#: (task, input text) run on every held-out frame.
REPORT_TASKS = (("detect", None), ("segment", "polyp"), ("count", "polyp"), ("ask", "How many polyps are there?"))
BOX_TASKS, MASK_TASKS = ("detect", "count"), ("segment",)


def _token_agreement(a: np.ndarray, b: np.ndarray) -> float:
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    n = min(len(a), len(b))
    return float(np.sum(a[:n] == b[:n])) / longest


def _box_agreement(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 and len(b) == 0:
        return 1.0
    if len(a) == 0 or len(b) == 0:
        return 0.0
    iou = box_iou(a, b)
    # a degenerate box (zero width or height) has IoU 0 even with itself: equal boxes agree
    iou[np.all(a[:, None, :] == b[None, :, :], axis=-1)] = 1.0
    return float(iou.max(axis=1).sum()) / max(len(a), len(b))


def _mask_agreement(ref, cand) -> float:
    width, height = ref.image_size
    a = ref.masks(height, width).any(axis=0) if len(ref) else np.zeros((height, width), bool)
    b = cand.masks(height, width).any(axis=0) if len(cand) else np.zeros((height, width), bool)
    if not a.any() and not b.any():
        return 1.0
    return mask_iou(a, b)


def agreement(reference: list, candidate: list) -> dict:
    """Agreement of ``candidate`` Results with ``reference`` Results, case by case."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference results but {len(candidate)} candidate results")
    pairs = list(zip(reference, candidate))
    boxes = [_box_agreement(r.boxes, c.boxes) for r, c in pairs if r.task in BOX_TASKS]
    masks = [_mask_agreement(r, c) for r, c in pairs if r.task in MASK_TASKS]

    def mean(values):
        return round(float(np.mean(values)), 4) if values else None

    return {
        "cases": len(pairs),
        "token_agreement": mean([_token_agreement(r.token_ids, c.token_ids) for r, c in pairs]),
        "answer_exact_match": mean([float(r.raw_text == c.raw_text) for r, c in pairs]),
        "box_iou": mean(boxes),
        "mask_iou": mean(masks),
        "count_agreement": mean([float(r.count == c.count) for r, c in pairs]),
    }


def hurts_localization(accuracy: dict) -> bool:
    """Whether box or mask IoU against fp32 fell below ``LOCALIZATION_MIN_IOU``."""
    return any(accuracy.get(k) is not None and accuracy[k] < LOCALIZATION_MIN_IOU for k in ("box_iou", "mask_iou"))


def run_cases(session, frames, tasks=REPORT_TASKS, max_new_tokens: int = 48) -> list:
    """Results of every (frame, task) on ``session``, in a fixed order."""
    return [session.run(frame, task, text, max_new_tokens=max_new_tokens) for _, frame in frames for task, text in tasks]


def _median_ms(fn, repeats: int) -> float:
    fn()  # first run pays for allocations; not counted
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


def part_latency(session, frame, repeats: int = 10, past_tokens: int = 16) -> dict:
    """Median CPU milliseconds of each part of an onnxruntime ``session`` on one frame:
    the vision encoder, the token embedding (prompt), the text encoder, the decoder's first
    step and a later decoder step with ``past_tokens`` tokens of cache."""
    backend = session.backend
    ck = session.checkpoint
    from gi_sdk.preprocessing import preprocess
    from gi_sdk.tasks import build_prompt

    pixels = preprocess(frame, size=ck.image_size, mean=ck.image_mean, std=ck.image_std)[None]
    ids = session._prompt_ids(build_prompt("detect"))
    features = backend.encode_image(pixels)
    embeds = backend.embed(ids)
    state = backend.encode_prompt(features, ids)
    token = np.array([ck.decoder_start_token_id], np.int64)
    _, cache = backend.decode_step(state, token, None)
    for _ in range(past_tokens - 1):
        _, cache = backend.decode_step(state, token, cache)
    mask = np.ones(ids.shape, np.int64)
    encoder = backend.sessions["encoder_model"]
    return {
        "vision_encoder": _median_ms(lambda: backend.encode_image(pixels), repeats),
        "embed_tokens": _median_ms(lambda: backend.embed(ids), repeats),
        "encoder_model": _median_ms(lambda: encoder.run(None, {"inputs_embeds": embeds, "attention_mask": mask}), repeats),
        "decoder_first_step": _median_ms(lambda: backend.decode_step(state, token, None), repeats),
        f"decoder_step_past{past_tokens}": _median_ms(lambda: backend.decode_step(state, token, cache), repeats),
    }


def markdown(report: dict) -> str:
    """The report as a markdown page (tables of sizes, latency and accuracy per variant)."""
    held = report["held_out"]
    lines = [
        "# Quantization report",
        "",
        f"Reference: fp32 parts. Held-out set: {len(held['frames'])} frames ({held['description']}) x "
        f"{len(held['tasks'])} tasks ({', '.join(held['tasks'])}), greedy, at most {held['max_new_tokens']} tokens.",
        f"Calibration (int8-static): {report['calibration'] or 'none'}.",
        f"Latency: CPU ({report['machine']}), ONNX Runtime {report['onnxruntime']}, median of "
        f"{report['latency_repeats']} runs, milliseconds.",
        f"A variant hurts localization when its box or mask IoU against fp32 is below {LOCALIZATION_MIN_IOU}.",
        "",
        "| variant | size MB | " + " | ".join(report["latency_columns"])
        + " | token agr. | exact match | box IoU | mask IoU | count agr. | localization |",
        "|---|---:|" + "---:|" * len(report["latency_columns"]) + "---:|---:|---:|---:|---:|---|",
    ]
    for v in report["variants"]:
        acc = v.get("accuracy") or {}
        cells = [v["name"], f"{v['total_bytes'] / 1e6:.2f}"]
        cells += [f"{v['latency_ms'][c]:.2f}" for c in report["latency_columns"]]
        cells += ["-" if acc.get(k) is None else f"{acc[k]:.3f}" for k in
                  ("token_agreement", "answer_exact_match", "box_iou", "mask_iou", "count_agreement")]
        cells.append("reference" if v["name"] == "fp32" else ("HURT" if v["hurts_localization"] else "kept"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Precision per part", ""]
    for v in report["variants"]:
        lines.append(f"- **{v['name']}**: " + ", ".join(f"{p} {q}" for p, q in v["precision"].items()))
    lines += ["", "## Choice", "", report["choice"]["why"], ""]
    return "\n".join(lines)


def write_report(folder, report: dict) -> tuple[Path, Path]:
    """Write ``quantization_report.json`` and ``quantization_report.md`` into ``folder``."""
    folder = Path(folder)
    js = folder / "quantization_report.json"
    md = folder / "quantization_report.md"
    js.write_text(json.dumps(report, indent=2), encoding="utf-8")
    md.write_text(markdown(report), encoding="utf-8")
    return js, md
