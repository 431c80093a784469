"""The checkpoint an export starts from: a merged checkpoint folder as it is, or a LoRA
adapter folder (``adapter_config.json``, as peft and ``gi-sdk train`` save them) merged into
its base first with the training code's own merge (``gi_sdk.train.merge``)."""
from __future__ import annotations

import json
from pathlib import Path

from gi_sdk.errors import ExportError, ModelLoadError, require


def is_adapter(path) -> bool:
    """A peft adapter folder that is not also a full checkpoint."""
    root = Path(path)
    return (root / "adapter_config.json").is_file() and not (root / "config.json").is_file()


def merged_source(path, work) -> tuple[Path, dict | None]:
    """(merged checkpoint folder, adapter info or None) for ``path``.

    An adapter is merged into the base named by its ``base_model_name_or_path`` (a local
    folder: nothing is downloaded) and saved under ``work``; the info says which base and
    adapter went in, for the bundle's provenance.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ModelLoadError(f"checkpoint {root} does not exist; give a merged Florence-2 checkpoint folder "
                             "or a LoRA adapter folder")
    if not is_adapter(root):
        return root, None
    peft = require("peft", "train")
    from gi_sdk.train.merge import merge_and_save
    from gi_sdk.train.model import load_base_model, load_tokenizer

    config = json.loads((root / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise ExportError(f"{root} is a LoRA adapter whose base {base!r} is not a local folder; merge it "
                          "with its base first or fix base_model_name_or_path in adapter_config.json")
    tokenizer, _ = load_tokenizer(base)
    model = peft.PeftModel.from_pretrained(load_base_model(base, tokenizer), str(root))
    out = merge_and_save(model, tokenizer, base, Path(work) / "merged")
    return out, {"path": str(root), "base": str(Path(base).resolve())}
