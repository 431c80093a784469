"""Training the decoder-only VLM families (LLaVA, Idefics3 / SmolVLM, Qwen2.5-VL) to answer in JSON.

``gi_sdk.train.run`` serves them when the base checkpoint's family answers in JSON
(``gi_sdk.checkpoint.FAMILIES``); the sources, split, Trainer, LoRA presets, merge and
training record are the same as Florence-2's. What differs lives here:

- examples: every source writes Florence-2 examples (task prompt, location-token target).
  A JSON family is taught the same tasks in its own words: the question in the seed paper's
  style (``gi_sdk.json_tasks.json_prompt``) and the answer as a fenced json block in absolute
  pixels of the frame (``json_answer``), made from the target's instances as the runtime
  parser reads them (``gi_sdk.decode.build_result``). The coordinates therefore carry the
  location codec's 1000-bin quantization (at most W/2000 px, 0.3 px on a 640 px frame).
  Tasks without a JSON form (segment, ...) are left out and counted in the record.
- batches: the prompt is laid out by the checkpoint's own processor and chat template
  (``gi_sdk.backends.torch_vlm.model_inputs``, the runtime's function), then the answer's
  tokens and the family's end-of-turn token follow; the loss is on those only.
- model: ``AutoModelForImageTextToText`` with a peft LoRA adapter; no tokens are added.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from gi_sdk.backends.torch_vlm import end_of_turn_ids, model_inputs
from gi_sdk.checkpoint import Checkpoint
from gi_sdk.decode import build_result
from gi_sdk.errors import SourceError, require
from gi_sdk.frames import to_rgb
from gi_sdk.json_tasks import answer_kind, json_answer, json_prompt, served
from gi_sdk.tasks import get_task

from .collate import IGNORE, target_token_ids
from .evaluate import task_input
from .source_files import read_image

#: Per-token tensors a processor may return besides input_ids (extended over the answer with 0).
_TOKEN_KEYS = ("attention_mask", "mm_token_type_ids", "token_type_ids")


def served_examples(examples: list) -> tuple[list, dict]:
    """(the examples whose task a JSON family runs, {task: examples left out})."""
    kept = [e for e in examples if served(e.task)]
    dropped = Counter(e.task for e in examples if not served(e.task))
    return kept, dict(dropped)


def json_turn(example, image_size) -> tuple[str, str]:
    """(question, answer) of a Florence-2 ``Example`` for a JSON family, on a frame of
    ``image_size`` (width, height)."""
    text = task_input(example.task, example.prompt)
    question = json_prompt(example.task, text, image_size)
    if answer_kind(example.task) is None:  # text tasks: the answer text is the target itself
        return question, example.target
    truth = build_result(get_task(example.task), example.target, image_size)
    kind = answer_kind(example.task)
    coordinates = {"points": truth.points} if kind in ("point", "count_point") else {"boxes": truth.boxes}
    return question, json_answer(example.task, labels=truth.labels, label=text, **coordinates)


class JsonCollator:
    """Turns a list of ``Example`` into the model's keyword arguments (torch tensors).

    checkpoint: the base ``Checkpoint``; processor: its transformers processor; tokenizer:
    its ``tokenizers.Tokenizer`` (answers are encoded alone, as generation writes them);
    max_target_tokens: longer answers are cut (end of turn kept); ``cut`` counts how often.
    """

    def __init__(self, checkpoint: Checkpoint, processor, tokenizer, max_target_tokens: int = 512,
                 channels: str = "bgr"):
        self.processor, self.text_tokenizer = processor, tokenizer
        self.end_id = end_of_turn_ids(checkpoint, tokenizer)[0]
        self.pad_id = checkpoint.pad_token_id
        self.max_target_tokens, self.channels = int(max_target_tokens), channels
        self.cut = 0

    def target_ids(self, answer: str) -> list[int]:
        """Answer token ids + the end-of-turn token (what the model must write, then stop)."""
        ids, cut = target_token_ids(self.text_tokenizer, answer, self.max_target_tokens, self.end_id)
        self.cut += cut
        return ids

    def example(self, example) -> dict:
        """One example's tensors (batch of one): prompt, answer and labels."""
        import torch

        frame = read_image(example.image) if isinstance(example.image, str) else example.image
        if frame is None:
            raise SourceError(f"cannot read image {example.image!r} (it was readable when the sources were loaded)")
        question, answer = json_turn(example, (frame.shape[1], frame.shape[0]))
        inputs = model_inputs(self.processor, to_rgb(frame, self.channels), question)
        target = torch.tensor([self.target_ids(answer)], dtype=torch.long)
        prompt = inputs["input_ids"]
        inputs["input_ids"] = torch.cat([prompt, target], dim=1)
        for key in _TOKEN_KEYS:
            if key in inputs:
                fill = torch.ones_like(target) if key == "attention_mask" else torch.zeros_like(target)
                inputs[key] = torch.cat([inputs[key], fill.to(inputs[key].dtype)], dim=1)
        inputs["labels"] = torch.cat([torch.full_like(prompt, IGNORE), target], dim=1)
        return inputs

    def __call__(self, batch: list) -> dict:
        rows = [self.example(e) for e in batch]
        pads = {"input_ids": self.pad_id, "labels": IGNORE}
        return {key: _stack([r[key] for r in rows], pads.get(key, 0), key in pads or key in _TOKEN_KEYS)
                for key in rows[0]}


def _stack(tensors: list, pad, per_token: bool):
    """Batch the rows of one key: per-token rows (1, L_i) are right-padded to (B, L); anything
    else (pixels, image grids, pixel masks) is padded with zeros in every dim but the first and
    concatenated (LLaVA (1, 3, H, W) -> (B, 3, H, W); Idefics3 (1, n_i, 3, H, W), all-zero
    padding images being ignored by the model; Qwen2.5-VL's patch rows (P_i, D) -> (sum P, D))."""
    import torch

    if per_token:
        width = max(t.shape[1] for t in tensors)
        return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in tensors])
    shape = np.max([t.shape for t in tensors], axis=0)
    padded = []
    for t in tensors:
        spec = [p for d in reversed(range(1, t.dim())) for p in (0, int(shape[d] - t.shape[d]))]
        padded.append(torch.nn.functional.pad(t, spec) if any(spec) else t)
    return torch.cat(padded)


def load_text_tokenizer(base):
    """The ``tokenizers.Tokenizer`` of the checkpoint at ``base``, as it is (no task tokens)."""
    from pathlib import Path

    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(base) / "tokenizer.json"))


def load_processor(base):
    """The transformers processor of the checkpoint at ``base``."""
    transformers = require("transformers", "train")
    return transformers.AutoProcessor.from_pretrained(base)


def load_vlm(base, quantization=None):
    """The decoder-only VLM at ``base`` (``AutoModelForImageTextToText``), 4-bit when
    ``quantization`` (a ``BitsAndBytesConfig``) is given."""
    transformers = require("transformers", "train")
    extra = {"quantization_config": quantization} if quantization is not None else {}
    return transformers.AutoModelForImageTextToText.from_pretrained(base, **extra)


def save_processor(base, out_dir) -> None:
    """Copy the base's processor files (image processor, chat template, tokenizer settings)
    into the merged checkpoint, so it loads like the base."""
    load_processor(base).save_pretrained(out_dir)
