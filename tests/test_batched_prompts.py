"""Several prompts on one frame (``Session.run_many``): the vision tower runs once, the
decodes run as one batch, and every result is the one ``run`` gives alone."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.codec import encode_region  # noqa: E402
from gi_sdk.errors import InvalidFrameError, UnknownTaskError  # noqa: E402

#: Tasks of every output kind, prompts of different lengths (so the batch is padded), and
#: budgets that differ (each task's default), so rows end at different steps.
REQUESTS = ["detect", ("ask", "Is there a polyp in the upper left of the image?"), ("segment", "polyp"),
            ("count", "polyp"), ("point", "instrument"), "region_proposal",
            ("region_to_segmentation", encode_region((40, 30, 200, 180), (320, 240))), "caption"]


def _frame(seed, h=240, w=320):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


class CallLog:
    """Wraps a backend; records the batch size of every encode and decode call."""

    def __init__(self, backend):
        self.backend, self.images, self.steps = backend, 0, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def encode_image(self, pixels):
        self.images += 1
        return self.backend.encode_image(pixels)

    def decode_step(self, state, tokens, cache=None):
        self.steps.append(len(tokens))
        return self.backend.decode_step(state, tokens, cache)


def _assert_same(alone, together):
    for a, b in zip(alone, together, strict=True):
        assert a.task == b.task
        assert a.token_ids.tolist() == b.token_ids.tolist(), a.task
        assert a.raw_text == b.raw_text and a.answer == b.answer and a.labels == b.labels
        np.testing.assert_array_equal(a.boxes, b.boxes)
        # float rounding of padded, batched matrix products: probabilities agree closely
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-7)
        assert abs(a.confidence - b.confidence) < 1e-5


def _check(session, frames=(0, 1, 2), budget=40):
    log = session.backend = CallLog(session.backend)
    for seed in frames:
        frame = _frame(seed)
        alone = [session.run(frame, *((r, None) if isinstance(r, str) else r), max_new_tokens=budget) for r in REQUESTS]
        log.images, log.steps = 0, []
        together = session.run_many(frame.copy(), REQUESTS, max_new_tokens=budget)
        _assert_same(alone, together)
        assert log.images == 0, "the frame's vision features are reused"
        assert log.steps and set(log.steps) == {len(REQUESTS)}, "one decoder call per step for all prompts"
        assert len(log.steps) == max(len(r.token_ids) for r in together)
    return together


@pytest.mark.parametrize("constrained", [True, False])
def test_torch_batch_equals_one_by_one(tiny_checkpoint, constrained):
    _check(Session(tiny_checkpoint, backend="torch", constrained=constrained))


def test_each_prompt_keeps_its_own_budget(tiny_checkpoint):
    session = Session(tiny_checkpoint, backend="torch")
    frame = _frame(3)
    together = session.run_many(frame, ["detect", ("ask", "Is there a polyp?")])  # defaults: 128 and 64 tokens
    alone = [session.detect(frame), session.ask(frame, "Is there a polyp?")]
    _assert_same(alone, together)
    assert len(together[1].token_ids) <= 64


def test_a_backend_that_decodes_one_sequence_runs_them_one_by_one(tiny_checkpoint):
    session = Session(tiny_checkpoint, backend="torch")
    log = session.backend = CallLog(session.backend)
    log.decodes_batches = False
    frame = _frame(4)
    alone = [session.run(frame, "detect", max_new_tokens=20), session.run(frame, "ask", "Why?", max_new_tokens=20)]
    log.steps = []
    _assert_same(alone, session.run_many(frame, ["detect", ("ask", "Why?")], max_new_tokens=20))
    assert set(log.steps) == {1}


def test_bad_requests_fail_before_any_model_work(tiny_checkpoint):
    session = Session(tiny_checkpoint, backend="torch")
    log = session.backend = CallLog(session.backend)
    with pytest.raises(UnknownTaskError):
        session.run_many(_frame(5), ["detect", "no_such_task"])
    with pytest.raises(InvalidFrameError):
        session.run_many(np.zeros((4, 4), np.uint8), ["detect", "caption"])
    assert log.images == 0 and log.steps == []
    assert session.run_many(_frame(5), []) == []


# ------------------------------------------------------------------ onnxruntime: its exported graphs have a batch axis
@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from gi_sdk.export import ExportChecks, export_bundle
    from gi_sdk.train.tiny import build_tiny_florence2

    root = tmp_path_factory.mktemp("batched")
    checkpoint = build_tiny_florence2(root / "tiny", image_size=128)
    checks = ExportChecks(verify_synthetic=1, verify_real=0, verify_tokens=4, report_synthetic=0, report_real=0,
                          report_tokens=4, calibration_frames=1, latency_repeats=1)
    return export_bundle(checkpoint, root / "bundle", checks=checks, log=None)


@pytest.mark.slow
@pytest.mark.parametrize("constrained", [True, False])
def test_onnxruntime_batch_equals_one_by_one(tiny_bundle, constrained, monkeypatch):
    monkeypatch.setenv("GI_SDK_ORT_THREADS", "1")
    session = Session(tiny_bundle, backend="onnxruntime", constrained=constrained)
    assert session.backend.decodes_batches
    _check(session, frames=(0, 1))
