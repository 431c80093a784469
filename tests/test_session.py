"""Session end to end on a tiny random Florence-2: every step is the real one.

The words are meaningless with random weights, but the path is the one a real checkpoint
takes, and the tokens must be exactly those of transformers' own ``generate``.
"""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.codec import parse_florence, parse_instances  # noqa: E402
from gi_sdk.errors import InvalidFrameError, ModelLoadError, PromptError, UnknownTaskError  # noqa: E402
from gi_sdk.preprocessing import preprocess  # noqa: E402
from gi_sdk.tasks import build_prompt, get_task  # noqa: E402


@pytest.fixture(scope="module")
def session(tiny_checkpoint):
    return Session(tiny_checkpoint, backend="torch")


@pytest.fixture(scope="module")
def plain_session(tiny_checkpoint):
    """No grammar: plain greedy, which must give transformers' tokens."""
    return Session(tiny_checkpoint, backend="torch", constrained=False)


def _frame(seed, h=240, w=320):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ loading errors
def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match="nope") as info:
        Session(missing, backend="torch")
    assert "Florence-2" in str(info.value)


@pytest.mark.parametrize("files,why", [
    ({}, "an empty folder"),
    ({"config.json": json.dumps({"model_type": "bert"})}, "another model family"),
    ({"config.json": "{not json"}, "a corrupt config"),
    ({"config.json": json.dumps({"model_type": "florence2", "image_token_id": 5})}, "no weights or tokenizer"),
])
def test_non_florence_folder_is_refused(tmp_path, files, why):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ModelLoadError) as info:
        Session(tmp_path, backend="torch")
    assert str(tmp_path) in str(info.value), why


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="is a file"):
        Session(f, backend="torch")


# ------------------------------------------------------------------ results
def test_ask_returns_a_complete_result(session):
    r = session.ask(_frame(0), "How many polyps are there?")
    assert r.task == "ask" and isinstance(r.answer, str)
    assert 0.0 < r.confidence <= 1.0
    assert r.image_size == (320, 240)
    assert {"preprocess", "vision", "encode", "generate", "decode", "total"} <= set(r.timings)
    assert r.boxes.shape == (len(r), 4) and r.boxes.dtype == np.float32
    assert len(r.token_ids) >= 1


@pytest.mark.parametrize("method,args,task_token", [
    ("detect", (), "<OD>"),
    ("segment", ("polyp",), "<REFERRING_EXPRESSION_SEGMENTATION>"),
    ("count", ("polyp",), "<OD>"),  # <MedCOUNT> is ours; it writes boxes in <OD>'s grammar
])
def test_localization_results_are_the_parsed_instances(session, method, args, task_token):
    """Whatever the random model says, the Result holds exactly the instances of its text,
    in frame pixels, with the coordinates transformers' post-processor would give."""
    for seed in range(6):
        r = getattr(session, method)(_frame(seed), *args, max_new_tokens=40)
        parsed = parse_instances(r.raw_text, get_task(method).output, (320, 240))
        assert r.count == len(r) == len(parsed.boxes) + len(parsed.polygons) + len(parsed.points)
        if method == "segment":
            for box, parts in zip(r.boxes, parsed.polygons):
                pts = np.concatenate(parts)
                np.testing.assert_allclose(box, [*pts.min(0), *pts.max(0)])
            continue
        np.testing.assert_array_equal(r.boxes, parsed.boxes)
        hf = parse_florence(r.raw_text, task_token, (320, 240))[task_token]
        # transformers' regex reads a label-less run that starts with a location token as a
        # phrase made of that token's tail ("loc_84>") and shifts the boxes by one; our parser
        # reads tokens. Where the labels are real, both must give the same boxes.
        if not any("loc_" in label for label in hf["labels"]):
            np.testing.assert_array_equal(np.trunc(r.boxes).astype(int).reshape(-1, 4),
                                          np.asarray(hf["bboxes"], int).reshape(-1, 4))
            assert r.labels == hf["labels"]


def test_prompt_ids_match_transformers_processor(session, hf_processor):
    # the encoder sees exactly the ids the HF processor would give it
    for task, text in [("detect", None), ("segment", "polyp"), ("ask", "Is there a polyp?")]:
        spec = get_task(task)
        hf_text = spec.token + (text or "") if spec.hf_parse_type else build_prompt(spec, text)
        hf_ids = hf_processor(text=hf_text, images=_frame(1), return_tensors="np")["input_ids"]
        np.testing.assert_array_equal(session._prompt_ids(build_prompt(spec, text)), hf_ids)


@pytest.mark.parametrize("task,text", [("detect", None), ("ask", "Is there a polyp?"), ("segment", "polyp")])
def test_tokens_equal_transformers_generate(plain_session, task, text, tiny_checkpoint):
    """Greedy tokens are those of transformers' generate on the same inputs (no grammar)."""
    session = plain_session
    from transformers import Florence2ForConditionalGeneration

    model = Florence2ForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()
    for seed in range(3):
        frame = _frame(seed)
        budget = 24
        r = session.run(frame, task, text, max_new_tokens=budget)
        ids = session._prompt_ids(build_prompt(task, text))
        pixels = preprocess(frame)[None]
        with torch.inference_mode():
            out = model.generate(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(pixels),
                                 max_new_tokens=budget, do_sample=False, num_beams=1)
        assert out[0, 1:].tolist() == r.token_ids.tolist()


def test_decoded_text_matches_transformers_batch_decode(session, hf_processor):
    r = session.detect(_frame(3), max_new_tokens=30)
    ids = [session.checkpoint.decoder_start_token_id] + r.token_ids.tolist()
    assert r.raw_text == hf_processor.batch_decode([ids], skip_special_tokens=False)[0]


# ------------------------------------------------------------------ bad input keeps the session alive
@pytest.mark.parametrize("bad", [
    None, np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float64), np.zeros((10, 10, 2), np.uint8),
    np.zeros((0, 0, 3), np.uint8), "frame.png",
])
def test_bad_frame_fails_that_call_only(session, bad):
    with pytest.raises(InvalidFrameError):
        session.ask(bad, "Is there a polyp?")
    assert isinstance(session.ask(_frame(4), "Is there a polyp?", max_new_tokens=4).answer, str)


@pytest.mark.parametrize("call,error", [
    (lambda s, f: s.run(f, "no_such_task"), UnknownTaskError),
    (lambda s, f: s.ask(f, ""), PromptError),
    (lambda s, f: s.ask(f, "why? " * 1000), PromptError),
])
def test_bad_task_or_prompt_fails_that_call_only(session, call, error):
    with pytest.raises(error):
        call(session, _frame(5))
    assert len(session.detect(_frame(5), max_new_tokens=4)) >= 0



# ------------------------------------------------------------------ vision reuse
def test_vision_runs_once_per_frame(session):
    frame = _frame(6)
    first = session.detect(frame, max_new_tokens=4)
    second = session.ask(frame, "Is there a polyp?", max_new_tokens=4)
    assert first.timings["vision"] > 0 and second.timings["vision"] == 0.0
    changed = frame.copy()
    changed[100, 100] ^= 0xFF  # one pixel differs: the features must be recomputed
    assert session.ask(changed, "Is there a polyp?", max_new_tokens=4).timings["vision"] > 0


def test_features_are_kept_for_the_model_input_not_for_the_frame_buffer(session):
    """The key is what the model sees: the caller's buffer overwritten in place with a new
    image runs the vision tower again; equal pixels in another array, or a change the resize
    to the model's size does not keep, reuse the features."""
    frame = _frame(9, 1080, 1920)
    session.detect(frame, max_new_tokens=4)
    frame[:] = _frame(10, 1080, 1920)   # a capture loop writing the next image into the same buffer
    assert session.detect(frame, max_new_tokens=4).timings["vision"] > 0
    assert session.detect(frame.copy(), max_new_tokens=4).timings["vision"] == 0.0
    unseen = frame.copy()
    unseen[500, 900, 1] ^= 1
    size = session.checkpoint.image_size
    assert np.array_equal(preprocess(unseen, size=size), preprocess(frame, size=size))  # what makes it unseen
    assert session.detect(unseen, max_new_tokens=4).timings["vision"] == 0.0


def test_frames_are_resized_on_the_model_threads_to_the_same_pixels(monkeypatch):
    """The resize takes as many threads as the model runs on (onnxruntime's ``threads``
    option; else one per core, at most four) and gives the same pixels."""
    import gi_sdk.session as session_module

    monkeypatch.delenv("GI_SDK_ORT_THREADS", raising=False)
    made = []

    def recording(*args, **kwargs):
        made.append((kwargs["threads"], preprocess(*args, **kwargs)))
        return made[-1][1]

    monkeypatch.setattr(session_module, "preprocess", recording)
    frame = _frame(8, 1080, 1920)
    for options in ({"threads": 1}, None):
        Session(backend="onnxruntime", backend_options=options).detect(frame, max_new_tokens=4)
    (one, pixels), (every, same) = made
    assert (one, every) == (1, min(os.cpu_count() or 1, session_module.PREPROCESS_MAX_THREADS))
    assert np.array_equal(pixels, same)


def test_bgra_frame_gives_the_same_answer_as_bgr(tiny_checkpoint):
    # Holoscan-style sources deliver BGRA: the alpha channel must not change the answer
    bgr = _frame(7)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    s = Session(tiny_checkpoint, backend="torch")
    assert s.detect(bgr, max_new_tokens=12).token_ids.tolist() == s.detect(bgra, max_new_tokens=12).token_ids.tolist()


def test_low_confidence_results_come_back_marked_abstained(tiny_checkpoint, session):
    # the random tiny model is unsure of everything (confidence ~0.005): a 0.5 threshold marks
    # its results, keeps what it said, and a call-level threshold overrides the Session's
    frame = _frame(7)
    plain = session.detect(frame)
    assert plain.abstained is False and plain.confidence < 0.5
    careful = Session(tiny_checkpoint, backend="torch", abstain_below=0.5)
    marked = careful.detect(frame)
    assert marked.abstained is True and marked.to_dict()["abstained"] is True
    assert marked.raw_text == plain.raw_text and len(marked) == len(plain)
    assert careful.run(frame, "detect", abstain_below=0.0).abstained is False
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ValueError, match="abstain_below"):
            Session(tiny_checkpoint, backend="torch", abstain_below=bad)
