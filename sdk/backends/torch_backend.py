"""The PyTorch backend: runs a merged checkpoint with ``transformers``' native Florence-2.

Each step calls the model's own submodules (vision tower + projector, token embedding,
text encoder, decoder with its KV cache), so the numbers are the ones ``generate`` would
compute; only the loop around them is ours.

How the decoder steps run (``decode=``):

- ``"eager"``: a growing (dynamic) KV cache, plain PyTorch; the CPU default.
- ``"static"``: transformers' ``StaticCache``, preallocated for the whole answer (its length
  a power of two >= the token budget) and written in place; the text encoder's output is
  padded to a multiple of ``ENCODER_BUCKET`` positions (masked), so a new question length
  does not change a shape.
- ``"compiled"``: ``"static"`` with every step after the first run by ``torch.compile``
  (fullgraph, static shapes) through transformers' own ``get_compiled_call``.
- ``"cuda-graphs"``: ``"compiled"`` in mode ``"reduce-overhead"``: on CUDA each step replays a
  captured CUDA graph (one per batch size / encoder length / cache length), so a token costs
  one graph launch instead of hundreds of kernel launches. The CUDA default, with fp16.

The first step of an answer always runs eagerly: it computes the cross-attention keys and
values from the encoder output, which later steps read from the cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ModelLoadError, require

DECODE_MODES = ("eager", "static", "compiled", "cuda-graphs")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: The static decode paths pad the text encoder's output to a multiple of this many positions.
ENCODER_BUCKET = 64
#: Smallest self-attention cache of the static decode paths (then powers of two).
MIN_DECODE_CACHE = 64


@dataclass
class EncoderState:
    """Text-encoder output for one prompt on one frame (kept on the backend's device)."""

    hidden: object           # torch.Tensor (B, L, D)
    attention_mask: object   # torch.Tensor (B, L)


@dataclass
class StaticDecode:
    """The decoder cache of one answer on the static paths: transformers' preallocated
    ``EncoderDecoderCache`` and how many steps have written to it."""

    cache: object            # transformers EncoderDecoderCache of two StaticCaches
    capacity: int            # self-attention positions it holds
    steps: int = 0


def _next_power_of_two(n: int, floor: int) -> int:
    size = floor
    while size < n:
        size *= 2
    return size


class TorchBackend:
    """Florence-2 on PyTorch (CPU, or CUDA with ``device="cuda"``).

    precision: ``"auto"`` (fp16 on CUDA, fp32 on CPU), ``"fp32"``, ``"fp16"`` or ``"bf16"``.
    decode: how decoder steps run (module docstring): ``"auto"`` (``"cuda-graphs"`` on CUDA,
        ``"eager"`` on CPU), ``"eager"``, ``"static"``, ``"compiled"`` or ``"cuda-graphs"``.
    """

    name = "torch"
    decodes_batches = True  # decode_step takes (B,) tokens: several prompts of a frame decode together

    def __init__(self, checkpoint, device: str = "cpu", precision: str = "auto", decode: str = "auto"):
        self.torch = torch = require("torch", "torch")
        transformers = require("transformers", "torch")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if precision == "auto":
            precision = "fp16" if cuda else "fp32"
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r}: choose one of {sorted(PRECISIONS)} or 'auto'")
        if decode == "auto":
            decode = "cuda-graphs" if cuda else "eager"
        if decode not in DECODE_MODES:
            raise ConfigError(f"decode {decode!r}: choose one of {list(DECODE_MODES)} or 'auto'")
        if decode == "cuda-graphs" and not cuda:
            raise ConfigError('decode "cuda-graphs" needs device="cuda"; on CPU use "compiled", "static" or "eager"')
        self.precision, self.decode_mode = precision, decode
        try:
            model = transformers.Florence2ForConditionalGeneration.from_pretrained(
                checkpoint.path, dtype=getattr(torch, PRECISIONS[precision]))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{checkpoint.path}: transformers could not load the weights ({exc})") from exc
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype
        self._image_token_id = checkpoint.image_token_id
        self._output_cls = transformers.modeling_outputs.BaseModelOutput
        self._static = decode != "eager"
        self._step_call = self.model
        if decode in ("compiled", "cuda-graphs"):
            self._step_call = self.model.get_compiled_call(transformers.CompileConfig(
                fullgraph=True, dynamic=False, mode="reduce-overhead" if decode == "cuda-graphs" else "default"))

    def encode_image(self, pixels: np.ndarray):
        """(B, 3, H, W) float32 -> projected image features (B, image_seq_length, D)."""
        torch = self.torch
        with torch.inference_mode():
            pv = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, self.dtype)
            return self.model.get_image_features(pv).pooler_output

    def encode_prompt(self, features, prompt_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> EncoderState:
        """Image features + prompt ids (B, L), image placeholders included -> encoder state.

        Features of one image serve every row; attention_mask (B, L) marks the real tokens of
        right-padded prompts (None: all real).
        """
        torch = self.torch
        with torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(prompt_ids, dtype=np.int64)).to(self.device)
            embeds = self.model.get_input_embeddings()(ids)
            placeholder = (ids == self._image_token_id).unsqueeze(-1)
            if features.shape[0] != ids.shape[0]:
                features = features.expand(ids.shape[0], -1, -1).contiguous()
            embeds = embeds.masked_scatter(placeholder, features.to(embeds.dtype))
            mask = (torch.ones_like(ids) if attention_mask is None
                    else torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(self.device))
            hidden = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            if self._static:  # one shape for every prompt length in a bucket: masked padding
                pad = -hidden.shape[1] % ENCODER_BUCKET
                hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad))
                mask = torch.nn.functional.pad(mask, (0, pad))
            return EncoderState(hidden=hidden, attention_mask=mask)

    def start_decode(self, state: EncoderState, max_steps: int):
        """The cache to pass to the first ``decode_step`` of an answer of at most ``max_steps``
        tokens (None on the eager path, which grows its cache)."""
        if not self._static:
            return None
        from transformers.cache_utils import EncoderDecoderCache, StaticCache

        config = self.model.config.get_text_config(decoder=True)
        capacity = _next_power_of_two(max(int(max_steps), 1), MIN_DECODE_CACHE)
        cache = EncoderDecoderCache(StaticCache(config=config, max_cache_len=capacity),
                                    StaticCache(config=config, max_cache_len=state.hidden.shape[1]))
        return StaticDecode(cache=cache, capacity=capacity)

    def decode_step(self, state: EncoderState, tokens: np.ndarray, cache=None):
        """One decoder step: tokens (B,) -> next-token logits (B, V) float32 and the new cache.

        ``cache`` is None (or ``start_decode``'s) on the first step; the cross-attention keys
        and values computed then stay in the cache and are reused at every later step.
        """
        torch = self.torch
        tok = torch.from_numpy(np.asarray(tokens, np.int64).reshape(-1, 1)).to(self.device)
        inputs = dict(encoder_outputs=self._output_cls(last_hidden_state=state.hidden),
                      attention_mask=state.attention_mask, decoder_input_ids=tok, use_cache=True)
        if not self._static:
            with torch.inference_mode():
                out = self.model(**inputs, past_key_values=cache)
                return out.logits[:, -1].float().cpu().numpy(), out.past_key_values
        if cache is None:
            cache = self.start_decode(state, self.model.config.get_text_config(decoder=True).max_position_embeddings)
        if cache.steps >= cache.capacity:
            raise ConfigError(f"the decoder cache holds {cache.capacity} steps; start the answer with "
                              "start_decode(state, max_steps) for a longer one")
        # no_grad, not inference_mode: compiled graphs keep the cache's static buffers across calls
        with torch.no_grad():
            if cache.steps == 0:  # computes and caches the cross-attention keys and values
                out = self.model(**inputs, past_key_values=cache.cache)
            else:
                if self.decode_mode == "cuda-graphs":
                    torch.compiler.cudagraph_mark_step_begin()
                out = self._step_call(**inputs, past_key_values=cache.cache)
            cache.steps += 1
            return out.logits[:, -1].float().cpu().numpy(), cache
