"""The model side of training: tokenizer with the task tokens, base model, LoRA adapter.

Task tokens of ``gi_sdk.tasks.NEW_TASK_TOKENS`` missing from a base tokenizer (the public
Florence-2 has none of them) are added, the embeddings resized, and their embedding rows
trained through peft's ``trainable_token_indices`` (only those rows: the rest of the
vocabulary stays the base's, and ``merge_and_unload`` folds them into the merged weights).
"""
from __future__ import annotations

from pathlib import Path

from gi_sdk.errors import require
from gi_sdk.tasks import NEW_TASK_TOKENS

from .presets import PROJECTORS, target_regex


def load_tokenizer(base) -> tuple:
    """(tokenizers.Tokenizer of ``base``, the task tokens that had to be added)."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(Path(base) / "tokenizer.json"))
    missing = [t for t in NEW_TASK_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return tok, missing


def task_token_ids(tokenizer) -> list[int]:
    """Ids of the ``NEW_TASK_TOKENS`` the tokenizer has (all of them after ``load_tokenizer``;
    none for the decoder-only families, which are asked in words)."""
    ids = [tokenizer.token_to_id(t) for t in NEW_TASK_TOKENS]
    return [i for i in ids if i is not None]


def load_base_model(base, tokenizer, quantization=None):
    """The native Florence2ForConditionalGeneration at ``base``, embeddings grown to fit the
    tokenizer when tokens were added; 4-bit when ``quantization`` (a ``BitsAndBytesConfig``)."""
    transformers = require("transformers", "train")
    extra = {"quantization_config": quantization} if quantization is not None else {}
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(base, **extra)
    needed = tokenizer.get_vocab_size(with_added_tokens=True)
    if needed > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(needed)
    return model


def add_lora(model, settings: dict, tokenizer):
    """Wrap ``model`` in a peft LoRA adapter from ``TrainConfig.lora_settings()``.

    The ``full`` preset (rank 0) adds no adapter: the model itself trains, every weight of it,
    or every weight outside the vision tower when ``freeze_vision_tower`` is set (the built-in
    model's stage 2, on a tower trained by ``gi_sdk.train.vision_pretrain``).
    """
    if settings["rank"] == 0:
        model.requires_grad_(True)
        if settings["freeze_vision_tower"]:
            model.model.vision_tower.requires_grad_(False)
        for name in settings.get("freeze_modules") or ():
            try:
                model.get_submodule(name).requires_grad_(False)
            except AttributeError as exc:
                from gi_sdk.errors import ConfigError

                raise ConfigError(f"freeze_modules: this model has no submodule {name!r} ({exc})") from exc
        return model
    peft = require("peft", "train")
    config = peft.LoraConfig(
        r=settings["rank"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
        target_modules=target_regex(settings["target_modules"], settings["freeze_vision_tower"]),
        trainable_token_indices=task_token_ids(tokenizer) or None,
        # the two-stage recipe's alignment stage trains the projector in full beside the adapter
        modules_to_save=list(PROJECTORS) if settings.get("train_projector") else None,
        bias="none",
    )
    adapted = peft.get_peft_model(model, config)
    if settings.get("train_projector") and not any("modules_to_save" in n for n, _ in adapted.named_parameters()):
        from gi_sdk.errors import ConfigError

        raise ConfigError(f"train_projector: this model has no projector module named {' or '.join(PROJECTORS)}")
    return adapted


def load_adapter(model, adapter_dir):
    """Wrap ``model`` in the peft LoRA adapter saved in ``adapter_dir`` (``adapter_config.json``
    + ``adapter_model.safetensors``). An adapter trained on the old remote-code Florence-2 is
    recognised by its module names and renamed for the native model first
    (``gi_sdk.train.remote_code``). ModelLoadError when its weights do not all fit ``model``.
    """
    import json

    from gi_sdk.errors import ModelLoadError

    from .remote_code import is_remote_code_adapter, to_native

    peft = require("peft", "train")
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    files = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not all(f.is_file() for f in files):
        raise ModelLoadError(f"{folder}: a peft adapter folder holds adapter_config.json and "
                             "adapter_model.safetensors; one is missing")
    config, state = json.loads(files[0].read_text(encoding="utf-8")), load_file(str(files[1]))
    if is_remote_code_adapter(state):
        state, config = to_native(state, config)
    try:
        adapted = peft.PeftModel(model, peft.get_peft_config(config))
    except ValueError as exc:  # peft: target modules that this model does not have
        raise ModelLoadError(f"{folder}: the adapter does not fit this model ({exc})") from exc
    loaded = peft.set_peft_model_state_dict(adapted, state)
    missing = [k for k in loaded.missing_keys if "lora_" in k or "trainable_tokens" in k]
    if loaded.unexpected_keys or missing:
        raise ModelLoadError(f"{folder}: the adapter does not fit this model (unexpected "
                             f"{loaded.unexpected_keys[:3]}, missing {missing[:3]}); is it a Florence-2 adapter?")
    return adapted
