"""TrainConfig: YAML / JSON round trips, presets, overrides, and LoRA target names that
match the native Florence-2 modules."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from gi_sdk.train.config import SourceSpec, TrainConfig
from gi_sdk.train.presets import PRESETS, adapted_modules, get_preset

RECIPE = """
base: models/florence-2-base
output_dir: runs/r16
lora: vision-frozen-r16
lora_rank: 32
sources:
  - {kind: synthetic, params: {n_images: 10, seed: 3}, weight: 2.0}
  - {kind: kvasir-vqa-x1, path: data/vqa.jsonl, params: {images: data/images}}
task_weights: {ask: 2.0}
max_steps: 100
"""


def test_yaml_to_json_round_trip(tmp_path):
    # the recipe a user writes and the JSON saved beside the output must describe the same run
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    cfg = TrainConfig.from_yaml(tmp_path / "recipe.yaml")
    assert cfg.sources[0] == SourceSpec("synthetic", params={"n_images": 10, "seed": 3}, weight=2.0)
    saved = cfg.save_json(tmp_path / "out" / "train_config.json")
    again = TrainConfig.from_json(saved)
    assert again == cfg
    assert json.loads(saved.read_text())["lora_rank"] == 32


@pytest.mark.parametrize("name, rank, alpha, dropout, frozen, lr, warmup", [
    # the Florence-2 Medico entry's adapter: wide, on attention, lr 5e-5 with 10 % warmup
    ("florence2-paper", 128, 256, 0.05, False, 5e-5, 0.1),
    # the cheap variant: vision tower frozen, higher lr
    ("vision-frozen-r16", 16, 32, 0.05, True, 2e-4, 0.05),
    # small adapters with more dropout for small data
    ("r8-dropout", 8, 16, 0.1, False, 1e-4, 0.05),
    # no adapter: every weight, for the built-in model trained from random weights
    ("full", 0, 0, 0.0, False, 5e-4, 0.05),
])
def test_preset_values(name, rank, alpha, dropout, frozen, lr, warmup):
    p = get_preset(name)
    assert (p.rank, p.alpha, p.dropout, p.freeze_vision_tower, p.learning_rate, p.warmup_ratio) == \
        (rank, alpha, dropout, frozen, lr, warmup)


def test_overrides_win_over_the_preset():
    # a recipe names a preset and changes one knob; the rest must stay the preset's
    cfg = TrainConfig(base="b", output_dir="o", lora="florence2-paper", lora_rank=64, target_modules=["q_proj"])
    s = cfg.lora_settings()
    assert (s["rank"], s["alpha"], s["target_modules"], s["learning_rate"]) == (64, 256, ["q_proj"], 5e-5)


@pytest.mark.parametrize("change, message", [
    ({"lora": "nope"}, "unknown LoRA preset"),          # a typo in the preset name fails at load time
    ({"val_split": 1.0}, "val_split"),                  # nothing left to train on
    ({"max_skip_share": 2.0}, "max_skip_share"),        # a share is at most 1
    ({"task_weights": {"ask": -1}}, "task_weights"),    # a negative weight means nothing
    ({"sources": [{"kind": "synthetic", "weight": -1}]}, "weight"),
    ({"task_weights": {"asks": 2.0}}, "unknown tasks"),   # a misspelt task would keep weight 1
    ({"sources": [{"kind": "synthetic"}, {"kind": "synthetic"}]}, "share a name"),  # report keys clash
])
def test_bad_values_fail_loudly(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"base": "b", "output_dir": "o", **change})


def test_unknown_field_is_named(tmp_path):
    # a misspelt field must not be ignored silently (the run would use the default)
    (tmp_path / "r.yaml").write_text("base: b\noutput_dir: o\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        TrainConfig.from_yaml(tmp_path / "r.yaml")


def test_every_field_has_help():
    # peft-style config: the help text is the documentation of the recipe format
    for cls in (TrainConfig, SourceSpec):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


@pytest.mark.parametrize("preset, vision_adapted", [
    ("florence2-paper", True),       # paper preset adapts vision attention (qkv / proj) too
    ("vision-frozen-r16", False),    # frozen vision tower: no LoRA under vision_tower
    ("r8-dropout", False),           # text attention only
])
def test_targets_match_native_florence2_modules(tiny_checkpoint, preset, vision_adapted):
    # target names must match transformers' native Florence2ForConditionalGeneration, or peft
    # silently adapts nothing (the real module names were read from transformers 5.x)
    from transformers import Florence2ForConditionalGeneration

    hits = adapted_modules(Florence2ForConditionalGeneration.from_pretrained(tiny_checkpoint), PRESETS[preset])
    text = [n for n in hits if "language_model" in n]
    vision = [n for n in hits if "vision_tower" in n]
    # 2 encoder layers x 4 + 2 decoder layers x 8 (self + cross attention) in the tiny model
    assert len(text) == 24
    assert bool(vision) == vision_adapted


def test_builtin_recipe_loads():
    # the recipe `make builtin-model` runs is a valid TrainConfig once base/output are filled in
    import yaml

    from gi_sdk.train.builtin import RECIPE

    cfg = TrainConfig.from_dict({**yaml.safe_load(RECIPE.read_text()), "base": "b", "output_dir": "o"})
    assert cfg.lora_settings()["rank"] == 0 and cfg.sources[0].kind == "synthetic"


def test_a_finished_stage_is_not_run_again(tmp_path):
    """run_stages goes on from the first stage not done: a stage folder holding a record of the
    same config (written anywhere) is kept; one of another config runs again."""
    from gi_sdk.train.two_stage import run_stages

    recipe = TrainConfig(base="b", output_dir=str(tmp_path / "out"), lora="full",
                         stages=[{"name": "one", "max_steps": 5}, {"name": "two", "max_steps": 7}])
    ran = []

    def run_one(stage):
        ran.append(stage.max_steps)
        out = Path(stage.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_record.json").write_text(json.dumps({"config": stage.to_dict()}))
        return out

    run_stages(recipe, run_one)
    assert ran == [5, 7]
    ran.clear()
    run_stages(recipe, run_one)           # stage one done: only the last runs
    assert ran == [7]
    moved = tmp_path / "out" / "stages" / "one" / "training_record.json"
    record = json.loads(moved.read_text())
    record["config"]["output_dir"] = "/elsewhere"   # a finished run moved into place still counts
    moved.write_text(json.dumps(record))
    ran.clear()
    run_stages(recipe, run_one)
    assert ran == [7]
    record["config"]["resume_from_checkpoint"] = True   # ... and one that went on after a restart
    moved.write_text(json.dumps(record))
    ran.clear()
    run_stages(recipe, run_one)
    assert ran == [7]
    record["config"]["max_steps"] = 6                # ... but not one of another config
    moved.write_text(json.dumps(record))
    ran.clear()
    run_stages(recipe, run_one)
    assert ran == [5, 7]
    # a record written before a config field existed: the same config when the new field is
    # at its default, another one when it is not
    record["config"]["max_steps"] = 5
    del record["config"]["cache_image_features"]
    moved.write_text(json.dumps(record))
    ran.clear()
    run_stages(recipe, run_one)
    assert ran == [7]
    cached = TrainConfig(base="b", output_dir=str(tmp_path / "out"), lora="full",
                         stages=[{"name": "one", "max_steps": 5, "cache_image_features": True},
                                 {"name": "two", "max_steps": 7}])
    ran.clear()
    run_stages(cached, run_one)
    assert ran == [5, 7]


def test_a_stage_added_to_a_finished_recipe_starts_from_its_output(tmp_path):
    """The last stage writes output_dir itself; adding a stage after it must not train it again
    but take its checkpoint from output_dir into stages/NAME (and not if its config changed)."""
    from gi_sdk.train.two_stage import run_stages

    def recipe(*steps):
        return TrainConfig(base="b", output_dir=str(tmp_path / "out"), lora="full",
                           stages=[{"name": f"s{i}", "max_steps": n} for i, n in enumerate(steps)])
    ran = []

    def run_one(stage):
        ran.append(stage.max_steps)
        out = Path(stage.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_text(f"weights of {stage.max_steps}")
        (out / "training_record.json").write_text(json.dumps({"config": stage.to_dict()}))
        return out

    run_stages(recipe(5, 7), run_one)
    ran.clear()
    run_stages(recipe(5, 7, 9), run_one)      # s1 was last: its checkpoint is out/, kept
    assert ran == [9]
    taken = tmp_path / "out" / "stages" / "s1"
    assert (taken / "model.safetensors").read_text() == "weights of 7"
    assert json.loads((taken / "training_record.json").read_text())["config"]["max_steps"] == 7
    assert not (taken / "stages").exists()
    ran.clear()
    run_stages(recipe(5, 7, 9), run_one)      # and from now on it is a finished stage
    assert ran == [9]
    shutil.rmtree(taken)
    ran.clear()
    run_stages(recipe(5, 8, 9, 11), run_one)  # s1 changed: s2 (in out/) started from the old s1
    assert ran == [8, 9, 11]
    ran.clear()
    run_stages(recipe(6, 8, 9, 11), run_one)  # s0 changed: every later stage runs again too
    assert ran == [6, 8, 9, 11]
