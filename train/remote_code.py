"""LoRA adapters trained on the old remote-code Florence-2, renamed for the native model.

Before transformers shipped ``Florence2ForConditionalGeneration``, Florence-2 ran from the
model repository's own code (``trust_remote_code``), whose parameter names differ
(FORMATS.md). A peft adapter trained on it names the modules it adapts that way, so its
keys must be renamed before it fits the native model. The renames below are those of
transformers' own converter of the remote-code weights
(``models/florence2/convert_florence2_original_pytorch_to_hf.py``), applied to module paths:

    language_model.model.X                         -> model.language_model.X
    language_model.lm_head                         -> lm_head
    vision_tower.X                                 -> model.vision_tower.X
    ...convs.{i}.proj                              -> ...convs.{i}.conv
    ...{spatial,channel}_block.conv{1,2}.fn.dw     -> ...conv{1,2}
    ...window_attn.norm / channel_attn.norm        -> ...norm1
    ...window_attn.fn.X / channel_attn.fn.X        -> ...window_attn.X / channel_attn.X
    ...ffn.norm                                    -> ...norm2
    ...ffn.fn.net.fc{1,2}                          -> ...ffn.fc{1,2}
    image_proj_norm / image_pos_embed / visual_temporal_embed
                                                   -> model.multi_modal_projector.image_proj_norm /
                                                      image_position_embed / visual_temporal_embed

The remote model's ``image_projection`` is a bare matrix that the converter transposes
into a Linear layer; no LoRA adapter can target it, and an adapter that carries it anyway
is refused rather than loaded wrong.

>>> native_module_name("language_model.model.encoder.layers.0.self_attn.q_proj")
'model.language_model.encoder.layers.0.self_attn.q_proj'
>>> native_module_name("vision_tower.blocks.0.0.spatial_block.ffn.fn.net.fc1")
'model.vision_tower.blocks.0.0.spatial_block.ffn.fc1'
"""
from __future__ import annotations

import re

from gi_sdk.errors import ModelLoadError

#: peft's prefix of every saved key ("base_model.model." + the module path in the model).
PEFT_PREFIX = "base_model.model."

#: (pattern, replacement) applied in order to a remote-code module path.
REMOTE_TO_NATIVE = [
    (re.compile(r"^language_model\.model\."), "model.language_model."),
    (re.compile(r"^language_model\.lm_head\b"), "lm_head"),
    (re.compile(r"^vision_tower\."), "model.vision_tower."),
    (re.compile(r"^image_proj_norm\b"), "model.multi_modal_projector.image_proj_norm"),
    (re.compile(r"^image_pos_embed\b"), "model.multi_modal_projector.image_position_embed"),
    (re.compile(r"^visual_temporal_embed\b"), "model.multi_modal_projector.visual_temporal_embed"),
    (re.compile(r"\.convs\.(\d+)\.proj\b"), r".convs.\1.conv"),
    (re.compile(r"\.(conv1|conv2)\.fn\.dw\b"), r".\1"),
    (re.compile(r"\.(?:window_attn|channel_attn)\.norm\b"), ".norm1"),
    (re.compile(r"\.(window_attn|channel_attn)\.fn\."), r".\1."),
    (re.compile(r"\.ffn\.norm\b"), ".norm2"),
    (re.compile(r"\.ffn\.fn\.net\."), ".ffn."),
]
#: Module paths that exist only in the remote-code model (the native one starts with
#: ``model.`` or ``lm_head``).
_REMOTE_ROOTS = ("language_model.", "vision_tower.", "image_proj_norm", "image_pos_embed",
                 "visual_temporal_embed", "image_projection")


def native_module_name(name: str) -> str:
    """The native model's name of a remote-code module (or parameter) path."""
    if name.startswith("image_projection"):
        raise ModelLoadError(
            f"{name}: the remote-code image_projection is a bare matrix that the native model stores "
            "transposed as a Linear layer; an adapter carrying it cannot be mapped. Retrain without it.")
    for pattern, replacement in REMOTE_TO_NATIVE:
        name = pattern.sub(replacement, name)
    return name


def _path(key: str) -> str:
    return key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key


def is_remote_code_adapter(keys) -> bool:
    """True when adapter keys name remote-code Florence-2 modules."""
    return any(_path(k).startswith(_REMOTE_ROOTS) for k in keys)


def native_key(key: str) -> str:
    """A saved adapter key (``base_model.model.<path>.lora_A.weight``) with its path renamed."""
    prefix = PEFT_PREFIX if key.startswith(PEFT_PREFIX) else ""
    return prefix + native_module_name(_path(key))


def _adapted_modules(keys) -> list[str]:
    """Module paths that carry LoRA weights (``...<module>.lora_A.weight`` -> ``<module>``)."""
    found = {m.group(1) for m in (re.match(r"(.+?)\.lora_[AB]\b", _path(k)) for k in keys) if m}
    return sorted(found)


def to_native(state: dict, config: dict) -> tuple[dict, dict]:
    """(state dict, adapter_config dict) of a remote-code adapter, renamed for the native model.

    ``target_modules`` becomes the exact list of renamed modules the weights adapt (a suffix
    such as ``proj`` meant the patch-embedding convolutions too in the remote model, which
    the native one calls ``conv``); ``modules_to_save`` and the keys of
    ``trainable_token_indices``, ``rank_pattern`` and ``alpha_pattern`` are renamed the same way.
    """
    renamed = {native_key(k): v for k, v in state.items()}
    if len(renamed) != len(state):
        raise ModelLoadError("two adapter keys map onto one native name; the adapter is not a Florence-2 one")
    config = dict(config)
    modules = _adapted_modules(renamed)
    if modules:
        config["target_modules"] = modules
    if isinstance(config.get("modules_to_save"), list):
        config["modules_to_save"] = [native_module_name(m) for m in config["modules_to_save"]]
    for field in ("trainable_token_indices", "rank_pattern", "alpha_pattern"):
        if isinstance(config.get(field), dict):
            config[field] = {native_module_name(k): v for k, v in config[field].items()}
    return renamed, config
