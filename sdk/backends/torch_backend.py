"""The PyTorch backend: runs a merged checkpoint with ``transformers``' native Florence-2.

Each step calls the model's own submodules (vision tower + projector, token embedding,
text encoder, decoder with its KV cache), so the numbers are the ones ``generate`` would
compute; only the loop around them is ours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelLoadError, require


@dataclass
class EncoderState:
    """Text-encoder output for one prompt on one frame (kept on the backend's device)."""

    hidden: object           # torch.Tensor (B, L, D)
    attention_mask: object   # torch.Tensor (B, L)


class TorchBackend:
    """Florence-2 on PyTorch (CPU, or CUDA with ``device="cuda"``)."""

    name = "torch"
    decodes_batches = True  # decode_step takes (B,) tokens: several prompts of a frame decode together

    def __init__(self, checkpoint, device: str = "cpu"):
        self.torch = torch = require("torch", "torch")
        transformers = require("transformers", "torch")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        try:
            model = transformers.Florence2ForConditionalGeneration.from_pretrained(checkpoint.path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{checkpoint.path}: transformers could not load the weights ({exc})") from exc
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype
        self._image_token_id = checkpoint.image_token_id
        self._output_cls = transformers.modeling_outputs.BaseModelOutput

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
            return EncoderState(hidden=hidden, attention_mask=mask)

    def decode_step(self, state: EncoderState, tokens: np.ndarray, cache=None):
        """One decoder step: tokens (B,) -> next-token logits (B, V) float32 and the new cache.

        ``cache`` is None on the first step; the cross-attention keys and values computed
        then stay in the cache and are reused at every later step.
        """
        torch = self.torch
        with torch.inference_mode():
            tok = torch.from_numpy(np.asarray(tokens, np.int64).reshape(-1, 1)).to(self.device)
            out = self.model(
                encoder_outputs=self._output_cls(last_hidden_state=state.hidden),
                attention_mask=state.attention_mask,
                decoder_input_ids=tok,
                past_key_values=cache,
                use_cache=True,
            )
            return out.logits[:, -1].float().cpu().numpy(), out.past_key_values
