"""Session.stream on a tiny random Florence-2: every frame comes out, the model never holds
the video back, results are the Session's own, sources open (and fail) as documented, and
no thread outlives the stream. No timing is asserted (timing lives in benchmarks/)."""
import functools
import json
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.errors import PromptError, SourceError, UnknownTaskError  # noqa: E402
from gi_sdk.stream import StreamFrame  # noqa: E402
from gi_sdk.synthetic import SyntheticEndoscope  # noqa: E402
from gi_sdk.video_sources import END, CaptureSource, IteratorSource, SyntheticSource, open_source  # noqa: E402

from video_files import read_frames  # noqa: E402

W, H = 160, 120
FAST = {"max_new_tokens": 4}     # the random model's words mean nothing: keep its answers short


@pytest.fixture(scope="module")
def session(tiny_checkpoint):
    s = Session(tiny_checkpoint, backend="torch")
    s.detect(np.zeros((H, W, 3), np.uint8), max_new_tokens=2)   # warm up, outside any stream
    return s


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 20-frame MP4 of the synthetic endoscope (seed 1)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    SyntheticEndoscope(seed=1, width=W, height=H).write_video(path, 20)
    return path


def _read_all(source):
    frames = []
    while (frame := source.read()) is not END:
        frames.append(frame)
    return frames


def _stream_threads():
    return [t for t in threading.enumerate() if t.name.startswith("gi_sdk-stream") and t.is_alive()]


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _log_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------ the two paths
def test_every_frame_comes_out_with_the_latest_result_and_the_results_are_the_sessions(session, tmp_path):
    scope = SyntheticEndoscope(seed=0, width=W, height=H)
    log = tmp_path / "results.jsonl"
    frames = []
    with session.stream(scope, "detect", n_frames=40, log=log, **FAST) as stream:
        for fr in stream:
            assert isinstance(fr, StreamFrame)
            if fr.frame_id == 3:   # let the first result land (your loop may be slow; the model goes on)
                _wait_for(lambda: _log_lines(log))
            if fr.marker_ms is not None:
                # the log is flushed per result: its line is on disk while the stream still runs
                assert fr.result_frame_id in {line["frame_id"] for line in _log_lines(log)}
            frames.append(fr)
    assert [fr.frame_id for fr in frames] == list(range(40))
    for fr in frames[::13]:
        np.testing.assert_array_equal(fr.frame, scope.frame(fr.frame_id)[0])
    shown = [fr for fr in frames if fr.result is not None]
    assert shown, "no frame carried a result"
    for fr, prev in zip(frames[1:], frames):
        # the result shown is never from a frame newer than the one it is drawn on
        assert fr.result_frame_id is None or fr.result_frame_id <= fr.frame_id
        assert (fr.result_frame_id or -1) >= (prev.result_frame_id or -1)
        assert (fr.marker_ms is not None) == (fr.result_frame_id != prev.result_frame_id)
        assert fr.passthrough_ms >= 0 and len(fr.track_ids) == len(fr.result or [])
    runs = [line for line in _log_lines(log) if line["task"] == "detect"]
    assert stream.skipped + len(runs) == 40   # each frame: the model ran on it, or it was counted skipped
    assert all(line["marker_ms"] > 0 and line["result"]["task"] == "detect" for line in runs)
    for fr in [fr for fr in shown if fr.marker_ms is not None][:2]:
        # the same frame run alone gives the same result (the confidence depends on every logit)
        serial = session.detect(scope.frame(fr.result_frame_id)[0], **FAST)
        assert fr.result.token_ids.tolist() == serial.token_ids.tolist()
        assert fr.result.confidence == pytest.approx(serial.confidence, rel=1e-6)
    assert not _stream_threads()


def test_the_video_never_waits_for_the_model(session):
    # hold the Session's lock: the model thread is stuck inside Session.run, as in a very slow
    # model call, and frames must keep coming out all the same, each counted as skipped
    frames = [np.full((H, W, 3), i, np.uint8) for i in range(200)]
    with session._lock:
        stream = session.stream(frames, "detect", **FAST)
        out = iter(stream)
        held = [next(out) for _ in range(30)]
    assert [fr.frame_id for fr in held] == list(range(30))
    assert all(fr.result is None for fr in held)
    assert held[-1].skipped >= 25
    for fr in out:   # the model is free again: its result reaches the frames that follow
        if fr.result is not None:
            break
        time.sleep(0.05)   # a slow loop leaves the model time (the source waits for the loop)
    assert fr.result is not None and fr.frame_id < 200
    stream.close()
    assert not _stream_threads()


def test_a_question_is_answered_about_the_live_frame_while_detection_goes_on(session, tmp_path):
    log = tmp_path / "log.jsonl"
    frames = (SyntheticEndoscope(seed=2, width=W, height=H).frame(i)[0] for i in range(10_000))
    with session.stream(frames, "detect", log=log, fps=30, **FAST) as stream:
        future = stream.ask("Is there a polyp?", max_new_tokens=4)
        for fr in stream:
            if future.done() and fr.answer is not None:
                break
    answer = future.result(timeout=0)
    assert answer.task == "ask" and fr.answer is answer
    lines = _log_lines(log)
    asked = [line for line in lines if line["task"] == "ask"]
    assert len(asked) == 1 and asked[0]["question"] == "Is there a polyp?"
    assert asked[0]["frame_id"] in {line["frame_id"] for line in lines if line["task"] == "detect"}
    with pytest.raises(PromptError):
        stream.ask("")


def test_frames_are_read_only_so_the_model_sees_what_was_captured(session):
    with session.stream([np.zeros((H, W, 3), np.uint8)] * 3, "detect", **FAST) as stream:
        fr = next(iter(stream))
        with pytest.raises(ValueError):
            fr.frame[0, 0] = 255


def test_bad_frames_in_a_source_are_skipped_and_the_stream_goes_on(session, tmp_path):
    good = np.zeros((H, W, 3), np.uint8)
    items = [good, None, good.astype(np.float32), good, good[:, :, 0], good]
    log = tmp_path / "log.jsonl"
    with pytest.warns(RuntimeWarning, match="not images"):
        with session.stream(items, "detect", log=log, **FAST) as stream:
            ids = [fr.frame_id for fr in stream]
    assert ids == [0, 3, 5] and stream.invalid_frames == 3
    assert [line["frame_id"] for line in _log_lines(log) if "error" in line] == [1, 2, 4]


@pytest.mark.parametrize("task,text,error", [
    ("no_such_task", None, UnknownTaskError),
    ("ask", "", PromptError),
    ("ask", "why? " * 1000, PromptError),
    ("detect", "detect takes no text", PromptError),
])
def test_a_bad_task_fails_at_once_and_starts_no_thread(session, task, text, error):
    with pytest.raises(error):
        session.stream("synthetic", task, text)
    assert not _stream_threads()


# ------------------------------------------------------------------ shutdown
def _break_early(s):
    for fr in s.stream("synthetic", "detect", width=W, height=H, **FAST):
        if fr.frame_id == 5:
            break


def _close_generator(s):
    frames = iter(s.stream("synthetic", "detect", width=W, height=H, **FAST))
    next(frames)
    frames.close()


def _with_block(s):
    with s.stream("synthetic", "detect", width=W, height=H, **FAST) as stream:
        next(iter(stream))


def _close_mid_model_call(s):
    stream = s.stream("synthetic", "detect", width=W, height=H, max_new_tokens=64)
    frames = iter(stream)
    next(frames)
    stream.close()
    assert stream.skipped >= 0


def _never_iterated(s):
    s.stream("synthetic", "detect").close()


def _close_from_another_thread(s):
    stream = s.stream("synthetic", "detect", width=W, height=H, **FAST)
    seen = []
    for fr in stream:   # the loop ends (does not hang) when another thread closes the stream
        seen.append(fr.frame_id)
        if fr.frame_id == 3:
            threading.Thread(target=stream.close).start()
    assert seen[:4] == [0, 1, 2, 3]


@pytest.mark.parametrize("stop", [_break_early, _close_generator, _with_block, _close_mid_model_call, _never_iterated,
                                  _close_from_another_thread])
def test_no_thread_outlives_the_stream(session, stop):
    stop(session)
    _wait_for(lambda: not _stream_threads(), timeout=5)   # a broken-off for loop closes on collection


def test_a_stream_is_iterated_once(session):
    stream = session.stream([np.zeros((H, W, 3), np.uint8)], "detect", **FAST)
    assert len(list(stream)) == 1
    with pytest.raises(RuntimeError, match="once"):
        iter(stream)
    closed = session.stream([np.zeros((H, W, 3), np.uint8)], "detect", **FAST)
    closed.close()
    with pytest.raises(RuntimeError, match="before it is closed"):
        iter(closed)


# ------------------------------------------------------------------ sources
def test_a_video_file_plays_to_its_end(session, clip):
    expected = read_frames(clip)
    with session.stream(str(clip), "detect", realtime=False, **FAST) as stream:
        got = [fr.frame for fr in stream]
    assert len(got) == len(expected) == 20
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_a_network_stream_is_read_through_opencv(clip):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(clip.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = open_source(f"http://127.0.0.1:{server.server_address[1]}/{clip.name}", live=False)
        assert isinstance(source, CaptureSource)
        assert len(_read_all(source)) == 20
        source.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("make,kind", [
    (lambda: "synthetic:3", SyntheticSource),
    (lambda: SyntheticEndoscope(seed=3, width=W, height=H), SyntheticSource),
    (lambda: [SyntheticEndoscope(seed=3, width=W, height=H).frame(i)[0] for i in range(4)], IteratorSource),
    (lambda: (SyntheticEndoscope(seed=3, width=W, height=H).frame(i)[0] for i in range(4)), IteratorSource),
])
def test_synthetic_and_iterable_sources_give_the_scopes_frames(make, kind):
    source = open_source(make(), width=W, height=H, n_frames=4)
    assert isinstance(source, kind)
    scope = SyntheticEndoscope(seed=3, width=W, height=H)
    got = _read_all(source)
    assert len(got) == 4
    for i, frame in enumerate(got):
        np.testing.assert_array_equal(frame, scope.frame(i)[0])


def test_the_synthetic_source_knows_how_many_objects_it_showed():
    source = open_source("synthetic", width=W, height=H, n_frames=400)
    _read_all(source)
    expected = {}
    for _, truth in SyntheticEndoscope(seed=0, width=W, height=H).frames(400):
        for label, track in zip(truth.labels, truth.track_ids):
            expected.setdefault(label, set()).add(track)
    assert source.truth_seen == expected and len(expected["polyp"]) >= 2   # 400 frames: three scenes


@pytest.mark.parametrize("spec,match", [
    ("/no/such/video.mp4", "does not exist"),
    (97, "cannot open camera"),
    ("/dev/video97", "cannot open camera"),
    ("rtsp://127.0.0.1:1/scope", "cannot open stream"),
    ("videotestsrc ! videoconvert ! appsink", "GStreamer"),
    ("synthetic:x", "synthetic:SEED"),
    (object(), "cannot read video from a object"),
    (np.zeros((H, W, 3), np.uint8), "single frame"),
])
def test_sources_that_cannot_open_say_why(spec, match):
    with pytest.raises(SourceError, match=match):
        open_source(spec)


def test_a_folder_is_not_a_video(tmp_path):
    with pytest.raises(SourceError, match="is a folder"):
        open_source(str(tmp_path))


# ------------------------------------------------------------------ a live source that drops out
def test_a_live_source_that_drops_out_is_reopened(clip):
    # a "camera" that is the clip: when it ends, the source reopens it, as it would a camera
    # that came back after a loose cable
    source = open_source(str(clip), live=True, reconnect_s=5)
    frames = [source.read() for _ in range(30)]
    source.close()
    assert all(f is not END for f in frames) and source.reconnects == 1
    np.testing.assert_array_equal(frames[20], frames[0])


def test_a_live_source_that_stays_gone_ends_the_stream_with_source_error(session, clip, tmp_path):
    camera = tmp_path / "camera.mp4"
    shutil.copy(clip, camera)
    source = open_source(str(camera), live=True, reconnect_s=0.5)
    camera.unlink()   # the "camera" is unplugged for good: it cannot be reopened
    frames = 0
    with pytest.raises(SourceError, match="did not come back within 0.5 s"):
        for _ in session.stream(source, "detect", realtime=False, **FAST):
            frames += 1
    assert frames == 20   # every frame it delivered came out before the error
    _wait_for(lambda: not _stream_threads(), timeout=5)
