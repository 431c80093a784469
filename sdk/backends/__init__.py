"""Backends: the part of the runtime that runs the network, chosen by a short string.

A backend provides three steps and nothing else (the generation loop, grammar, confidence
and decoding are shared, above the backends):

    features = backend.encode_image(pixels)            # (B, 3, H, W) float32 -> opaque
    state = backend.encode_prompt(features, ids)       # prompt ids (B, L) int64 -> opaque
    logits, cache = backend.decode_step(state, tokens, cache)   # tokens (B,) -> (B, V) float32

``encode_prompt(features, ids, attention_mask)`` takes right-padded prompts (B, L) with one
image's features; a backend whose ``decodes_batches`` is true decodes B > 1 prompts as one
batch (``Session.run_many``), others are given one prompt at a time.

Backends are imported only when chosen, so ``import gi_sdk`` never loads torch.
``available_backends()`` says what this machine can run. A backend runs one kind of model
folder: ``torch`` a merged checkpoint, ``onnxruntime`` a model bundle (``gi_sdk.bundle``);
``"auto"`` picks the fastest one that runs the kind it is given.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass

from ..errors import BackendUnavailableError, ConfigError


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and what it needs."""

    module: str
    cls: str
    requires: tuple      # importable modules it needs
    extra: str           # pip extra that installs them
    speed_rank: int      # lower is faster; "auto" picks the fastest available
    runs: str = "checkpoint"   # the model folder kind it loads: "checkpoint" or "bundle"


BACKENDS = {
    "torch": BackendSpec("gi_sdk.backends.torch_backend", "TorchBackend", ("torch", "transformers"), "torch", 10),
    "onnxruntime": BackendSpec("gi_sdk.backends.onnxruntime_backend", "OnnxRuntimeBackend", ("onnxruntime",),
                               "onnxruntime", 5, runs="bundle"),
}


def available_backends(runs: str | None = None) -> list[str]:
    """Names of the backends this machine can run, fastest first; ``runs`` keeps those that
    load that kind of model folder (``"checkpoint"`` or ``"bundle"``).

    >>> available_backends()
    ['onnxruntime', 'torch']
    """
    ok = [name for name, spec in BACKENDS.items()
          if (runs is None or spec.runs == runs)
          and all(importlib.util.find_spec(m) is not None for m in spec.requires)]
    return sorted(ok, key=lambda n: BACKENDS[n].speed_rank)


def resolve_backend(name: str, runs: str | None = None) -> str:
    """Turn ``"auto"`` into the fastest available backend (for the model kind ``runs`` when
    given); check that a named one can run, and that it loads that kind."""
    if name == "auto":
        names = available_backends(runs)
        if not names:
            extras = sorted({s.extra for s in BACKENDS.values() if runs is None or s.runs == runs})
            raise BackendUnavailableError(
                f"no backend that runs a {runs or 'model'} can run on this machine; install one with: "
                + " or ".join(f'pip install "gi-sdk[{e}]"' for e in extras)
            )
        return names[0]
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    spec = BACKENDS[name]
    if runs is not None and spec.runs != runs:
        other = [n for n, s in BACKENDS.items() if s.runs == runs]
        hint = ("; or write the bundle's checkpoint with `gi-sdk recover BUNDLE --out FOLDER` (no BUNDLE: the "
                "built-in model) and load that folder" if spec.runs == "checkpoint" and runs == "bundle" else "")
        raise BackendUnavailableError(
            f"backend {name!r} runs a {spec.runs}, not a {runs}; use backend {' or '.join(map(repr, other))} "
            f"or 'auto' for this model{hint}"
        )
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"backend {name!r} needs {', '.join(missing)}; install with: pip install \"gi-sdk[{spec.extra}]\""
        )
    return name


def model_kind(checkpoint) -> str:
    """``"bundle"`` or ``"checkpoint"``: which backends can load this ``Checkpoint``."""
    return "bundle" if getattr(checkpoint, "bundle", None) is not None else "checkpoint"


def load_backend(name: str, checkpoint, device: str = "cpu", options: dict | None = None):
    """Instantiate backend ``name`` (or the one ``"auto"`` picks) for ``checkpoint``;
    ``options``: keyword arguments of that backend's class (ConfigError naming the ones it takes
    when one is unknown)."""
    resolved = resolve_backend(name, model_kind(checkpoint))
    spec = BACKENDS[resolved]
    cls = getattr(importlib.import_module(spec.module), spec.cls)
    options = dict(options or {})
    takes = [p for p in inspect.signature(cls).parameters if p not in ("checkpoint", "device")]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ConfigError(f"backend {resolved!r} takes no option {', '.join(map(repr, unknown))}; "
                          f"its options: {takes or 'none'}")
    return cls(checkpoint, device=device, **options)
