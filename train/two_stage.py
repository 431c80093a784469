"""Training in stages, one recipe: the seed's two-stage recipe (align on image captions, then
tune on the instruction tasks) or any other sequence.

Each entry of ``TrainConfig.stages`` lists the fields that differ from the recipe; stage k
starts from stage k-1's merged checkpoint, kept in ``output_dir/stages/NAME``; the last stage
writes ``output_dir``, whose ``training_record.json`` carries every stage's record under
``stages``. A stage already done (its folder holds a record of the same config) is not run
again, so a run stopped in a later stage goes on from there; a stage added after the last one
starts from the finished run's output. A recipe (Idefics2 on ROCO captions, then VQA-RAD, in 4-bit)::

    base: models/idefics3-8b
    output_dir: runs/two-stage
    lora: vision-frozen-r16
    quantization: 4bit                 # QLoRA: needs bitsandbytes and a CUDA GPU
    stages:
      - name: align                    # stage 1: image-text alignment, projector + adapters
        sources: [{kind: jsonl, path: data/roco/train/annotations.jsonl}]   # <CAPTION> prefixes
        train_projector: true
        max_steps: 2000
      - name: instruct                 # stage 2: every task mixed
        sources: [{kind: points, path: data/medmultipoints.jsonl}, {kind: kvasir-vqa-x1, path: ...}]
        max_steps: 4000
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .merge import write_record


def _same_config(done: dict, stage) -> bool:
    """Whether a record's ``config`` is this stage's."""
    done = dict(done)
    wanted = json.loads(json.dumps(stage.to_dict()))
    # a field added to the config since that run, left at its default, is the same config
    defaults = json.loads(json.dumps(type(stage)(base="", output_dir="").to_dict()))
    for key in set(wanted) - set(done):
        if wanted[key] == defaults.get(key):
            del wanted[key]
    # where it was written does not matter (a finished run moved into place counts), nor
    # whether it went on from a trainer checkpoint after an interruption
    for key in ("output_dir", "resume_from_checkpoint"):
        done.pop(key, None), wanted.pop(key, None)
    return done == wanted


def _finished(stage, stage_out: Path) -> bool:
    """Whether ``stage_out`` holds this very stage done already (a merged checkpoint whose
    record has the same config): a run stopped in a later stage goes on from there."""
    record = stage_out / "training_record.json"
    if not record.is_file():
        return False
    return _same_config(json.loads(record.read_text(encoding="utf-8")).get("config", {}), stage)


def _take_from_last_run(name: str, stage, out: Path, stage_out: Path) -> bool:
    """A recipe that ran to its end and then got another stage: the stage that was last wrote
    ``out``, not ``out/stages/NAME``. If ``out`` holds this stage done (its record's last
    stage has this name and config), copy that checkpoint into ``stage_out`` with the stage's
    own record, so adding a stage does not train the one before it again."""
    record = out / "training_record.json"
    if not record.is_file():
        return False
    stages = json.loads(record.read_text(encoding="utf-8")).get("stages") or [{}]
    entry = dict(stages[-1])
    if entry.pop("name", None) != name or not _same_config(entry.get("config", {}), stage):
        return False
    entry.pop("output", None)
    stage_out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():   # the checkpoint's files; not stages/ nor trainer checkpoints/
        if f.is_file() and f.name != "training_record.json":
            shutil.copy2(f, stage_out / f.name)
    write_record(stage_out, entry)
    return True


def run_stages(config, run_one) -> Path:
    """Run ``config.stages`` in order with ``run_one`` (``gi_sdk.train.training.run``); return
    the last stage's output (``config.output_dir``)."""
    out = Path(config.output_dir)
    base, records = config.base, []
    retrained = False   # once a stage runs, every later one runs: its start changed
    for i in range(len(config.stages)):
        last = i == len(config.stages) - 1
        name = config.stage_name(i)
        stage_out = out if last else out / "stages" / name
        stage = config.stage_config(i, base=str(base), output_dir=str(stage_out))
        done = not (last or retrained) and (_finished(stage, stage_out)
                                            or _take_from_last_run(name, stage, out, stage_out))
        base = stage_out if done else run_one(stage)
        retrained = not done
        record = json.loads((Path(base) / "training_record.json").read_text(encoding="utf-8"))
        records.append({"name": name, "output": str(base), **record})
    final = dict(records[-1])
    final.pop("name"), final.pop("output")
    final["config"] = config.to_dict()           # the whole recipe, stages included
    final["stages"] = records
    write_record(out, final)
    config.save_json(out / "train_config.json")
    return out
