"""QLoRA: the adapter trains on a base held in 4-bit NF4 (``TrainConfig.quantization: 4bit``),
as the two-stage seed recipe fine-tunes Idefics2.

bitsandbytes' 4-bit layers run on CUDA GPUs only, so a run that asks for them without both
is refused before anything loads, with what to do instead. After training, the adapter is
folded into the FULL-precision base (merging into 4-bit weights would round the merged
weights to 4 bits and give a checkpoint only bitsandbytes can load): the adapter is saved,
the base loaded again unquantized, the adapter applied and merged.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from gi_sdk.errors import ConfigError, MissingDependencyError, require


def check_qlora(config) -> None:
    """Raise (MissingDependencyError / ConfigError, saying what to do) when ``config`` asks for
    QLoRA on a machine that cannot run it: no bitsandbytes, no CUDA GPU, or ``device: cpu``."""
    if not config.quantization:
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError(
            "quantization: 4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes (with a CUDA GPU), "
            "or drop 'quantization' to train the LoRA adapter on a full-precision base")
    torch = require("torch", "train")
    if config.device == "cpu" or not torch.cuda.is_available():
        raise ConfigError(
            "quantization: 4bit (QLoRA) runs on a CUDA GPU only (bitsandbytes' 4-bit layers); this run has "
            + ("device: cpu" if config.device == "cpu" else "no CUDA GPU")
            + ". Drop 'quantization' to train the LoRA adapter on a full-precision base")


def quantization_config(config):
    """The ``BitsAndBytesConfig`` of ``config.quantization`` (checked), or None."""
    if not config.quantization:
        return None
    check_qlora(config)
    torch, transformers = require("torch", "train"), require("transformers", "train")
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if config.bf16 else torch.float32)


def prepare(model):
    """Make a 4-bit model trainable under an adapter (peft's ``prepare_model_for_kbit_training``:
    norms in float32, input gradients on for the frozen embeddings)."""
    peft = require("peft", "train")
    return peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def full_precision_adapted(peft_model, out_dir, load_base):
    """The adapter of a QLoRA ``peft_model`` applied to the full-precision base that
    ``load_base()`` returns (saved under ``out_dir/adapter`` on the way), ready to merge."""
    peft = require("peft", "train")
    adapter = Path(out_dir) / "adapter"
    peft_model.save_pretrained(adapter)
    return peft.PeftModel.from_pretrained(load_base(), adapter)
