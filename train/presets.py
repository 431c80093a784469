"""LoRA presets named after the seed work, so a recipe can say ``lora: florence2-paper``.

Module names are those of transformers' native ``Florence2ForConditionalGeneration``: the
BART language model's attention is ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (encoder
self-attention, decoder self- and cross-attention; feed-forward ``fc1``/``fc2``); the DaViT
vision tower's attention is ``qkv``/``proj`` (``window_attn`` and ``channel_attn``).
Targets are suffixes of module names, as peft matches them; ``freeze_vision_tower`` keeps
LoRA off every module under ``vision_tower`` whatever the suffix.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Attention projections of the BART language model (encoder and decoder).
TEXT_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
#: Attention projections of the DaViT vision tower.
VISION_ATTENTION = ("qkv", "proj")


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

    >>> target_regex(["q_proj", "qkv"], True)
    '^(?!.*vision_tower)(?:.*\\\\.)?(q_proj|qkv)$'
    """
    names = "|".join(sorted(set(target_modules), key=list(target_modules).index))
    guard = "(?!.*vision_tower)" if freeze_vision_tower else ""
    return f"^{guard}(?:.*\\.)?({names})$"  # (?:...)? so top-level names (lm_head) match too
