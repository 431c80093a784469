"""Backends: the part of the runtime that runs the network, chosen by a short string.

A backend provides three steps and nothing else (the generation loop, grammar, confidence
and decoding are shared, above the backends):

    features = backend.encode_image(pixels)            # (B, 3, H, W) float32 -> opaque
    state = backend.encode_prompt(features, ids)       # prompt ids (B, L) int64 -> opaque
    logits, cache = backend.decode_step(state, tokens, cache)   # tokens (B,) -> (B, V) float32

Backends are imported only when chosen, so ``import gi_sdk`` never loads torch.
``available_backends()`` says what this machine can run.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from ..errors import BackendUnavailableError


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and what it needs."""

    module: str
    cls: str
    requires: tuple      # importable modules it needs
    extra: str           # pip extra that installs them
    speed_rank: int      # lower is faster; "auto" picks the fastest available


BACKENDS = {
    "torch": BackendSpec("gi_sdk.backends.torch_backend", "TorchBackend", ("torch", "transformers"), "torch", 10),
}


def available_backends() -> list[str]:
    """Names of the backends this machine can run, fastest first.

    >>> available_backends()
    ['torch']
    """
    ok = [name for name, spec in BACKENDS.items()
          if all(importlib.util.find_spec(m) is not None for m in spec.requires)]
    return sorted(ok, key=lambda n: BACKENDS[n].speed_rank)


def resolve_backend(name: str) -> str:
    """Turn ``"auto"`` into the fastest available backend; check that a named one can run."""
    if name == "auto":
        names = available_backends()
        if not names:
            raise BackendUnavailableError(
                'no backend can run on this machine; install one with: pip install "gi-sdk[torch]"'
            )
        return names[0]
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    spec = BACKENDS[name]
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"backend {name!r} needs {', '.join(missing)}; install with: pip install \"gi-sdk[{spec.extra}]\""
        )
    return name


def load_backend(name: str, checkpoint, device: str = "cpu"):
    """Instantiate backend ``name`` (or the one ``"auto"`` picks) for ``checkpoint``."""
    resolved = resolve_backend(name)
    spec = BACKENDS[resolved]
    module = importlib.import_module(spec.module)
    return getattr(module, spec.cls)(checkpoint, device=device)
