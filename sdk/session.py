"""``Session``: ask a model about frames.

>>> from gi_sdk import Session
>>> session = Session("path/to/checkpoint", backend="torch")
>>> r = session.ask(frame, "How many polyps are there?")
>>> r.answer, r.count, r.confidence, r.timings["total"]
>>> r = session.detect(frame)            # r.boxes (N, 4) float32 xyxy in frame pixels
>>> r = session.segment(frame, "polyp")  # r.polygons, r.masks()

One frame's way: preprocess -> encode_image (vision tower, once per frame: several tasks on
the same frame reuse it) -> encode_prompt (once per task) -> greedy generation -> decode.
A bad frame or prompt raises a ``gi_sdk.errors`` exception for that call only; the Session
keeps working. One Session may be shared by threads: model calls are serialized.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy as np

from . import tasks as T
from .backends import load_backend, model_kind, resolve_backend
from .checkpoint import Checkpoint
from .decode import build_result
from .errors import PromptError
from .frames import check_frame
from .generate import greedy
from .preprocessing import preprocess
from .result import Result


class _Timer:
    """Collects milliseconds per stage."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3


class Session:
    """A loaded model, ready to answer questions about frames.

    path: a model bundle folder (``gi-sdk export``) or a merged checkpoint folder; None
        loads the built-in model (``gi_sdk.builtin_bundle()``). An already opened
        ``gi_sdk.checkpoint.Checkpoint`` is taken as it is.
    backend: ``"auto"`` (the fastest this machine can run; ``session.backend_name`` says
        which) or a name from ``gi_sdk.available_backends()``.
    device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...) for backends that use one.
    channels: channel order of the frames you pass: ``"bgr"`` (OpenCV, the default),
        ``"rgb"``, ``"bgra"`` or ``"rgba"``.
    abstain_below: a confidence in [0, 1]; results below it come back with
        ``abstained=True`` (instead of an answer that looks as sure as any other). None: never.
    """

    def __init__(self, path=None, backend: str = "auto", device: str = "cpu", channels: str = "bgr",
                 abstain_below: float | None = None):
        self.abstain_below = _check_threshold(abstain_below)
        if path is None:  # the built-in model; ModelLoadError saying how to build it when absent
            from .bundle import builtin_bundle

            path = builtin_bundle()
        self.checkpoint = path if isinstance(path, Checkpoint) else Checkpoint.open(path)
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.checkpoint.tokenizer_file))
        self.backend_name = resolve_backend(backend, model_kind(self.checkpoint))
        self.backend = load_backend(self.backend_name, self.checkpoint, device=device)
        self.channels = channels
        self.generation = self._generation_defaults()
        self._lock = threading.RLock()
        self._prompt_cache: dict[str, np.ndarray] = {}
        self._vision_key = None
        self._vision_features = None

    def __repr__(self) -> str:
        return (f"Session({str(self.checkpoint.path)!r}, family={self.checkpoint.family.name!r}, "
                f"backend={self.backend_name!r})")

    # ------------------------------------------------------------------ public tasks
    def ask(self, frame, question: str, max_new_tokens: int | None = None) -> Result:
        """Answer a question about the frame (``<MedVQA>``): ``r.answer``, ``r.count``."""
        return self.run(frame, "ask", question, max_new_tokens=max_new_tokens)

    def explain(self, frame, question: str, max_new_tokens: int | None = None) -> Result:
        """Answer and explain (``<MedVQA_EXPLAIN>``): ``r.answer``, ``r.explanation``."""
        return self.run(frame, "explain", question, max_new_tokens=max_new_tokens)

    def detect(self, frame, max_new_tokens: int | None = None) -> Result:
        """Boxes and labels of the objects in the frame (``<OD>``)."""
        return self.run(frame, "detect", max_new_tokens=max_new_tokens)

    def segment(self, frame, phrase: str = "polyp", max_new_tokens: int | None = None) -> Result:
        """Polygons of what ``phrase`` refers to (``<REFERRING_EXPRESSION_SEGMENTATION>``)."""
        return self.run(frame, "segment", phrase, max_new_tokens=max_new_tokens)

    def count(self, frame, label: str = "polyp", max_new_tokens: int | None = None) -> Result:
        """How many ``label`` instances there are, with the box behind each (``<MedCOUNT>``)."""
        return self.run(frame, "count", label, max_new_tokens=max_new_tokens)

    def run(self, frame, task: str, text: str | None = None, max_new_tokens: int | None = None,
            abstain_below: float | None = None) -> Result:
        """Run any task of the registry (``gi_sdk.tasks.TASKS``) on one frame.

        abstain_below: this call's threshold (default: the Session's ``abstain_below``).
        """
        threshold = self.abstain_below if abstain_below is None else _check_threshold(abstain_below)
        spec = T.get_task(task)
        prompt = T.build_prompt(spec, text)
        check_frame(frame)
        budget = int(max_new_tokens or spec.max_new_tokens)
        timer = _Timer()
        start = time.perf_counter()
        with self._lock:
            features = self._image_features(frame, timer)
            with timer.stage("encode"):
                state = self.backend.encode_prompt(features, self._prompt_ids(prompt))
            with timer.stage("generate"):
                gen = greedy(self.backend, state, start_id=self.checkpoint.decoder_start_token_id,
                             eos_id=self.checkpoint.eos_token_id, max_new_tokens=budget,
                             force_eos_at_budget=self.generation["forced_eos"])
        with timer.stage("decode"):
            ids = np.concatenate([[self.checkpoint.decoder_start_token_id], gen.token_ids])
            text_out = self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
            result = build_result(spec, text_out, (frame.shape[1], frame.shape[0]),
                                  banned_phrases=self.checkpoint.banned_grounding_phrases,
                                  confidence=gen.confidence, raw_text=text_out, token_ids=gen.token_ids)
        result.abstained = threshold is not None and result.confidence < threshold
        timer.ms["first_token"] = gen.first_token_ms
        timer.ms["total"] = (time.perf_counter() - start) * 1e3
        result.timings = timer.ms
        return result

    def stream(self, source, task: str = "detect", text: str | None = None, **options):
        """Run ``task`` on live video; iterate the returned ``gi_sdk.stream.Stream`` for a
        ``StreamFrame`` per captured frame, each with the latest result (the video never waits
        for the model).

        source: a video file, camera index or device path, URL or GStreamer pipeline, an
            iterable of frames, a ``SyntheticEndoscope`` or ``"synthetic"`` (``gi_sdk.video_sources``).
        options: ``max_new_tokens``; ``log`` (a JSON Lines file, one line per result);
            ``tracker`` (an ``IouTracker``, or False); ``realtime`` (play files at their fps,
            default True); ``fps`` (pace an iterable); ``reconnect_s`` (retry a live source
            that drops out, default 5 s); ``buffer`` (frames your loop may fall behind, default
            2); ``width``/``height``/``seed``/``n_frames``/``live`` for ``open_source``.

        >>> with session.stream("video.mp4", "detect", log="run.jsonl") as frames:
        ...     for fr in frames:
        ...         fr.frame_id, fr.result, fr.track_ids, fr.seen, fr.passthrough_ms
        """
        from .stream import Stream

        return Stream(self, source, task, text, **options)

    # ------------------------------------------------------------------ internals
    def _generation_defaults(self) -> dict:
        config = self.checkpoint.generation_config
        return {"forced_eos": config.get("forced_eos_token_id") is not None}

    def _prompt_ids(self, prompt: str) -> np.ndarray:
        """Encoder input ids (1, L) of ``prompt`` (``Checkpoint.encoder_input_ids``), cached."""
        ids = self._prompt_cache.get(prompt)
        if ids is None:
            ids = np.array([self.checkpoint.encoder_input_ids(self.tokenizer, prompt)], np.int64)
            limit = self.checkpoint.max_encoder_tokens
            if ids.shape[1] > limit:  # characters are capped by the task registry, tokens here
                image = self.checkpoint.image_seq_length
                raise PromptError(
                    f"the prompt is {ids.shape[1] - image} tokens; with the image's {image} the model "
                    f"takes at most {limit - image}: shorten the question"
                )
            if len(self._prompt_cache) > 256:
                self._prompt_cache.clear()
            self._prompt_cache[prompt] = ids
        return ids

    def _image_features(self, frame: np.ndarray, timer: _Timer):
        """Vision features of ``frame``; reused while frames with the same pixels come back."""
        last = self._vision_key
        # A strided sample rejects most new frames cheaply; equal samples get a full compare
        # (a capture loop may write a new image into the same buffer, so identity proves nothing).
        if (last is not None and last.shape == frame.shape
                and np.array_equal(last[::61, ::67], frame[::61, ::67]) and np.array_equal(last, frame)):
            timer.ms["preprocess"] = timer.ms["vision"] = 0.0
            return self._vision_features
        ck = self.checkpoint
        with timer.stage("preprocess"):
            pixels = preprocess(frame, size=ck.image_size, mean=ck.image_mean, std=ck.image_std,
                                channels=self.channels)[None]
        with timer.stage("vision"):
            features = self.backend.encode_image(pixels)
        self._vision_key, self._vision_features = frame.copy(), features
        return features


def _check_threshold(value):
    """None, or a confidence in [0, 1] (ValueError otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"abstain_below must be a confidence in [0, 1] or None, got {value!r}")
    return float(value)
