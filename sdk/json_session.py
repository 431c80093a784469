"""How a ``Session`` runs a task on a decoder-only VLM family that answers in JSON.

``Session`` opens any checkpoint the same way; for a family whose ``answers`` is ``"json"``
(``gi_sdk.checkpoint.FAMILIES``) it holds a ``JsonAnswerer`` as its backend and hands every
``run`` to it. One frame's way here: the task's question in the paper's style
(``gi_sdk.json_tasks.json_prompt``) -> the checkpoint's processor and chat template ->
``generate`` held to the answer's JSON grammar (``gi_sdk.json_grammar``) -> the same
``Result`` as Florence-2's (points, boxes, labels, count, confidence, timings), with
``parse_failed`` marking an answer that did not parse, never an exception.
"""
from __future__ import annotations

import time

from . import json_tasks as J
from .errors import BackendUnavailableError
from .frames import to_rgb


class JsonAnswerer:
    """The model side of a JSON-answering Session: the torch VLM backend and one compiled
    grammar per answer kind (built on first use, shared by every later call)."""

    #: Backends that run these families (ONNX export does not cover them: see torch_vlm).
    BACKENDS = ("torch",)

    def __init__(self, backend_name: str, checkpoint, tokenizer, device: str = "cpu"):
        if backend_name not in self.BACKENDS:
            raise BackendUnavailableError(
                f"a {checkpoint.family.name} checkpoint runs on backend 'torch' only (no ONNX bundle exists for "
                f"decoder-only families); got {backend_name!r}")
        from .backends.torch_vlm import TorchVlmBackend, end_of_turn_ids

        self.vlm = TorchVlmBackend(checkpoint, device=device)
        self.tokenizer = tokenizer
        self.eos_ids = end_of_turn_ids(checkpoint, tokenizer)
        self._grammars: dict = {}
        self._llg_tokenizer = None

    def grammar(self, kind: str, image_size):
        """The compiled grammar of ``kind`` answers on frames of ``image_size`` (coordinates
        bounded by the frame), ``gi_sdk.json_grammar.JsonGrammar``; cached per kind and size."""
        key = (kind, tuple(image_size))
        if key not in self._grammars:
            from .json_grammar import JsonGrammar

            if len(self._grammars) > 64:  # frames of ever new sizes: keep the cache bounded
                self._grammars.clear()
            grammar = JsonGrammar(self._llg_tokenizer or self.tokenizer.to_str(), self.eos_ids, kind,
                                  vocab_size=self.vlm.vocab_size, image_size=image_size)
            self._llg_tokenizer = grammar.tokenizer
            self._grammars[key] = grammar
        return self._grammars[key]

    def run(self, session, frame, spec, text, max_new_tokens, threshold):
        """``Session.run`` for this family: one task on one frame -> Result."""
        from .session import _Timer

        size = (frame.shape[1], frame.shape[0])
        question = J.json_prompt(spec.name, text, size)   # PromptError for tasks without a JSON form
        budget = int(max_new_tokens or J.max_new_tokens(spec.name))
        kind = J.answer_kind(spec.name)
        constrained = kind is not None and getattr(session, "constrained", True)
        timer, start = _Timer(), time.perf_counter()
        with timer.stage("preprocess"):
            rgb = to_rgb(frame, session.channels)
        with session._lock:
            cursor = self.grammar(kind, size).start(budget) if constrained else None
            with timer.stage("generate"):
                gen = self.vlm.generate(rgb, question, max_new_tokens=budget, eos_ids=self.eos_ids, cursor=cursor)
        with timer.stage("decode"):
            raw = self.tokenizer.decode(gen.token_ids.tolist(), skip_special_tokens=False)
            answer = self.tokenizer.decode(gen.token_ids.tolist(), skip_special_tokens=True)
            result = J.build_json_result(spec.name, answer, size,
                                         confidence=gen.confidence, raw_text=raw, token_ids=gen.token_ids)
        result.abstained = threshold is not None and result.confidence < threshold
        timer.ms["first_token"] = gen.first_token_ms
        timer.ms["total"] = (time.perf_counter() - start) * 1e3
        result.timings = timer.ms
        return result
