"""Location tokens taught as positions: soft labels over neighbouring bins and sinusoidal
embeddings (gi_sdk.train.locations), and a training run that uses both."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gi_sdk.train.locations import (  # noqa: E402
    IGNORE, location_ids, ordinal_location_embeddings, soft_location_loss)
from gi_sdk.train.model import load_base_model, load_tokenizer  # noqa: E402

LOC = range(10, 1010)   # a vocabulary of 1100 with the location tokens at 10..1009


def _logits(seed=0, shape=(2, 5, 1100)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_tiny_sigma_is_plain_cross_entropy():
    logits = _logits()
    labels = torch.tensor([[3, 10 + 412, 10 + 999, 1050, IGNORE], [10, 7, IGNORE, IGNORE, IGNORE]])
    plain = torch.nn.functional.cross_entropy(logits.view(-1, 1100), labels.view(-1), ignore_index=IGNORE)
    assert soft_location_loss(logits, labels, LOC, sigma=1e-3).item() == pytest.approx(plain.item(), rel=1e-5)
    assert soft_location_loss(logits, labels, LOC, sigma=0).item() == pytest.approx(plain.item(), rel=1e-5)


def test_near_miss_costs_less_than_far_miss_only_with_sigma():
    labels = torch.tensor([[10 + 500]])
    near, far = torch.full((1, 1, 1100), -20.0), torch.full((1, 1, 1100), -20.0)
    near[0, 0, 10 + 503] = 20.0      # the model is sure of bin 503 (true: 500)
    far[0, 0, 10 + 100] = 20.0       # ... or of bin 100
    soft = [soft_location_loss(x, labels, LOC, sigma=6).item() for x in (near, far)]
    hard = [soft_location_loss(x, labels, LOC, sigma=0).item() for x in (near, far)]
    assert soft[1] - soft[0] > 2.0   # 503 holds ~6 % of the target's mass, 100 none
    assert hard[0] == pytest.approx(hard[1])


def test_soft_target_is_minimised_by_the_gaussian_itself():
    """The loss is cross-entropy to a normalised Gaussian: predicting exactly it beats
    predicting the one-hot bin, and the gradient is zero there."""
    sigma, centre = 4.0, 300
    bins = torch.arange(1000, dtype=torch.float32)
    q = torch.exp(-0.5 * ((bins - centre) / sigma) ** 2)
    q = q / q.sum()
    best = torch.full((1, 1, 1100), -1e4)
    best[0, 0, 10:1010] = q.clamp_min(1e-30).log()
    best.requires_grad_(True)
    labels = torch.tensor([[10 + centre]])
    loss = soft_location_loss(best, labels, LOC, sigma)
    loss.backward()
    assert best.grad.abs().max().item() < 1e-5
    onehot = torch.full((1, 1, 1100), -1e4)
    onehot[0, 0, 10 + centre] = 0.0
    assert loss.item() < soft_location_loss(onehot, labels, LOC, sigma).item()


def test_ordinal_embeddings_neighbours_are_alike(tiny_checkpoint):
    tokenizer, _ = load_tokenizer(tiny_checkpoint)
    model = load_base_model(tiny_checkpoint, tokenizer)
    ordinal_location_embeddings(model, tokenizer, norm=1.0)
    ids = location_ids(tokenizer)
    assert len(ids) == 1000 and tokenizer.id_to_token(ids.start) == "<loc_0>"
    emb = model.get_input_embeddings().weight[ids.start:ids.stop].detach()
    assert torch.allclose(emb.norm(dim=1), torch.ones(1000), atol=1e-5)
    sim = emb @ emb.T
    assert sim[500, 501] > sim[500, 520] > sim[500, 700]
    # tied: the output layer scores bins with the same codes
    assert torch.equal(model.get_output_embeddings().weight[ids.start:ids.stop], emb)


def test_location_ids_refuse_a_tokenizer_without_them():
    class NoLoc:
        def token_to_id(self, token):
            return None

    with pytest.raises(ValueError, match="loc_0"):
        location_ids(NoLoc())
