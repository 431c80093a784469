"""Stage 1 of the built-in model: dense targets from truth, their mirror, a tiny run end to end."""
import json

import numpy as np
import pytest

from gi_sdk.synthetic.truth import Truth

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gi_sdk.train.vision_pretrain import (  # noqa: E402
    SUB, VisionPretrainConfig, _mirror, calibrate_checkpoint, dense_targets, pretrain_vision)


def _truth(width=256, height=256):
    """A polyp filling [64, 128) x [70, 134) and an instrument strip on the right."""
    masks = np.zeros((2, height, width), bool)
    masks[0, 70:134, 64:128] = True
    masks[1, 0:40, 200:256] = True
    boxes = np.array([[64, 70, 128, 134], [200, 0, 256, 40]], np.float32)
    return Truth(boxes, masks, labels=["polyp", "instrument"])


def test_dense_targets_of_a_known_scene():
    t = dense_targets(_truth(), (8, 8))
    cover = t["cover"].reshape(2, SUB * SUB, 8, 8)
    assert cover.shape == (2, 16, 8, 8) and t["centre"].shape == (2, 8, 8) and t["box"].shape == (8, 8, 8)
    # polyp: rows 70..133 -> cell rows 2, 3, 4; columns 64..127 -> cell columns 2, 3
    assert cover[0, :, 3, 2].min() == 1.0 and cover[0, :, 3, 3].min() == 1.0
    assert cover[0, :, 0, 0].max() == 0.0 and cover[0, :, 5, 2].max() == 0.0
    # cell row 2 = px 64..95; its sub-row 0 (px 64..71) is covered from px 70: a quarter
    assert cover[0, 0, 2, 2] == pytest.approx(0.25) and cover[0, 4, 2, 2] == 1.0
    # one centre per instance: polyp centre (96, 102) -> cell (3, 3), offsets (0, 0.1875), size 0.25 x 0.25
    assert t["centre"][0].sum() == 1 and t["centre"][0, 3, 3] == 1
    np.testing.assert_allclose(t["box"][0:4, 3, 3], [0.0, 0.1875, 0.25, 0.25], atol=1e-6)
    # instrument: centre (228, 20) -> cell (0, 7); its cover is its own channel block
    assert t["centre"][1, 0, 7] == 1 and cover[1, :, 0, 7].min() == 1.0 and cover[0, :, 0, 7].max() == 0.0


def test_no_instances_gives_zero_targets():
    t = dense_targets(Truth.empty(256, 455), (8, 8))
    assert all(not v.any() for v in t.values())


def test_mirror_equals_the_targets_of_the_mirrored_scene():
    truth = _truth(width=320, height=256)
    truth.boxes[0] = [60, 70, 131, 134]          # centre x 95.5: off the cell edges, as almost all are
    flipped = Truth(np.stack([[320 - b[2], b[1], 320 - b[0], b[3]] for b in truth.boxes]).astype(np.float32),
                    truth.masks[:, :, ::-1].copy(), labels=list(truth.labels))
    as_tensors = lambda t: {k: torch.from_numpy(v[None]) for k, v in t.items()}  # noqa: E731
    _, mirrored = _mirror(torch, torch.zeros(1, 3, 256, 256), as_tensors(dense_targets(truth, (8, 8))))
    expected = as_tensors(dense_targets(flipped, (8, 8)))
    for key in ("cover", "centre", "box"):
        torch.testing.assert_close(mirrored[key], expected[key], atol=1e-5, rtol=0)


def test_pretrain_vision_trains_the_tower_only(tmp_path):
    from gi_sdk.train.tiny import build_tiny_florence2

    base = build_tiny_florence2(tmp_path / "base", image_size=256)
    config = VisionPretrainConfig(n_images=8, frames_per_scene=4, steps=3, batch_size=4, held_out=4,
                                  width=160, height=128, log_every=1)
    out = pretrain_vision(base, tmp_path / "vision", config, progress=False)
    before = transformers.Florence2ForConditionalGeneration.from_pretrained(base).state_dict()
    after = transformers.Florence2ForConditionalGeneration.from_pretrained(out)
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".vision_tower." in k for k in changed)
    assert after.config.vision_config.drop_path_rate == 0.0
    record = json.loads((out / "vision_pretrain.json").read_text())
    assert len(record["losses"]) == 3 and set(record["held_out"]) >= {"polyp_cover_iou", "count_equal"}
    assert (out / "tokenizer.json").is_file()
    # the hand-over to stage 2: the same checkpoint, its projector calibrated on stage 1's scenes
    calibrated = calibrate_checkpoint(out, tmp_path / "calibrated", n_frames=6, progress=False)
    moved = {k for k, v in transformers.Florence2ForConditionalGeneration.from_pretrained(calibrated)
             .state_dict().items() if not torch.equal(v, after.state_dict()[k])}
    assert moved and all(".multi_modal_projector." in k for k in moved)
    figures = json.loads((calibrated / "vision_pretrain.json").read_text())["projector"]
    assert figures["token_cosine_after"] < figures["token_cosine_before"]
    assert (calibrated / "tokenizer.json").is_file()


@pytest.mark.parametrize("projection_dim", [64, 48, 96])
def test_calibrated_projector_gives_distinct_positioned_tokens(tmp_path, projection_dim):
    """A tower whose features share a large common part (as a trained one's do) feeds the
    language model near-identical tokens; after calibration they differ, and by place: the
    same frame's tokens at two places differ even where the tower's features are equal."""
    from gi_sdk.train.tiny import build_tiny_florence2
    from gi_sdk.train.vision_pretrain import _token_cosine, calibrate_projector

    base = build_tiny_florence2(tmp_path / "base", image_size=128)
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(base).eval()
    if projection_dim != 64:   # another projector width takes the orthonormal branch
        model.model.multi_modal_projector.image_projection = torch.nn.Linear(64, projection_dim, bias=False)
        model.model.multi_modal_projector.image_proj_norm = torch.nn.LayerNorm(projection_dim)
    tower = model.model.vision_tower
    forward = tower.forward

    def shifted(x, **kw):   # a common offset 30x the features' own spread
        out = forward(x, **kw)
        out.last_hidden_state = out.last_hidden_state + 30 * out.last_hidden_state.std()
        return out

    tower.forward = shifted
    pixels = np.random.default_rng(0).normal(size=(12, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        before = _token_cosine(torch, model, pixels)
        figures = calibrate_projector(model, pixels, batch=6)
        assert figures["token_cosine_before"] == pytest.approx(before, abs=1e-3)
        assert before > 0.9 and figures["token_cosine_after"] < 0.3
        flat = torch.zeros(1, 3, 128, 128)
        tower.forward = lambda x, **kw: type(forward(x))(last_hidden_state=torch.ones(1, 64, 4, 4))
        tokens = model.model.get_image_features(flat).pooler_output[0, 1:]
        assert torch.nn.functional.cosine_similarity(tokens[0], tokens[-1], dim=0) < 0.9
