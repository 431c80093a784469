"""Checking an exported bundle against the torch model it came from, before it is written.

Both sides run through ``gi_sdk.Session`` (same preprocessing, prompt layout, generation
loop ``gi_sdk.generate.greedy`` and decoding): the torch backend on the checkpoint, the
onnxruntime backend on the staged bundle. A recorder around each backend keeps the logits of
every decoder step. For every frame and task the greedy tokens must be identical, and the
logits of every step both sides reached with the same tokens must agree within

    |onnx - torch| <= LOGIT_ATOL + LOGIT_RTOL * |torch|      (elementwise, numpy.allclose)

fp32 ONNX Runtime and PyTorch differ by float rounding only (kernel order, fused ops):
about 1e-5 relative on the tiny model; the tolerance leaves room for larger models while
staying far below the gap between the top two logits that a changed token needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frames import VERIFY_SEED, folder_frames, real_frames_dir, synthetic_frames

LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-3
#: (task, input text) checked on every frame.
VERIFY_TASKS = (("detect", None), ("segment", "polyp"), ("count", "polyp"), ("ask", "Is there a polyp?"))


class LogitRecorder:
    """Wraps a backend and keeps the logits of each ``decode_step`` (the rest passes through)."""

    def __init__(self, backend):
        self.backend = backend
        self.logits: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def decode_step(self, state, tokens, cache=None):
        logits, cache = self.backend.decode_step(state, tokens, cache)
        self.logits.append(np.array(logits, np.float32))
        return logits, cache

    def take(self) -> list:
        out, self.logits = self.logits, []
        return out


@dataclass
class CaseResult:
    """One frame x task: what the two sides gave."""

    frame: str
    task: str
    tokens_equal: bool
    first_difference: int | None     # token position where they part, None when equal
    max_abs_logit_diff: float
    logits_within_tolerance: bool
    steps_compared: int

    def problem(self) -> str | None:
        if not self.tokens_equal:
            return f"{self.frame} / {self.task}: greedy tokens differ from position {self.first_difference}"
        if not self.logits_within_tolerance:
            return (f"{self.frame} / {self.task}: logits differ by up to {self.max_abs_logit_diff:.3g}, "
                    f"over the tolerance ({LOGIT_ATOL} + {LOGIT_RTOL} x |logit|)")
        return None


def verification_frames(synthetic: int = 2, real: int = 3, real_dir=None) -> tuple[list, dict]:
    """(frames, description): synthetic frames plus real ones (PolypGen sample when present)."""
    frames = synthetic_frames(synthetic, VERIFY_SEED)
    folder = real_dir if real_dir is not None else real_frames_dir()
    taken = folder_frames(folder, real) if folder is not None and real else []
    return frames + taken, {"synthetic": synthetic, "synthetic_seed": VERIFY_SEED, "real": len(taken),
                            "real_source": str(folder) if taken else None}


def _compare(frame_name: str, task: str, ref, ref_logits, cand, cand_logits) -> CaseResult:
    a, b = ref.token_ids.tolist(), cand.token_ids.tolist()
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if first is None and len(a) != len(b):
        first = min(len(a), len(b))
    # steps whose inputs were the same tokens on both sides: up to and including the first difference
    steps = min(len(ref_logits), len(cand_logits)) if first is None else min(first + 1, len(ref_logits), len(cand_logits))
    worst, ok = 0.0, True
    for x, y in zip(ref_logits[:steps], cand_logits[:steps]):
        worst = max(worst, float(np.max(np.abs(x - y))))
        ok = ok and bool(np.allclose(y, x, atol=LOGIT_ATOL, rtol=LOGIT_RTOL))
    return CaseResult(frame=frame_name, task=task, tokens_equal=first is None, first_difference=first,
                      max_abs_logit_diff=worst, logits_within_tolerance=ok, steps_compared=steps)


def compare_sessions(reference, candidate, frames, tasks=VERIFY_TASKS, max_new_tokens: int = 32) -> list:
    """Run every (frame, task) on both sessions; return a CaseResult per pair.

    ``reference`` and ``candidate`` are ``gi_sdk.Session`` objects; their backends are
    wrapped in a LogitRecorder for the duration.
    """
    rec_ref, rec_cand = LogitRecorder(reference.backend), LogitRecorder(candidate.backend)
    saved = reference.backend, candidate.backend
    reference.backend, candidate.backend = rec_ref, rec_cand
    try:
        results = []
        for name, frame in frames:
            for task, text in tasks:
                r = reference.run(frame, task, text, max_new_tokens=max_new_tokens)
                c = candidate.run(frame, task, text, max_new_tokens=max_new_tokens)
                results.append(_compare(name, task, r, rec_ref.take(), c, rec_cand.take()))
        return results
    finally:
        reference.backend, candidate.backend = saved


def summarize(results: list, frames_info: dict, max_new_tokens: int, tasks=VERIFY_TASKS) -> dict:
    """The manifest's ``verification`` entry."""
    problems = [p for p in (r.problem() for r in results) if p]
    return {
        "passed": not problems,
        "reference": "torch (transformers Florence2ForConditionalGeneration, float32, CPU)",
        "candidate": "onnxruntime (CPUExecutionProvider), fp32 parts",
        "cases": len(results),
        "identical_tokens": sum(r.tokens_equal for r in results),
        "max_abs_logit_diff": max((r.max_abs_logit_diff for r in results), default=0.0),
        "logit_tolerance": {"atol": LOGIT_ATOL, "rtol": LOGIT_RTOL},
        "max_new_tokens": max_new_tokens,
        "tasks": [t for t, _ in tasks],
        "frames": frames_info,
        "steps_compared": sum(r.steps_compared for r in results),
        "problems": problems,
    }
