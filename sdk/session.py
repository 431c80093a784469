"""``Session``: ask a model about frames.

>>> from gi_sdk import Session
>>> session = Session("path/to/checkpoint", backend="torch")
>>> r = session.ask(frame, "How many polyps are there?")
>>> r.answer, r.count, r.confidence, r.timings["total"]
>>> r = session.detect(frame)            # r.boxes (N, 4) float32 xyxy in frame pixels
>>> r = session.segment(frame, "polyp")  # r.polygons, r.masks()

One frame's way: preprocess -> encode_image (vision tower, once per frame: several tasks on
the same frame reuse it) -> encode_prompt (once per task) -> greedy generation, held to the
task's grammar (``gi_sdk.grammar``) -> decode, with a probability per instance
(``gi_sdk.scores``). ``run_many`` runs several prompts on one frame as one batched decode.
A bad frame or prompt raises a ``gi_sdk.errors`` exception for that call only; the Session
keeps working. One Session may be shared by threads: model calls are serialized.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import numpy as np

from . import tasks as T
from .backends import load_backend, model_kind, resolve_backend
from .checkpoint import Checkpoint
from .decode import build_result
from .errors import ConfigError, PromptError
from .frames import check_frame
from .generate import greedy, greedy_batch
from .locations import NUM_BINS
from .grammar import GrammarVocab, check_labels
from .preprocessing import preprocess
from .result import Result
from .scores import instance_scores
from .token_decoder import TokenVocab


#: Most threads a frame's resize takes (a model input has a few hundred rows to split).
PREPROCESS_MAX_THREADS = 4


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
    constrained: hold every output to its task's grammar (``gi_sdk.grammar``: it always
        parses, and the budget closes it cleanly). False: plain greedy, the tokens of
        transformers' ``generate`` (what the equivalence checks compare).
    labels: the class names detect / count / point may label instances with (the grammar
        refuses any other label, such as "polyppolyp" from an unsure model). None: the model's
        own (``session.labels``: the bundle's, from its training data; none for a checkpoint
        without a training record); an empty list: any words.
    backend_options: keyword arguments for the backend, e.g. ``{"precision": "fp16",
        "decode": "cuda-graphs"}`` for ``torch`` (``gi_sdk.backends.torch_backend``),
        ``{"threads": 1}`` for ``onnxruntime`` (its threads per run; default: onnxruntime's,
        one per core, or ``GI_SDK_ORT_THREADS``; one leaves a 2-core machine's other core to
        your video loop, README "Performance"); None: its defaults for the device.
    """

    def __init__(self, path=None, backend: str = "auto", device: str = "cpu", channels: str = "bgr",
                 abstain_below: float | None = None, constrained: bool = True, labels=None,
                 backend_options: dict | None = None):
        self.abstain_below = _check_threshold(abstain_below)
        self.constrained = bool(constrained)
        if path is None:  # the built-in model; ModelLoadError saying how to build it when absent
            from .bundle import builtin_bundle

            path = builtin_bundle()
        self.checkpoint = path if isinstance(path, Checkpoint) else Checkpoint.open(path)
        self.labels = check_labels(self.checkpoint.labels if labels is None else labels)
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.checkpoint.tokenizer_file))
        self.backend_name = resolve_backend(backend, model_kind(self.checkpoint))
        if self.checkpoint.family.answers == "json":  # decoder-only VLMs: gi_sdk.json_session runs them
            if backend_options:
                raise ConfigError(f"backend_options are not taken by the {self.checkpoint.family.name} family's "
                                  "backend; leave them out")
            from .json_session import JsonAnswerer

            self.backend = JsonAnswerer(self.backend_name, self.checkpoint, self.tokenizer, device)
        else:
            self.backend = load_backend(self.backend_name, self.checkpoint, device=device,
                                        options=backend_options)
        self.channels = channels
        # Frames are resized on as many threads as the model runs on (the native kernel splits
        # the output rows, bit-identical to one thread): 1080p -> 256x256 0.84 -> 0.54 ms on 2 cores.
        self._preprocess_threads = (getattr(self.backend, "threads", None)
                                    or min(os.cpu_count() or 1, PREPROCESS_MAX_THREADS))
        self.generation = self._generation_defaults()
        self._lock = threading.RLock()
        self._prompt_cache: dict[str, np.ndarray] = {}
        self._vision_pixels = None   # the model input the features below were computed from
        self._vision_features = None
        self._token_vocab = None    # the id classes, for grammars and instance scores (built on first use)
        self._grammar_vocab = None

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
        if self.checkpoint.family.answers == "json":  # asked in words, answered in JSON
            return self.backend.run(self, frame, spec, text, max_new_tokens, threshold)
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
                             force_eos_at_budget=self.generation["forced_eos"], grammar=self._grammar(spec),
                             locations=self._locations())
        return self._result(spec, gen, frame, threshold, timer, start)

    def run_many(self, frame, requests, max_new_tokens: int | None = None,
                 abstain_below: float | None = None) -> list[Result]:
        """Run several tasks on one frame: the vision tower runs once and the prompts decode
        together as one batch (on backends that decode batches; others run them one by one).

        requests: ``(task, text)`` pairs, or task names for tasks that take no text.
        Returns one Result per request, in order, each equal to what ``run`` gives for it;
        their shared stages (preprocess, vision, encode, generate) carry the batch's times.

        >>> detected, answer = session.run_many(frame, ["detect", ("ask", "Is there a polyp?")])
        """
        threshold = self.abstain_below if abstain_below is None else _check_threshold(abstain_below)
        items = [(item, None) if isinstance(item, str) else tuple(item) for item in requests]
        jobs = []
        for task, text in items:
            spec = T.get_task(task)
            jobs.append((spec, T.build_prompt(spec, text), int(max_new_tokens or spec.max_new_tokens)))
        check_frame(frame)
        if len(jobs) < 2 or not getattr(self.backend, "decodes_batches", False):
            # one prompt, or a backend whose decoder takes one sequence at a time
            return [self.run(frame, task, text, max_new_tokens, threshold) for task, text in items]
        timer = _Timer()
        start = time.perf_counter()
        with self._lock:
            features = self._image_features(frame, timer)
            with timer.stage("encode"):
                ids, mask = _padded([self._prompt_ids(prompt) for _, prompt, _ in jobs], self.checkpoint.pad_token_id)
                state = self.backend.encode_prompt(features, ids, mask)
            with timer.stage("generate"):
                gens = greedy_batch(self.backend, state, start_id=self.checkpoint.decoder_start_token_id,
                                    eos_id=self.checkpoint.eos_token_id, max_new_tokens=[j[2] for j in jobs],
                                    force_eos_at_budget=self.generation["forced_eos"],
                                    grammars=[self._grammar(spec) for spec, _, _ in jobs], locations=self._locations())
        results = []
        for (spec, _, _), gen in zip(jobs, gens):
            own = _Timer()
            own.ms = dict(timer.ms)
            results.append(self._result(spec, gen, frame, threshold, own, start))
        return results

    def stream(self, source, task: str = "detect", text: str | None = None, **options):
        """Run ``task`` on live video; iterate the returned ``gi_sdk.stream.Stream`` for a
        ``StreamFrame`` per captured frame, each with the latest result (the video never waits
        for the model).

        source: a video file, camera index or device path, URL or GStreamer pipeline, an
            iterable of frames, a ``SyntheticEndoscope`` or ``"synthetic"`` (``gi_sdk.video_sources``).
        options: ``max_new_tokens``; ``log`` (a JSON Lines file, one line per result);
            ``tracker`` (an ``IouTracker``, or False; default: one with the start score the
            bundle's manifest carries, else ``IouTracker()``); ``realtime`` (play files at their fps,
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
    def _result(self, spec, gen, frame, threshold, timer: _Timer, start: float) -> Result:
        """The Result of one generation: decoded, scored per instance, timed."""
        with timer.stage("decode"):
            ids = np.concatenate([[self.checkpoint.decoder_start_token_id], gen.token_ids])
            text_out = self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
            result = build_result(spec, text_out, (frame.shape[1], frame.shape[0]),
                                  banned_phrases=self.checkpoint.banned_grounding_phrases,
                                  confidence=gen.confidence, raw_text=text_out, token_ids=gen.token_ids)
            result.scores = instance_scores(
                result, gen.token_ids, gen.token_probs if gen.token_scores is None else gen.token_scores, self._vocab())
        result.abstained = threshold is not None and result.confidence < threshold
        timer.ms["first_token"] = gen.first_token_ms
        timer.ms["total"] = (time.perf_counter() - start) * 1e3
        result.timings = timer.ms
        return result

    def _vocab(self) -> TokenVocab:
        """The tokenizer's id classes (``gi_sdk.token_decoder.TokenVocab``), built once."""
        if self._token_vocab is None:
            self._token_vocab = TokenVocab.from_tokenizer(self.tokenizer)
        return self._token_vocab

    def _locations(self) -> tuple:
        """(first location token id, number of bins): where instance scores read a place's probability."""
        return self._vocab().loc_begin, NUM_BINS

    def _grammar(self, spec):
        """The task's compiled grammar, or None when the Session is not constrained."""
        if not self.constrained:
            return None
        if self._grammar_vocab is None:
            ck = self.checkpoint
            self._grammar_vocab = GrammarVocab.from_token_vocab(self._vocab(), ck.eos_token_id, ck.bos_token_id)
        return self._grammar_vocab.for_task(spec, self.labels)

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
        """Vision features of ``frame``; reused while frames with the same model input come back.

        The key is the model input itself (the features are a function of it alone): the array
        ``preprocess`` has just made for this call, kept without a copy. A copy of the frame as
        the key cost ~0.5 ms a 1080p call (6 MB, cold in cache after the vision encoder ran),
        and a capture loop may write the next image into the same buffer, so the frame itself
        cannot be kept. A strided sample turns most new inputs away before the full compare.
        """
        ck = self.checkpoint
        with timer.stage("preprocess"):
            pixels = preprocess(frame, size=ck.image_size, mean=ck.image_mean, std=ck.image_std,
                                channels=self.channels, threads=self._preprocess_threads)[None]
        last = self._vision_pixels
        if (last is not None and last.shape == pixels.shape
                and np.array_equal(last[..., ::7, ::5], pixels[..., ::7, ::5]) and np.array_equal(last, pixels)):
            timer.ms["vision"] = 0.0
            return self._vision_features
        with timer.stage("vision"):
            features = self.backend.encode_image(pixels)
        self._vision_pixels, self._vision_features = pixels, features
        return features


def _padded(rows: list, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(1, L_i) prompt ids -> (B, L) ids padded on the right with ``pad_id``, and the (B, L)
    int64 attention mask (1 on real tokens). Right padding keeps every prompt's positions."""
    width = max(r.shape[1] for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for b, r in enumerate(rows):
        ids[b, :r.shape[1]], mask[b, :r.shape[1]] = r[0], 1
    return ids, mask


def _check_threshold(value):
    """None, or a confidence in [0, 1] (ValueError otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"abstain_below must be a confidence in [0, 1] or None, got {value!r}")
    return float(value)
