"""``TrainConfig``: everything one training run needs, as one dataclass.

Written as a YAML recipe, saved as JSON beside the output (``train_config.json``) and inside
``training_record.json``, so a merged checkpoint says how it was made.

>>> cfg = TrainConfig.from_yaml("recipe.yaml")          # doctest: +SKIP
>>> cfg.lora_settings()["rank"]                          # doctest: +SKIP
16

A recipe::

    base: models/florence-2-base
    output_dir: runs/polyp-r16
    lora: vision-frozen-r16
    sources:
      - {kind: synthetic, params: {n_images: 200, seed: 1}}
      - {kind: kvasir-vqa-x1, path: data/kvasir-vqa-x1/train.jsonl, params: {images: data/images}}
    task_weights: {ask: 2.0, detect: 1.0}
    max_steps: 2000
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from gi_sdk.tasks import TASKS

from .presets import get_preset

#: Values of ``TrainConfig.quantization``: None (full precision) or QLoRA's 4-bit base.
QUANTIZATIONS = (None, "4bit")


@dataclass
class SourceSpec:
    """One data source of a run."""

    kind: str = field(metadata={"help": "source kind, a key of gi_sdk.train.sources.SOURCE_KINDS "
                                        "(synthetic, kvasir-vqa-x1, explanations, kvasir-seg, points, jsonl)"})
    path: str | None = field(default=None, metadata={"help": "file or folder the records come from "
                                                             "(not used by 'synthetic')"})
    params: dict = field(default_factory=dict, metadata={"help": "kind-specific settings (see each source's docstring)"})
    weight: float = field(default=1.0, metadata={"help": "sampling weight of this source's training examples: "
                                                        "2.0 sees each about twice per epoch, 0.5 about half of them"})
    name: str | None = field(default=None, metadata={"help": "name in the data report (default: kind, or kind:path)"})

    def __post_init__(self):
        if self.weight < 0:
            raise ValueError(f"source {self.label}: weight must be >= 0, got {self.weight}")

    @property
    def label(self) -> str:
        """The name this source goes by in reports and errors."""
        return self.name or (f"{self.kind}:{self.path}" if self.path else self.kind)


@dataclass
class TrainConfig:
    """A training run: data, adapter, optimiser, output. Every field has help text
    (``TrainConfig.help()`` prints them)."""

    base: str = field(metadata={"help": "base checkpoint folder (native Florence-2, e.g. florence-2-base); "
                                        "never downloaded"})
    output_dir: str = field(metadata={"help": "where the merged checkpoint, tokenizer and training_record.json go"})
    sources: list = field(default_factory=list, metadata={"help": "list of SourceSpec (kind, path, params, weight)"})
    task_weights: dict = field(default_factory=dict, metadata={
        "help": "sampling weight per task name (gi_sdk.tasks) on top of source weights; unlisted tasks weigh 1.0"})
    lora: str = field(default="vision-frozen-r16", metadata={
        "help": "LoRA preset name: florence2-paper, vision-frozen-r16, r8-dropout; or 'full' to train every "
                "weight without an adapter (for a base with random weights)"})
    lora_rank: int | None = field(default=None, metadata={"help": "override the preset's rank"})
    lora_alpha: int | None = field(default=None, metadata={"help": "override the preset's alpha"})
    lora_dropout: float | None = field(default=None, metadata={"help": "override the preset's dropout"})
    target_modules: list | None = field(default=None, metadata={
        "help": "override the preset's target module suffixes (q_proj, k_proj, v_proj, out_proj, fc1, fc2, qkv, proj)"})
    freeze_vision_tower: bool | None = field(default=None, metadata={
        "help": "keep the vision tower unchanged (no LoRA under vision_tower); default: the preset's"})
    freeze_modules: list = field(default_factory=list, metadata={
        "help": "with the 'full' preset: submodules kept unchanged, by name in the model (e.g. "
                "model.language_model.encoder); a name the model lacks is an error"})
    learning_rate: float | None = field(default=None, metadata={"help": "peak learning rate; default: the preset's"})
    warmup_ratio: float | None = field(default=None, metadata={"help": "share of steps spent warming up; default: the preset's"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training examples (ignored when max_steps > 0)"})
    max_steps: int = field(default=-1, metadata={"help": "optimiser steps to run; -1: use epochs"})
    batch_size: int = field(default=8, metadata={"help": "examples per device per step"})
    grad_accumulation: int = field(default=1, metadata={"help": "batches accumulated per optimiser step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=42, metadata={"help": "seed for data sampling, split, adapter init and dropout"})
    val_split: float = field(default=0.2, metadata={"help": "share of IMAGES held out for validation "
                                                            "(no image is on both sides)"})
    max_skip_share: float = field(default=0.05, metadata={
        "help": "a source that skips more than this share of its records (missing or corrupt images, bad "
                "masks, unparseable records) stops the run with an error"})
    logging_steps: int = field(default=10, metadata={"help": "log the loss every this many steps"})
    save_steps: int = field(default=500, metadata={"help": "write a resumable trainer checkpoint every this many steps"})
    eval_steps: int | None = field(default=None, metadata={"help": "evaluate on the validation split every this "
                                                                   "many steps (default: once per epoch)"})
    resume_from_checkpoint: str | bool | None = field(default=None, metadata={
        "help": "a trainer checkpoint folder to resume from, or true for the latest in output_dir/checkpoints"})
    max_target_tokens: int = field(default=512, metadata={"help": "longer targets are cut (and counted in the log)"})
    device: str | None = field(default=None, metadata={"help": "'cpu' to force CPU; default: what Trainer picks "
                                                               "(CUDA when present, torchrun/accelerate ranks)"})
    bf16: bool = field(default=False, metadata={"help": "train in bfloat16 mixed precision (GPU)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    train_projector: bool = field(default=False, metadata={
        "help": "also train the vision-language projector in full (peft modules_to_save), as the alignment "
                "stage of the two-stage recipe does"})
    quantization: str | None = field(default=None, metadata={
        "help": "'4bit': QLoRA, the base loaded in 4-bit NF4 while the adapter trains (needs bitsandbytes and a "
                "CUDA GPU; refused otherwise); the merge then folds the adapter into the full-precision base"})
    location_sigma: float = field(default=0.0, metadata={
        "help": "soft labels for location tokens: the target of a <loc_k> is a Gaussian over neighbouring bins "
                "with this sigma (in bins, e.g. 8), so near misses are rewarded; 0 = plain cross-entropy "
                "(gi_sdk.train.locations)"})
    ordinal_locations: bool = field(default=False, metadata={
        "help": "start the location tokens' embeddings as sinusoidal codes of their bin (a base with random "
                "weights only: a pretrained Florence-2 has learnt its own)"})
    cache_image_features: bool = field(default=False, metadata={
        "help": "compute each distinct image's tokens once and keep them in memory (needs the vision tower and "
                "the projector frozen; the same loss, about 3x fewer seconds a step for the built-in model on "
                "a CPU; memory: image tokens x width x 4 bytes per image) (gi_sdk.train.feature_cache)"})
    stages: list = field(default_factory=list, metadata={
        "help": "run several stages in order, each a mapping of fields that differ from this config (name, "
                "sources, max_steps, train_projector, ...) and each starting from the previous stage's merged "
                "checkpoint; the last writes output_dir (see gi_sdk.train.two_stage). Empty: one stage"})

    def __post_init__(self):
        self.sources = [s if isinstance(s, SourceSpec) else SourceSpec(**s) for s in self.sources]
        get_preset(self.lora)  # fail at load time, not after the data is read
        if not 0.0 <= self.val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got {self.val_split}")
        if not 0.0 <= self.max_skip_share <= 1.0:
            raise ValueError(f"max_skip_share must be in [0, 1], got {self.max_skip_share}")
        if any(w < 0 for w in self.task_weights.values()):
            raise ValueError(f"task_weights must be >= 0, got {self.task_weights}")
        unknown = sorted(set(self.task_weights) - set(TASKS))
        if unknown:  # a misspelt task would silently keep weight 1.0
            raise ValueError(f"task_weights names unknown tasks {unknown}; known: {sorted(TASKS)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if self.quantization and get_preset(self.lora).rank == 0:
            raise ValueError("quantization (QLoRA) trains an adapter on a frozen 4-bit base; the 'full' preset has "
                             "no adapter: choose a LoRA preset or drop quantization")
        for i in range(len(self.stages)):  # a bad stage fails at load time, not after stage 1 trained
            self.stage_config(i)
        labels = [s.label for s in self.sources]
        if len(set(labels)) != len(labels):  # weights and the data report are keyed by name
            raise ValueError(f"two sources share a name in {labels}; give them distinct 'name's")

    # ------------------------------------------------------------------ resolved values
    def stage_config(self, index: int, base: str | None = None, output_dir: str | None = None) -> "TrainConfig":
        """The config of stage ``index``: this config with the stage's fields (its ``name`` is
        the stage's folder name, not a field), on ``base`` and writing ``output_dir``."""
        stage = self.stages[index]
        if not isinstance(stage, dict):
            raise ValueError(f"stage {index}: a stage is a mapping of TrainConfig fields, got {type(stage).__name__}")
        fixed = sorted({"base", "output_dir", "stages"} & set(stage))
        if fixed:
            raise ValueError(f"stage {index}: {fixed} cannot differ between stages (each stage starts from the "
                             "previous one's output; the last writes output_dir)")
        fields_ = {k: v for k, v in stage.items() if k != "name"}
        data = {**self.to_dict(), "stages": [], **fields_,
                "base": base or self.base, "output_dir": output_dir or self.output_dir}
        return TrainConfig.from_dict(data)

    def stage_name(self, index: int) -> str:
        """The name of stage ``index`` (its ``name``, else ``stage1``, ``stage2`` ...)."""
        return str(self.stages[index].get("name") or f"stage{index + 1}")

    def lora_settings(self) -> dict:
        """The preset with this config's overrides applied: rank, alpha, dropout,
        target_modules, freeze_vision_tower, learning_rate, warmup_ratio, preset."""
        p = get_preset(self.lora)
        pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
        return {
            "preset": p.name,
            "rank": pick(self.lora_rank, p.rank),
            "alpha": pick(self.lora_alpha, p.alpha),
            "dropout": pick(self.lora_dropout, p.dropout),
            "target_modules": list(pick(self.target_modules, p.target_modules)),
            "freeze_vision_tower": pick(self.freeze_vision_tower, p.freeze_vision_tower),
            "learning_rate": pick(self.learning_rate, p.learning_rate),
            "warmup_ratio": pick(self.warmup_ratio, p.warmup_ratio),
            "train_projector": self.train_projector,
            "freeze_modules": list(self.freeze_modules),
            "quantization": self.quantization,
        }

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from a dict; unknown keys raise ValueError naming them (typos must not pass)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path) -> "TrainConfig":
        """Load a YAML recipe (JSON is YAML too)."""
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe is a mapping of TrainConfig fields, got {type(data).__name__}")
        return cls.from_dict(data)

    @classmethod
    def from_json(cls, path) -> "TrainConfig":
        """Load a config saved by ``save_json``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def save_json(self, path) -> Path:
        """Write the config as JSON (``output_dir/train_config.json`` by convention)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def help(cls) -> str:
        """One line per field: name, default and help text."""
        lines = []
        for f in fields(cls):
            lines.append(f"{f.name}: {f.metadata.get('help', '')}")
        return "\n".join(lines)
