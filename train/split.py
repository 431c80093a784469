"""Train / validation split by image, and the sampling mixture over sources and tasks.

Splitting by image (not by example) keeps every question about one image on one side, so
validation never scores a model on an image it trained on.
"""
from __future__ import annotations

import numpy as np


def split_by_image(examples: list, val_share: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """(train, val): a seeded ``val_share`` of the distinct image ids goes to validation.

    With at least two images each side gets at least one; ``val_share=0`` keeps all for training.
    """
    ids = sorted({e.image_id for e in examples})
    n_val = int(round(len(ids) * val_share)) if val_share > 0 else 0
    if val_share > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    val_ids = {ids[i] for i in order[:n_val]}
    train = [e for e in examples if e.image_id not in val_ids]
    val = [e for e in examples if e.image_id in val_ids]
    return train, val


def apply_weights(examples: list, source_weights: dict, task_weights: dict, seed: int = 0) -> list:
    """Resample training examples: each is kept ``w = source weight * task weight`` times in
    expectation (``floor(w)`` copies, plus one more with probability ``w - floor(w)``).

    Weights are per epoch, so 2.0 sees a source's examples about twice as often as 1.0.
    """
    rng = np.random.default_rng([seed, 0x5A3])
    out = []
    for e in examples:
        w = source_weights.get(e.source, 1.0) * task_weights.get(e.task, 1.0)
        copies = int(np.floor(w)) + int(rng.random() < w - np.floor(w))
        out += [e] * copies
    return out
