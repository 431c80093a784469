"""The PyTorch backend of the decoder-only VLM families (``Family.answers == "json"``).

These models differ in how an image becomes tokens (LLaVA: a fixed grid; Idefics3 / SmolVLM:
tiles and pixel shuffle; Qwen2.5-VL: a dynamic-resolution patch grid), and each checkpoint
carries its transformers processor and chat template for exactly that. So this backend does
not re-implement their preprocessing: ``model_inputs`` lays a frame and a question out with the
checkpoint's own processor and chat template, and training builds its batches with the same
function, so a model sees at run time what it saw in training. Generation is transformers'
``generate`` (greedy, KV cache) with the task's JSON grammar applied as a ``LogitsProcessor``
(``gi_sdk.json_grammar``); the confidence is the Florence-2 seed paper's, from the model's
unmasked logits.

ONNX export is not offered for these families: their vision towers and position schemes
(Qwen2.5-VL's 3-D rotary positions over a variable patch grid, Idefics3's tiling) have no
export path in ``gi_sdk.export``, whose four-part layout is Florence-2's encoder-decoder.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ModelLoadError, require
from ..generate import TOP_K_CONFIDENCE, Generation


def chat_prompt(processor, question: str) -> str:
    """The prompt text of one user turn (the image, then ``question``) and the opening of the
    model's turn, by the checkpoint's own chat template."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def model_inputs(processor, rgb: np.ndarray, question: str) -> dict:
    """The model's keyword arguments (torch tensors, batch of one) for an RGB uint8 frame and a
    question: ids of the chat prompt with the image placeholders expanded, pixels, and whatever
    else the family's processor adds (image grid sizes, pixel masks)."""
    return dict(processor(text=[chat_prompt(processor, question)], images=[rgb], return_tensors="pt"))


def end_of_turn_ids(checkpoint, tokenizer) -> list[int]:
    """Ids that end an answer: the family's end-of-turn token and the generation config's EOS."""
    ids = []
    token = checkpoint.family.end_of_turn
    if token is not None and tokenizer.token_to_id(token) is not None:
        ids.append(tokenizer.token_to_id(token))
    eos = checkpoint.generation_config.get("eos_token_id")
    for i in eos if isinstance(eos, list) else [eos]:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    return ids or [checkpoint.eos_token_id]


class _Constrain:
    """A transformers ``LogitsProcessor`` that applies a grammar cursor (allowed / advance) and
    times the first step (the prompt's prefill, image included)."""

    def __init__(self, cursor, torch):
        self.cursor, self.torch = cursor, torch
        self.started, self.first_ms, self._prompt_len = time.perf_counter(), 0.0, None

    def __call__(self, input_ids, scores):
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
            self.first_ms = (time.perf_counter() - self.started) * 1e3
        elif self.cursor is not None:
            self.cursor.advance(int(input_ids[0, -1]))
        if self.cursor is None:
            return scores
        allowed = self.torch.from_numpy(self.cursor.allowed()).to(scores.device)
        width = min(len(allowed), scores.shape[-1])
        out = scores.clone()
        out[:, :width] = out[:, :width].masked_fill(~allowed[:width], float("-inf"))
        out[:, width:] = float("-inf")
        return out


class TorchVlmBackend:
    """A decoder-only VLM checkpoint on PyTorch (CPU, or CUDA with ``device="cuda"``)."""

    name = "torch"

    def __init__(self, checkpoint, device: str = "cpu"):
        self.torch = torch = require("torch", "torch")
        transformers = require("transformers", "torch")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(checkpoint.path)
            model = transformers.AutoModelForImageTextToText.from_pretrained(checkpoint.path)
        except (OSError, ValueError, RuntimeError, ImportError, AttributeError) as exc:
            raise ModelLoadError(f"{checkpoint.path}: transformers could not load the {checkpoint.family.name} "
                                 f"model or its processor ({type(exc).__name__}: {exc})") from exc
        self.model = model.to(self.device).eval()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])

    def generate(self, rgb: np.ndarray, question: str, *, max_new_tokens: int, eos_ids, cursor=None) -> Generation:
        """Greedy answer to ``question`` about an RGB frame, constrained by a grammar ``cursor``
        (``gi_sdk.json_grammar``) when given. Token ids exclude the prompt; EOS kept if hit."""
        torch = self.torch
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v
                  for k, v in model_inputs(self.processor, rgb, question).items()}
        constrain = _Constrain(cursor, torch)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=int(max_new_tokens), do_sample=False, num_beams=1,
                eos_token_id=list(eos_ids), pad_token_id=int(eos_ids[0]), logits_processor=[constrain],
                return_dict_in_generate=True, output_logits=True)
        ids = out.sequences[0, inputs["input_ids"].shape[1]:].cpu().numpy().astype(np.int64)
        logits = torch.cat([step[:1].float() for step in out.logits]).cpu().numpy() if len(ids) else \
            np.zeros((0, self.vocab_size), np.float32)
        probs, mass = _confidence(logits, ids)
        return Generation(token_ids=ids, token_probs=probs, top_k_mass=mass,
                          finished=bool(len(ids)) and int(ids[-1]) in set(eos_ids), first_token_ms=constrain.first_ms)


def _confidence(logits: np.ndarray, ids: np.ndarray) -> tuple:
    """(probability of each chosen token, top-5 probability mass per step) from raw logits."""
    if not len(ids):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z, dtype=np.float64)
    p /= p.sum(axis=-1, keepdims=True)
    chosen = p[np.arange(len(ids)), ids]
    k = min(TOP_K_CONFIDENCE, p.shape[-1])
    mass = np.partition(p, -k, axis=-1)[:, -k:].sum(axis=-1)
    return chosen.astype(np.float32), mass.astype(np.float32)
