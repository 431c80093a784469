"""Batches for the trainer: encoder ids laid out as the runtime lays them out, pixels through
the runtime's preprocessing, labels = target ids + ``</s>`` padded with -100.

The model must see in training what ``gi_sdk.Session`` gives it at run time, so the encoder
ids come from the one layout function both use (``Checkpoint.encoder_input_ids``) and pixels
come from ``gi_sdk.preprocess``.
"""
from __future__ import annotations

import numpy as np

from gi_sdk.checkpoint import Checkpoint
from gi_sdk.preprocessing import preprocess

from .source_files import read_image

#: The loss ignores this label (transformers' convention).
IGNORE = -100


def target_token_ids(tokenizer, text: str, max_tokens: int, end_id: int) -> tuple[list[int], bool]:
    """(token ids of ``text`` cut to ``max_tokens``, then ``end_id``; whether it was cut):
    the labels every family's collator teaches, the end token kept even on a cut target."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids if text else []
    cut = len(ids) > max_tokens
    return ids[:max_tokens] + [end_id], cut


class Collator:
    """Turns a list of ``Example`` into the model's keyword arguments (torch tensors).

    checkpoint: the base ``Checkpoint`` (image size, normalization, special token ids).
    tokenizer: a ``tokenizers.Tokenizer`` holding the task tokens.
    max_target_tokens: longer targets are cut (``</s>`` kept); ``cut`` counts how often.
    """

    def __init__(self, checkpoint: Checkpoint, tokenizer, max_target_tokens: int = 512,
                 channels: str = "bgr"):
        # not named .tokenizer: Trainer would call save_pretrained on it, which tokenizers lacks
        self.checkpoint, self.text_tokenizer = checkpoint, tokenizer
        self.max_target_tokens, self.channels = int(max_target_tokens), channels
        self.cut = 0

    def target_ids(self, target: str) -> list[int]:
        """Target token ids + ``</s>`` (what the decoder must write, then stop)."""
        ids, cut = target_token_ids(self.text_tokenizer, target, self.max_target_tokens, self.checkpoint.eos_token_id)
        self.cut += cut
        return ids

    def pixels(self, image) -> np.ndarray:
        """(3, H, W) float32 from a BGR array or an image path."""
        frame = read_image(image) if isinstance(image, str) else image
        if frame is None:
            raise ValueError(f"cannot read image {image!r} (it was readable when the sources were loaded)")
        ck = self.checkpoint
        return preprocess(frame, size=ck.image_size, mean=ck.image_mean, std=ck.image_std, channels=self.channels)

    def __call__(self, batch: list) -> dict:
        import torch

        ck = self.checkpoint
        inputs = [ck.encoder_input_ids(self.text_tokenizer, e.prompt) for e in batch]
        labels = [self.target_ids(e.target) for e in batch]
        width, depth = max(map(len, inputs)), max(map(len, labels))
        input_ids = np.full((len(batch), width), ck.pad_token_id, np.int64)
        attention = np.zeros((len(batch), width), np.int64)
        label_ids = np.full((len(batch), depth), IGNORE, np.int64)
        for i, (ids, lab) in enumerate(zip(inputs, labels)):
            input_ids[i, : len(ids)], attention[i, : len(ids)] = ids, 1
            label_ids[i, : len(lab)] = lab
        pixels = np.stack([self.pixels(e.image) for e in batch])
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "pixel_values": torch.from_numpy(pixels),
            "labels": torch.from_numpy(label_ids),
        }
