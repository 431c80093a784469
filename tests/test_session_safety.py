"""A Session survives what a device throws at it: bad frames and prompts fail that call only
(with an error that says what to do), and one Session shared by threads answers exactly as it
does when called from one thread."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.errors import GiSdkError, InvalidFrameError, PromptError, UnknownTaskError  # noqa: E402
from gi_sdk.synthetic import SyntheticEndoscope  # noqa: E402
from gi_sdk.tasks import MAX_INPUT_CHARS  # noqa: E402

BUDGET = 6


@pytest.fixture(scope="module")
def session(tiny_checkpoint):
    return Session(tiny_checkpoint, backend="torch")


@pytest.fixture(scope="module")
def frames():
    scope = SyntheticEndoscope(seed=4, width=200, height=150)
    return [scope.frame(i)[0] for i in (0, 40, 80, 120)]


@pytest.fixture(scope="module")
def before(session, frames):
    """What the session answers before any bad call: task -> (frame, Result)."""
    return {task: (frames[0], session.run(frames[0], task, text, max_new_tokens=BUDGET))
            for task, text in [("detect", None), ("ask", "Is there a polyp?")]}


def _same(a, b):
    """Two Results are the same answer: tokens, instances, and the confidence (which depends on
    every logit of every step, so a wrong frame's or task's features would show)."""
    assert a.task == b.task and a.token_ids.tolist() == b.token_ids.tolist()
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.labels == b.labels and a.answer == b.answer
    assert a.confidence == pytest.approx(b.confidence, rel=1e-6, abs=0)


# ------------------------------------------------------------------ bad frames
@pytest.mark.parametrize("bad,message", [
    (None, "is None"),                                       # a capture that returned nothing
    ([[0, 0, 0]], "numpy array"),                            # a list, not an array
    ("frame.png", "numpy array"),                            # a path instead of pixels
    (np.zeros((0, 0, 3), np.uint8), "empty"),                # a zero-size grab
    (np.zeros((0, 64, 3), np.uint8), "empty"),               # zero rows only
    (np.zeros((48, 64, 3), np.float32), "uint8"),            # a normalized float image
    (np.zeros((48, 64, 3), np.uint16), "uint8"),             # 16-bit sensor data
    (np.zeros((48, 64, 3), bool), "uint8"),                  # a mask passed by mistake
    (np.zeros((48, 64), np.uint8), "grayscale"),             # rank 2: grayscale
    (np.zeros((1, 48, 64, 3), np.uint8), "shape"),           # rank 4: a batch of one
    (np.zeros((48 * 64 * 3,), np.uint8), "shape"),           # a flat buffer
    (np.zeros((48, 64, 1), np.uint8), "shape"),              # one channel, kept as HxWx1
    (np.zeros((48, 64, 2), np.uint8), "shape"),              # two channels
    (np.zeros((48, 64, 5), np.uint8), "shape"),              # five channels
])
@pytest.mark.parametrize("task,text", [("detect", None), ("ask", "Is there a polyp?")])
def test_a_bad_frame_raises_invalid_frame_error_and_the_session_keeps_working(session, before, bad, message, task, text):
    with pytest.raises(InvalidFrameError, match=message):
        session.run(bad, task, text, max_new_tokens=BUDGET)
    _same(session.run(before[task][0], task, text, max_new_tokens=BUDGET), before[task][1])


def test_a_frame_the_channel_order_cannot_read_is_refused(tiny_checkpoint, frames):
    rgba = Session(tiny_checkpoint, backend="torch", channels="rgba")
    with pytest.raises(InvalidFrameError, match="3-channel frame as 'rgba'"):
        rgba.detect(frames[0], max_new_tokens=BUDGET)
    four = np.dstack([frames[0], np.full(frames[0].shape[:2], 255, np.uint8)])
    assert len(rgba.detect(four, max_new_tokens=BUDGET).token_ids) >= 1


def test_a_cropped_view_gives_the_answer_of_its_pixels(session, frames):
    # capture code hands out crops (views that are not contiguous in memory)
    crop = frames[1][10:140, 20:180]
    expected = session.detect(np.ascontiguousarray(crop), max_new_tokens=BUDGET)
    session.detect(frames[3], max_new_tokens=BUDGET)   # another frame in between: no cached features
    _same(session.detect(crop, max_new_tokens=BUDGET), expected)


# ------------------------------------------------------------------ bad tasks and prompts
@pytest.mark.parametrize("task,text,error,message", [
    ("no_such_task", None, UnknownTaskError, "known tasks: .*detect"),
    ("", None, UnknownTaskError, "unknown task"),
    ("ask", None, PromptError, "needs an input"),
    ("ask", "", PromptError, "needs an input"),
    ("ask", "   ", PromptError, "needs an input"),
    ("ask", 42, PromptError, "needs an input"),
    ("ask", "x" * (MAX_INPUT_CHARS + 1), PromptError, f"limit is {MAX_INPUT_CHARS}"),
    ("detect", "a phrase", PromptError, "takes no input"),
])
def test_bad_tasks_and_prompts_get_clear_errors(session, frames, task, text, error, message):
    with pytest.raises(error, match=message) as info:
        session.run(frames[2], task, text, max_new_tokens=BUDGET)
    assert isinstance(info.value, GiSdkError)
    assert len(session.detect(frames[2], max_new_tokens=BUDGET).token_ids) >= 1


def test_a_question_within_the_character_limit_but_too_many_tokens_gets_a_clear_error(session, frames):
    question = "息肉" * 250          # "polyp" in Chinese: 500 characters, well under the limit
    assert len(question) <= MAX_INPUT_CHARS
    with pytest.raises(PromptError, match="tokens"):
        session.ask(frames[2], question, max_new_tokens=2)
    assert session.ask(frames[2], "Is there a polyp?", max_new_tokens=2).task == "ask"   # and goes on


# ------------------------------------------------------------------ threads
def test_one_session_shared_by_threads_answers_as_it_does_serially(session, frames):
    tasks = [("detect", None), ("ask", "Is there a polyp?")]
    calls = [(i, *task) for i in (0, 1) for task in tasks]          # 4 distinct (frame, task) pairs
    serial = {(i, task): session.run(frames[i], task, text, max_new_tokens=BUDGET) for i, task, text in calls}
    # interleaved frames: the threads keep replacing each other's cached vision features, so a
    # call that ran on another frame's features would show in its confidence
    interleaved = sorted(calls, key=lambda c: (tasks.index((c[1], c[2])), c[0]))
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda c: session.run(frames[c[0]], c[1], c[2], max_new_tokens=BUDGET), interleaved))
    for (i, task, _), result in zip(interleaved, threaded):
        _same(result, serial[(i, task)])
    # the serial answers really differ from call to call: the comparison above can fail
    assert len({round(r.confidence, 9) for r in serial.values()}) == len(calls)


def test_bad_calls_in_one_thread_do_not_disturb_the_others(session, frames):
    expected = session.detect(frames[3], max_new_tokens=BUDGET)

    def good(_):
        return session.detect(frames[3], max_new_tokens=BUDGET)

    def bad(_):
        with pytest.raises(InvalidFrameError):
            session.detect(np.zeros((8, 8), np.uint8))
        with pytest.raises(PromptError):
            session.ask(frames[0], "")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [pool.submit(good if i % 2 else bad, i) for i in range(8)]
        outcomes = [r.result() for r in results]
    for r in outcomes[1::2]:
        _same(r, expected)
