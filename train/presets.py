"""LoRA presets named after the seed work, so a recipe can say ``lora: florence2-paper``.

Module names are those of transformers' native ``Florence2ForConditionalGeneration``: the
BART language model's attention is ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (encoder
self-attention, decoder self- and cross-attention; feed-forward ``fc1``/``fc2``); the DaViT
vision tower's attention is ``qkv``/``proj`` (``window_attn`` and ``channel_attn``).
The decoder-only VLM families (``gi_sdk.train.decoder_only``) name their Llama / Qwen2
decoder's attention ``q_proj``/``k_proj``/``v_proj``/``o_proj``, so the text presets list
``o_proj`` too (Florence-2 has no module of that name: it matches nothing there).
Targets are suffixes of module names, as peft matches them; ``freeze_vision_tower`` keeps
LoRA off every module of the vision tower whatever the suffix: ``vision_tower`` (Florence-2,
LLaVA), ``vision_model`` (Idefics3 / SmolVLM), ``visual`` (Qwen2-VL / Qwen2.5-VL).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Attention projections of the language model: BART's (encoder and decoder, ``out_proj``) and
#: the decoder-only families' (``o_proj``).
TEXT_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj", "o_proj")
#: Attention projections of the DaViT vision tower.
VISION_ATTENTION = ("qkv", "proj")
#: The vision-language projector of each family (peft ``modules_to_save`` suffixes): Florence-2 and
#: LLaVA ``multi_modal_projector``, Idefics3 / SmolVLM ``connector``, Qwen2-VL / Qwen2.5-VL ``merger``.
PROJECTORS = ("multi_modal_projector", "connector", "merger")
#: A module whose name matches this lies in a vision tower (every family's name for it).
VISION_TOWER = r"(?:vision_tower|vision_model|(?:^|\.)visual\.)"


@dataclass(frozen=True)
class LoraPreset:
    """One named LoRA recipe: adapter shape plus the optimiser settings it was run with."""

    name: str
    rank: int
    alpha: int
    dropout: float
    target_modules: tuple
    freeze_vision_tower: bool
    learning_rate: float
    warmup_ratio: float
    help: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """Plain JSON types (for the training record)."""
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


PRESETS: dict[str, LoraPreset] = {p.name: p for p in [
    # The Florence-2 Medico 2025 entry: wide adapters on attention, text and vision.
    LoraPreset("florence2-paper", rank=128, alpha=256, dropout=0.05,
               target_modules=TEXT_ATTENTION + VISION_ATTENTION, freeze_vision_tower=False,
               learning_rate=5e-5, warmup_ratio=0.1,
               help="rank 128 / alpha 256 on text and vision attention, lr 5e-5, warmup 0.1"),
    # The cheap variant: vision tower untouched, so the image features stay those of the base.
    LoraPreset("vision-frozen-r16", rank=16, alpha=32, dropout=0.05, target_modules=TEXT_ATTENTION,
               freeze_vision_tower=True, learning_rate=2e-4, warmup_ratio=0.05,
               help="rank 16 on text attention, vision tower frozen, lr 2e-4"),
    # Small adapters with more dropout, for small data sets that overfit quickly.
    LoraPreset("r8-dropout", rank=8, alpha=16, dropout=0.1, target_modules=TEXT_ATTENTION,
               freeze_vision_tower=False, learning_rate=1e-4, warmup_ratio=0.05,
               help="rank 8, dropout 0.1 on text attention"),
    # No adapter: every weight trains. For a base with random weights (the built-in model,
    # trained from scratch because no pretrained checkpoint can be downloaded), where a
    # low-rank update of random matrices would learn little.
    LoraPreset("full", rank=0, alpha=0, dropout=0.0, target_modules=(), freeze_vision_tower=False,
               learning_rate=5e-4, warmup_ratio=0.05,
               help="no adapter: train every weight (from-scratch models such as the built-in one)"),
]}

#: Name of the preset that trains every weight instead of an adapter.
FULL = "full"


def get_preset(name: str) -> LoraPreset:
    """The preset called ``name``; ValueError listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown LoRA preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


def target_regex(target_modules, freeze_vision_tower: bool) -> str:
    """A peft ``target_modules`` regex (full match) for these suffixes.

    >>> target_regex(["q_proj", "qkv"], False)
    '^(?:.*\\\\.)?(q_proj|qkv)$'
    >>> import re; guarded = target_regex(["q_proj", "qkv"], True)
    >>> [bool(re.fullmatch(guarded, n)) for n in ("model.language_model.layers.0.self_attn.q_proj",
    ...  "model.vision_tower.blocks.0.qkv", "model.vision_model.encoder.layers.0.self_attn.q_proj",
    ...  "model.visual.blocks.0.attn.qkv", "model.multi_modal_projector.visual_temporal_embed.qkv")]
    [True, False, False, False, True]
    """
    names = "|".join(sorted(set(target_modules), key=list(target_modules).index))
    guard = f"(?!.*{VISION_TOWER})" if freeze_vision_tower else ""
    return f"^{guard}(?:.*\\.)?({names})$"  # (?:...)? so top-level names (lm_head) match too


def adapted_modules(model, preset: LoraPreset) -> list[str]:
    """Names of the ``torch.nn.Linear`` modules of ``model`` that ``preset`` puts LoRA on (what
    peft will adapt; empty means the preset's names do not fit this model's modules).

    >>> adapted_modules(model, PRESETS["vision-frozen-r16"])[:1]   # doctest: +SKIP
    ['model.language_model.encoder.layers.0.self_attn.k_proj']
    """
    import re

    import torch

    pattern = re.compile(target_regex(preset.target_modules, preset.freeze_vision_tower))
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n)]
