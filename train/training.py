"""``run(config)``: sources -> split -> LoRA training with HF ``Trainer`` -> merged checkpoint.

    gi-sdk train --config recipe.yaml           # or: python -c "import gi_sdk.train as t; ..."
    torchrun --nproc_per_node 4 -m gi_sdk.cli train --config recipe.yaml

Works unchanged under ``torchrun`` / ``accelerate launch``: ``Trainer`` reads the ranks from
the environment; only the main process merges and writes the output.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from gi_sdk.checkpoint import Checkpoint
from gi_sdk.errors import SourceError, require

from . import qlora
from .collate import Collator
from .config import TrainConfig
from .feature_cache import ImageFeatureCache
from .locations import location_ids, location_trainer_class, ordinal_location_embeddings
from .merge import git_commit, merge_and_save, write_record
from .model import add_lora, load_base_model, load_tokenizer
from .sources import load_sources
from .split import apply_weights, split_by_image
from .targets import class_labels


class ExampleDataset:
    """A list of ``Example`` as a map-style dataset (the collator builds the tensors)."""

    def __init__(self, examples: list):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def prepare_data(config: TrainConfig):
    """(train examples after mixture weights, validation examples, DataReport)."""
    examples, report = load_sources(config.sources, config.max_skip_share)
    train, val = split_by_image(examples, config.val_split, config.seed)
    train = apply_weights(train, {s.label: s.weight for s in config.sources}, config.task_weights, config.seed)
    report.set_split(train, val)
    return train, val, report


def _training_arguments(config: TrainConfig, lora: dict, has_val: bool):
    transformers = require("transformers", "train")
    per_epoch = "epoch" if config.eval_steps is None else "steps"
    return transformers.TrainingArguments(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        learning_rate=lora["learning_rate"],
        warmup_steps=float(lora["warmup_ratio"]),  # a float < 1 is a share of the steps
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy=per_epoch if has_val else "no",
        eval_steps=config.eval_steps,
        remove_unused_columns=False,  # our dataset yields Example objects, not model columns
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=not config.progress,
        use_cpu=config.device == "cpu",
        bf16=config.bf16,
    )


def _family_side(config: TrainConfig, checkpoint, train: list, val: list) -> tuple:
    """What depends on the base's family: (train, val, {task: examples left out}, tokenizer,
    added tokens, ``load_base(quantization=None)``, collator).

    Florence-2 learns task tokens and location tokens; a decoder-only VLM (answers in JSON,
    ``gi_sdk.train.decoder_only``) is asked in words, so tasks without a JSON form are left out.
    """
    if checkpoint.family.answers != "json":
        tokenizer, added = load_tokenizer(config.base)
        return (train, val, {}, tokenizer, added, partial(load_base_model, config.base, tokenizer),
                Collator(checkpoint, tokenizer, config.max_target_tokens))
    from . import decoder_only

    (train, dropped), (val, dropped_val) = decoder_only.served_examples(train), decoder_only.served_examples(val)
    not_served = {t: dropped.get(t, 0) + dropped_val.get(t, 0) for t in {**dropped, **dropped_val}}
    if not train:
        raise SourceError(f"none of the training examples is of a task a {checkpoint.family.name} model answers "
                          f"(left out: {not_served}); give it point / count / detect or text tasks")
    tokenizer = decoder_only.load_text_tokenizer(config.base)  # no task tokens to add
    collator = decoder_only.JsonCollator(checkpoint, decoder_only.load_processor(config.base), tokenizer,
                                         config.max_target_tokens)
    return train, val, not_served, tokenizer, [], partial(decoder_only.load_vlm, config.base), collator


def run(config: TrainConfig | str | Path) -> Path:
    """Train, merge and save; return the output folder (loadable by ``gi_sdk.Session``).

    ``config`` is a ``TrainConfig`` or the path of a YAML recipe. A config with ``stages``
    runs them one after the other (``gi_sdk.train.two_stage``).
    """
    transformers = require("transformers", "train")
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_yaml(config)
    if config.stages:
        from .two_stage import run_stages

        return run_stages(config, run)
    qlora.check_qlora(config)  # refused before anything loads
    out = Path(config.output_dir)
    checkpoint = Checkpoint.open(config.base)  # a wrong base path fails here, before the data is read
    transformers.set_seed(config.seed)
    train, val, report = prepare_data(config)
    labels = class_labels(train)   # the class names the Session's grammar holds labels to
    lora = config.lora_settings()

    train, val, not_served, tokenizer, added, load_base, collator = _family_side(config, checkpoint, train, val)
    quantization = qlora.quantization_config(config)  # QLoRA: the base in 4 bits (GPU only)
    base_model = load_base(quantization=quantization)
    if config.ordinal_locations:
        ordinal_location_embeddings(base_model, tokenizer)
    model = add_lora(qlora.prepare(base_model) if quantization else base_model, lora, tokenizer)
    cache = ImageFeatureCache(model).install() if config.cache_image_features else None
    args = _training_arguments(config, lora, bool(val))
    trainer_class = (location_trainer_class(config.location_sigma, location_ids(tokenizer))
                     if config.location_sigma > 0 else transformers.Trainer)
    trainer = trainer_class(model=model, args=args, data_collator=collator,
                                   train_dataset=ExampleDataset(train),
                                   eval_dataset=ExampleDataset(val) if val else None)
    if trainer.is_world_process_zero():  # written first, so a run that dies still says what it was
        config.save_json(out / "train_config.json")
    try:
        result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        metrics = dict(result.metrics)
        if val:
            metrics.update(trainer.evaluate())
    finally:
        if cache is not None:
            cache.remove()
    if cache is not None:
        metrics.update(image_feature_cache_hits=cache.hits, image_feature_cache_misses=cache.misses)
    if not trainer.is_world_process_zero():
        return out
    # a QLoRA adapter merges into the full-precision base, not into its 4-bit copy
    merge_and_save(qlora.full_precision_adapted(model, out, load_base) if quantization else model,
                   tokenizer, config.base, out)
    if checkpoint.family.answers == "json":
        from .decoder_only import save_processor

        save_processor(config.base, out)
    losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    write_record(out, {
        "config": config.to_dict(),
        "lora": lora,
        "added_tokens": added,
        "labels": labels,
        "data": report.to_json(),
        "tasks_not_served": not_served,
        "targets_cut": collator.cut,
        "git_commit": git_commit(),
        "metrics": metrics,
        "losses": losses,
        "eval_losses": [{"step": h["step"], "eval_loss": h["eval_loss"]}
                        for h in trainer.state.log_history if "eval_loss" in h],
    })
    return out
