"""Teaching location tokens as positions, not as 1000 unrelated words.

Florence-2 writes every coordinate as one of 1000 tokens ``<loc_0>`` .. ``<loc_999>``. Plain
cross-entropy treats ``<loc_411>`` for a true ``<loc_412>`` as just as wrong as ``<loc_3>``,
so a model trained from random weights gets no signal for being close and spends a long
time writing the prior (the built-in model's first runs: mAP50 0.00 after 4000 steps,
docs/training.md). Two standard remedies for coordinate-as-class outputs, both here:

- ``location_sigma`` (soft labels): the target of a location token is a Gaussian over the
  neighbouring bins (sigma in bins) instead of a one-hot, so a near miss is rewarded
  smoothly (the label-distribution trick of ordinal classification; Pix2Seq-style detectors
  use it to converge faster). Other tokens keep plain cross-entropy.
- ``ordinal_location_embeddings`` (initialisation): the location tokens' embeddings (tied to
  the output layer in Florence-2) start as sinusoidal codes of their bin, so that the logit
  of a bin and of its neighbours move together from the first step. Only for a base with
  random weights: a pretrained Florence-2 has learnt its own.

Neither changes the model's architecture or its outputs' format: the checkpoint loads and
runs like any Florence-2.
"""
from __future__ import annotations

import math

from gi_sdk.errors import require
from gi_sdk.locations import NUM_BINS

#: transformers' ignored label.
IGNORE = -100


def location_ids(tokenizer) -> range:
    """Token ids of ``<loc_0>`` .. ``<loc_999>`` (contiguous in every Florence-2 tokenizer)."""
    first, last = tokenizer.token_to_id("<loc_0>"), tokenizer.token_to_id(f"<loc_{NUM_BINS - 1}>")
    if first is None or last is None or last - first != NUM_BINS - 1:
        raise ValueError("this tokenizer has no contiguous <loc_0>..<loc_999> tokens; is it a Florence-2 tokenizer?")
    return range(first, last + 1)


def soft_location_loss(logits, labels, locations: range, sigma: float):
    """Mean token loss: cross-entropy against a Gaussian over location bins (``sigma`` bins)
    where the label is a location token, plain cross-entropy elsewhere; labels of -100 are
    ignored. ``logits`` (B, T, V), ``labels`` (B, T)."""
    torch = require("torch", "train")
    f = torch.nn.functional
    keep = labels != IGNORE
    logp = f.log_softmax(logits[keep].float(), dim=-1)          # (N, V)
    target = labels[keep]
    is_loc = (target >= locations.start) & (target < locations.stop)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    if sigma > 0 and bool(is_loc.any()):
        bins = torch.arange(NUM_BINS, device=logits.device, dtype=torch.float32)
        centre = (target[is_loc] - locations.start).float()
        q = torch.exp(-0.5 * ((bins[None] - centre[:, None]) / sigma) ** 2)
        q = q / q.sum(dim=1, keepdim=True)
        soft = -(q * logp[is_loc][:, locations.start:locations.stop]).sum(dim=1)
        nll = nll.masked_scatter(is_loc, soft)
    return nll.mean()


def ordinal_location_embeddings(model, tokenizer, norm: float = 1.0) -> None:
    """Set the location tokens' input (and tied output) embeddings to sinusoidal codes of
    their bin, scaled to ``norm``: bins near each other get similar embeddings, so their
    logits rise together. Frequencies span periods of 8 to 4000 bins, sine and cosine each."""
    torch = require("torch", "train")
    emb = model.get_input_embeddings().weight
    dim = emb.shape[1]
    half = dim // 2
    periods = torch.logspace(math.log10(8.0), math.log10(4000.0), half)
    bins = torch.arange(NUM_BINS, dtype=torch.float32)[:, None]
    angle = 2 * math.pi * bins / periods[None]
    code = torch.zeros(NUM_BINS, dim)
    code[:, 0:2 * half:2], code[:, 1:2 * half:2] = torch.sin(angle), torch.cos(angle)
    code = code / code.norm(dim=1, keepdim=True) * norm
    ids = location_ids(tokenizer)
    with torch.no_grad():
        emb[ids.start:ids.stop] = code.to(emb.dtype)
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():  # untied head: same start
            out.weight[ids.start:ids.stop] = code.to(out.weight.dtype)


def location_trainer_class(sigma: float, locations: range):
    """A ``transformers.Trainer`` subclass whose loss is ``soft_location_loss``."""
    transformers = require("transformers", "train")

    class LocationTrainer(transformers.Trainer):
        """Trainer with soft labels on location tokens (``TrainConfig.location_sigma``)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            loss = soft_location_loss(outputs.logits, inputs["labels"], locations, sigma)
            return (loss, outputs) if return_outputs else loss

    return LocationTrainer
