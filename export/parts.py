"""The four ONNX parts of a Florence-2 bundle, traced from the native ``transformers`` model.

    vision_encoder.onnx        pixel_values (B, 3, H, W)          -> image_features (B, N, D)
                               (vision tower + projector: N = image_seq_length)
    embed_tokens.onnx          input_ids (B, S)                   -> inputs_embeds (B, S, D)
    encoder_model.onnx         inputs_embeds, attention_mask      -> last_hidden_state (B, L, D)
    decoder_model_merged.onnx  inputs_embeds (B, S, D), encoder_hidden_states, encoder_attention_mask,
                               past_key_values.{i}.{decoder|encoder}.{key|value}, use_cache_branch
                               -> logits (B, S, V), present.{i}.{decoder|encoder}.{key|value}

Names and layout are those of the public Florence-2 ONNX exports (FORMATS.md), so other
runtimes that read those read ours. Every axis but the image size and the model widths is
dynamic: batch, prompt length, decoded length, past length.

The decoder is traced twice from the same module, once for the first step (no past: it
computes the cross-attention keys/values from the encoder states) and once for later steps
(past given: it reads them from ``past_key_values.{i}.encoder.*`` and never looks at the
encoder states), and the two graphs are merged into one file with an ``If`` on
``use_cache_branch`` (``gi_sdk.export.merge_decoder``). One merged graph rather than two
files because the two share every weight: two files would store the decoder (and, for a
tied model, the vocabulary-sized output projection) twice on disk and in memory. In the
later-step branch the ``present.{i}.encoder.*`` outputs are the past inputs passed through,
so the cross-attention cache computed at the first step is the one every later step uses,
whether a runtime keeps it itself (as gi_sdk's backend does) or feeds all outputs back.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from gi_sdk.errors import require

#: Lowest opset we export: 17 has LayerNormalization as one op (fp16-safe, fusable).
OPSET = 17

#: File of each part, in the order a frame goes through them.
PART_FILES = {
    "vision_encoder": "vision_encoder.onnx",
    "embed_tokens": "embed_tokens.onnx",
    "encoder_model": "encoder_model.onnx",
    "decoder_model_merged": "decoder_model_merged.onnx",
}


@dataclass(frozen=True)
class DecoderShape:
    """What the decoder's cache tensors look like (read from the model config)."""

    layers: int
    heads: int
    head_dim: int
    hidden: int

    @classmethod
    def of(cls, model) -> "DecoderShape":
        text = model.config.text_config
        return cls(layers=text.decoder_layers, heads=text.decoder_attention_heads,
                   head_dim=text.d_model // text.decoder_attention_heads, hidden=text.d_model)

    def past_names(self) -> list[str]:
        """Decoder cache input names, per layer: self key, self value, cross key, cross value."""
        return [f"past_key_values.{i}.{kind}.{kv}" for i in range(self.layers)
                for kind in ("decoder", "encoder") for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [n.replace("past_key_values.", "present.") for n in self.past_names()]


def _modules(torch):
    """The torch wrappers, defined on first use so that importing this module needs no torch."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class VisionEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model.get_image_features(pixel_values).pooler_output

    class TokenEmbedding(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.embed = model.get_input_embeddings()

        def forward(self, input_ids):
            return self.embed(input_ids)

    class TextEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.encoder = model.get_encoder()

        def forward(self, inputs_embeds, attention_mask):
            return self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    class Decoder(torch.nn.Module):
        """One decoder step; with ``past`` tensors the cross-attention cache comes from them."""

        def __init__(self, model):
            super().__init__()
            self.decoder = model.model.language_model.decoder
            self.lm_head = model.lm_head

        def forward(self, encoder_attention_mask, encoder_hidden_states, inputs_embeds, *past):
            cache = None
            if past:
                groups = [past[i:i + 4] for i in range(0, len(past), 4)]
                # cross-attention layers whose cache holds keys are marked "updated" by
                # EncoderDecoderCache, so BartAttention reads them instead of the encoder states
                cache = EncoderDecoderCache(DynamicCache([g[:2] for g in groups]),
                                            DynamicCache([g[2:] for g in groups]))
            out = self.decoder(inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
                               encoder_attention_mask=encoder_attention_mask, past_key_values=cache,
                               use_cache=True)
            cache = out.past_key_values
            flat = []
            for own, cross in zip(cache.self_attention_cache.layers, cache.cross_attention_cache.layers):
                flat += [own.keys, own.values, cross.keys, cross.values]
            return (self.lm_head(out.last_hidden_state), *flat)

    return VisionEncoder, TokenEmbedding, TextEncoder, Decoder


def _export(torch, module, args, path: Path, inputs: list, outputs: list, axes: dict) -> Path:
    # The TorchScript exporter: the dynamo exporter needs onnxscript and cannot yet trace
    # transformers' cache objects into a graph without model changes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          do_constant_folding=True)
    return path


#: The two decoder graphs merged into decoder_model_merged.onnx, kept for quantization.
DECODER_GRAPHS = ("decoder_model.onnx", "decoder_with_past_model.onnx")


def export_parts(model, folder, image_size: tuple, decoder_graphs) -> dict:
    """Trace the four parts of ``model`` (a Florence2ForConditionalGeneration in eval mode)
    into ``folder``; return ``{part name: path}``.

    ``image_size`` is the model's (width, height); the pixel input is fixed to it.
    ``decoder_graphs``: folder that keeps the first-step and later-step decoder graphs
    (``DECODER_GRAPHS``) the merged decoder is made of; quantized variants of the decoder
    are made from them (``gi_sdk.export.quantize``).
    """
    torch = require("torch", "export")
    from .merge_decoder import merge_decoders

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    VisionEncoder, TokenEmbedding, TextEncoder, Decoder = _modules(torch)
    shape = DecoderShape.of(model)
    width, height = image_size
    # Example inputs: sizes that differ from each other, so no axis is confused with another
    # when the tracer records shapes (batch 2, prompt 7, past 3).
    batch, enc_len, past_len = 2, 7, 3
    paths = {}
    with torch.inference_mode(False), torch.no_grad():
        paths["vision_encoder"] = _export(
            torch, VisionEncoder(model), (torch.zeros(batch, 3, height, width),),
            folder / PART_FILES["vision_encoder"], ["pixel_values"], ["image_features"],
            {"pixel_values": {0: "batch_size"}, "image_features": {0: "batch_size"}})
        paths["embed_tokens"] = _export(
            torch, TokenEmbedding(model), (torch.ones(batch, enc_len, dtype=torch.long),),
            folder / PART_FILES["embed_tokens"], ["input_ids"], ["inputs_embeds"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"},
             "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
        embeds = torch.randn(batch, enc_len, shape.hidden)
        mask = torch.ones(batch, enc_len, dtype=torch.long)
        paths["encoder_model"] = _export(
            torch, TextEncoder(model), (embeds, mask), folder / PART_FILES["encoder_model"],
            ["inputs_embeds", "attention_mask"], ["last_hidden_state"],
            {"inputs_embeds": {0: "batch_size", 1: "encoder_sequence_length"},
             "attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
             "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"}})

        decoder = Decoder(model)
        step = torch.randn(batch, 1, shape.hidden)
        common_in = ["encoder_attention_mask", "encoder_hidden_states", "inputs_embeds"]
        common_axes = {"encoder_attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
                       "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
                       "inputs_embeds": {0: "batch_size", 1: "decoder_sequence_length"},
                       "logits": {0: "batch_size", 1: "decoder_sequence_length"}}
        cache_axes = {}
        for name in shape.past_names() + shape.present_names():
            length = "encoder_sequence_length" if ".encoder." in name else (
                "past_decoder_sequence_length" if name.startswith("past") else "total_decoder_sequence_length")
            cache_axes[name] = {0: "batch_size", 2: length}
        graphs = Path(decoder_graphs)
        graphs.mkdir(parents=True, exist_ok=True)
        first = _export(torch, decoder, (mask, embeds, step), graphs / DECODER_GRAPHS[0],
                        common_in, ["logits", *shape.present_names()],
                        {**common_axes, **{n: cache_axes[n] for n in shape.present_names()}})
        past = []
        for name in shape.past_names():
            length = enc_len if ".encoder." in name else past_len
            past.append(torch.randn(batch, shape.heads, length, shape.head_dim))
        later = _export(torch, decoder, (mask, embeds, step, *past), graphs / DECODER_GRAPHS[1],
                        common_in + shape.past_names(), ["logits", *shape.present_names()],
                        {**common_axes, **cache_axes})
    paths["decoder_model_merged"] = merge_decoders(first, later, folder / PART_FILES["decoder_model_merged"])
    return paths
