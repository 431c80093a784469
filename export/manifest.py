"""The bundle manifest: what a bundle is, written by the exporter, read by ``gi_sdk.bundle``.

``describe_model`` gathers what the runtime needs to run the model (preprocessing, tokenizer
ids, task prompts, generation defaults, decoder shape); ``provenance`` says where it came
from; ``write_manifest`` lists every file of the folder with its sha256 and writes
``manifest.json`` (DESIGN.md section 5).
"""
from __future__ import annotations

import datetime
import hashlib
import json
from importlib import metadata
from pathlib import Path

from gi_sdk.bundle import FORMAT_VERSION, MANIFEST, sha256_file
from gi_sdk.tasks import TASKS

from .parts import OPSET


def folder_digest(folder) -> tuple[str, dict]:
    """(sha256 over the folder's files, {relative name: sha256}): one hash for a checkpoint.

    The digest is the sha256 of the sorted "name sha256" lines, so it changes when any file
    is added, removed, renamed or changed.
    """
    root = Path(folder)
    files = {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
    lines = "".join(f"{name} {digest}\n" for name, digest in files.items())
    return hashlib.sha256(lines.encode()).hexdigest(), files


def describe_model(checkpoint, tokenizer) -> dict:
    """The runtime half of the manifest for a Florence-2 ``gi_sdk.checkpoint.Checkpoint``."""
    gen = checkpoint.generation_config
    text = checkpoint.config.get("text_config") or {}
    return {
        "family": checkpoint.family.name,
        "model": checkpoint.config,
        "preprocessing": {
            "image_size": list(checkpoint.image_size),          # (width, height)
            "image_mean": list(checkpoint.image_mean),
            "image_std": list(checkpoint.image_std),
            "rescale_factor": 1 / 255,
            "resample": "bicubic",                              # Pillow's, as gi_sdk.preprocess
            "channel_order": "rgb",
            "layout": "NCHW float32",
        },
        "tokenizer": {
            "file": "tokenizer.json",
            "vocab_size": tokenizer.get_vocab_size(),
            "image_token": checkpoint.family.image_token,
            "image_token_id": checkpoint.image_token_id,
            "image_seq_length": checkpoint.image_seq_length,
            "bos_token_id": checkpoint.bos_token_id,
            "eos_token_id": checkpoint.eos_token_id,
            "pad_token_id": checkpoint.pad_token_id,
            "decoder_start_token_id": checkpoint.decoder_start_token_id,
            "prompt_layout": "image tokens, <s>, prompt, </s>",
        },
        "tasks": {t.name: {"token": t.token, "template": t.template, "output": t.output,
                           "max_new_tokens": t.max_new_tokens} for t in TASKS.values()},
        "generation": {
            "strategy": "greedy",
            "num_beams": 1,
            "decoder_start_token_id": checkpoint.decoder_start_token_id,
            "eos_token_id": checkpoint.eos_token_id,
            "forced_eos_token_id": gen.get("forced_eos_token_id"),
            "max_new_tokens": gen.get("max_new_tokens"),
            "no_repeat_ngram_size": gen.get("no_repeat_ngram_size", 0),
        },
        "decoder": {"layers": text.get("decoder_layers"), "heads": text.get("decoder_attention_heads"),
                    "hidden": text.get("d_model")},
        "banned_grounding_phrases": list(checkpoint.banned_grounding_phrases),
        # the class names of detect / count / point labels (the training record's), which
        # the Session's grammar holds labels to; empty: any words
        "labels": list(checkpoint.labels),
        "opset": OPSET,
    }


def _versions() -> dict:
    out = {}
    for name in ("gi-sdk", "torch", "transformers", "onnx", "onnxruntime"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(source, adapter=None, record: dict | None = None) -> dict:
    """Where the bundle came from: the checkpoint's hash, the adapter it was merged from,
    the training record's commit, the commit of the exporting code and package versions."""
    from gi_sdk.train.merge import git_commit  # one reader of .git for training and export

    digest, files = folder_digest(source)
    out = {
        "source_checkpoint": {"path": str(Path(source).resolve()), "sha256": digest, "files": files},
        "merged_adapter": None,
        "training_record": "training_record.json" if record is not None else None,
        "training_git_commit": (record or {}).get("git_commit"),
        "export_git_commit": git_commit(),
        "exported_with": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if adapter is not None:
        a_digest, _ = folder_digest(adapter["path"])
        out["merged_adapter"] = {"path": str(Path(adapter["path"]).resolve()), "sha256": a_digest,
                                 "base": adapter["base"]}
    return out


def write_manifest(folder, manifest: dict) -> Path:
    """List every file under ``folder`` (but the manifest) with its size and sha256 in
    ``manifest["files"]``, set the format version, and write ``manifest.json``."""
    root = Path(folder)
    manifest = {"format_version": FORMAT_VERSION, **manifest}
    manifest["files"] = {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST
    }
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return path
