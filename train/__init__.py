"""gi_sdk.train: data -> LoRA fine-tuning -> merged checkpoint. Needs `pip install "gi-sdk[train]"`.

>>> from gi_sdk.train import TrainConfig, run          # doctest: +SKIP
>>> run(TrainConfig.from_yaml("recipe.yaml"))           # doctest: +SKIP

Modules: ``config`` (TrainConfig, SourceSpec), ``presets`` (LoRA presets), ``sources`` and
``source_*`` (records -> examples, with a data report), ``targets`` (annotations -> target
text via gi_sdk.codec), ``split`` (by image; mixture weights), ``collate`` (batches in the
runtime's layout), ``model`` (tokenizer, base model, LoRA), ``training`` (run: Trainer), ``merge``
(merged checkpoint + training_record.json; ``merge_adapter`` for saved adapters, with
``remote_code`` renaming adapters of the old remote-code Florence-2), ``tiny`` (random-weight
test checkpoints), ``evaluate`` (``gi-sdk eval``: run a model over sources and score it, with
``scoring``, ``metrics`` and ``text_metrics``), ``json_predictions`` (score a file of JSON
point / box / count answers), ``medico`` (MediaEval Medico 2025 submission files),
``ablations`` (eval's swapped-image and nonsense-question checks). Decoder-only families:
``tiny_vlm`` (tiny LLaVA / Idefics3 / Qwen2.5-VL checkpoints), ``decoder_only`` (JSON prompts,
answers and batches), ``two_stage`` (caption alignment, then instruction tuning), ``qlora``
(4-bit, GPU only). The built-in model: ``builtin`` (one command, two stages) with
``vision_pretrain`` (stage 1: the vision tower on dense targets).
torch / transformers / peft are imported only by the functions that need them.
"""
from .config import SourceSpec, TrainConfig
from .presets import PRESETS, get_preset


def run(config):
    """Train, merge and save (see ``gi_sdk.train.training.run``); imports torch when called."""
    from .training import run as _run

    return _run(config)


__all__ = ["PRESETS", "SourceSpec", "TrainConfig", "get_preset", "run"]
