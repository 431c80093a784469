"""After training: fold the adapter into the base and write a checkpoint ``gi_sdk.Session`` loads.

The folder gets model.safetensors + config + generation config (``save_pretrained``), the
tokenizer (with any added task tokens), the base's processor files, and
``training_record.json`` (config, data report, git commit, metrics and losses).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

#: Files copied from the base checkpoint unchanged (the processor and tokenizer settings).
BASE_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json",
              "special_tokens_map.json", "chat_template.jinja")


def git_commit(start=None) -> str | None:
    """The commit of the checkout the training code runs from, or None outside one.

    Read from ``.git`` directly (no subprocess): HEAD, then the ref it names, loose or packed.
    """
    here = Path(start or __file__).resolve()
    for folder in [here, *here.parents]:
        git = folder / ".git"
        if git.is_dir():
            break
    else:
        return None
    head = (git / "HEAD").read_text().strip()
    if not head.startswith("ref: "):
        return head or None
    ref = head[5:]
    if (git / ref).is_file():
        return (git / ref).read_text().strip()
    packed = git / "packed-refs"
    for line in packed.read_text().splitlines() if packed.is_file() else []:
        if line.endswith(" " + ref):
            return line.split()[0]
    return None


def merge_and_save(peft_model, tokenizer, base, out_dir) -> Path:
    """Merge LoRA (and trained token rows) into the base weights; save a full checkpoint.

    A model trained without an adapter (the ``full`` preset) is saved as it is.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged = peft_model.merge_and_unload() if hasattr(peft_model, "merge_and_unload") else peft_model
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save(str(out / "tokenizer.json"))
    for name in BASE_FILES:
        if (Path(base) / name).is_file():
            shutil.copyfile(Path(base) / name, out / name)
    return out


def write_record(out_dir, record: dict) -> Path:
    """Write ``training_record.json`` into ``out_dir``."""
    path = Path(out_dir) / "training_record.json"
    path.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return path


def merge_adapter(base, adapter_dir, out_dir) -> Path:
    """Merge a saved LoRA adapter into ``base`` and save the checkpoint in ``out_dir``.

    Adapters trained on the old remote-code Florence-2 are renamed on loading
    (``gi_sdk.train.model.load_adapter``), so they merge like native ones.
    """
    from .model import load_adapter, load_base_model, load_tokenizer

    tokenizer, _ = load_tokenizer(base)
    return merge_and_save(load_adapter(load_base_model(base, tokenizer), adapter_dir), tokenizer, base, out_dir)
