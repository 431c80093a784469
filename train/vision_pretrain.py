"""Stage 1 of the built-in model: teach a from-scratch vision tower where things are.

A Florence-2 trained from random weights with the token loss alone does not learn to see:
its first run (docs/training.md) ended with image features that differed by 1-5 % from one
frame to the next, and a decoder that wrote the prior (the commonest count, boxes in the
usual place). The gradient that reaches the tower through the text decoder is too weak and
too late. So the tower is first trained on its own, with dense targets taken from the exact
truth of the synthetic scenes, on its last feature map (one cell per 32 x 32 input pixels):

- ``cover``: for each class (polyp, instrument) and each of the 4 x 4 sub-cells of a cell,
  the share of it the class covers (a 32 x 32 mask at 256 px input);
- ``centre``: 1 in the cell holding the centre of an instance's box (one per instance, so
  counting is reading off peaks);
- ``box``: in those cells, where the centre lies inside the cell and the box's width and
  height (as shares of the image).

A 1 x 1 convolution reads them, so the features must hold them linearly: the form the text
decoder's cross-attention reads most easily. The head is thrown away; what is written is an
ordinary Florence-2 checkpoint with the trained tower (loading takes the usual path). Stage 2
(the recipe, ``freeze_vision_tower: true``) then trains the projector and the language model
on top of a tower that already sees. Before it does, ``calibrate_projector`` sets the projector
from the trained tower's feature statistics, so that the image tokens differ by place and frame
(without it they were 91 % alike and carried no position: docs/training.md).

Nothing here is specific to the synthetic scenes but the truth it reads (``Truth.masks``,
``.boxes``, ``.labels``): the same targets come from any dataset with instance masks.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gi_sdk.errors import require

#: Classes the dense targets cover, in channel order.
CLASSES = ("polyp", "instrument")
#: Sub-cells per cell side in ``cover``.
SUB = 4
#: Checkpoint files copied unchanged from the base (everything but the weights).
_CARRIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "preprocessor_config.json", "processor_config.json", "generation_config.json")


@dataclass
class VisionPretrainConfig:
    """Settings of stage 1 (defaults: the built-in model's)."""

    n_images: int = 3000          # synthetic frames drawn (frames_per_scene of them per scene)
    frames_per_scene: int = 8
    seed: int = 2                 # scene seed; the built-in recipe's stage 2 uses 1, evaluation 1000
    width: int = 455
    height: int = 256
    steps: int = 800
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    held_out: int = 200           # frames from another seed, scored at the end
    log_every: int = 50


def n_outputs() -> int:
    """Channels of the dense targets: cover, centre, box."""
    return len(CLASSES) * (SUB * SUB + 1 + 4)


def dense_targets(truth, grid: tuple[int, int]) -> dict:
    """Dense targets of one frame's ``Truth`` on a (rows, cols) grid of cells.

    ``cover`` (C * SUB * SUB, rows, cols) float32 in [0, 1]; ``centre`` (C, rows, cols) 0/1;
    ``box`` (C * 4, rows, cols): (x in cell, y in cell, width, height) shares, valid where
    ``centre`` is 1. Coordinates are shares of the frame, so the frame's aspect ratio (the
    model sees it squeezed to a square) does not matter.
    """
    import cv2

    rows, cols = grid
    height, width = truth.masks.shape[1:] if len(truth.masks) else (None, None)
    cover = np.zeros((len(CLASSES), SUB * SUB, rows, cols), np.float32)
    centre = np.zeros((len(CLASSES), rows, cols), np.float32)
    box = np.zeros((len(CLASSES), 4, rows, cols), np.float32)
    for c, name in enumerate(CLASSES):
        keep = [i for i, lab in enumerate(truth.labels) if lab == name]
        if not keep:
            continue
        union = truth.masks[keep].any(axis=0).astype(np.float32)
        fine = cv2.resize(union, (cols * SUB, rows * SUB), interpolation=cv2.INTER_AREA)
        cover[c] = fine.reshape(rows, SUB, cols, SUB).transpose(1, 3, 0, 2).reshape(SUB * SUB, rows, cols)
        for x0, y0, x1, y1 in truth.boxes[keep]:
            cx, cy = (x0 + x1) / 2 / width * cols, (y0 + y1) / 2 / height * rows
            i, j = min(int(cy), rows - 1), min(int(cx), cols - 1)
            centre[c, i, j] = 1.0
            box[c, :, i, j] = (cx - j, cy - i, (x1 - x0) / width, (y1 - y0) / height)
    return {"cover": cover.reshape(-1, rows, cols), "centre": centre, "box": box.reshape(-1, rows, cols)}


def _frames(config: VisionPretrainConfig, seed: int, n: int, per_scene: int, image_size):
    """(pixels (n, 3, H, W) float16, targets dict of stacked arrays) for ``n`` synthetic frames."""
    from gi_sdk.preprocessing import preprocess
    from gi_sdk.synthetic import SyntheticEndoscope

    scope = SyntheticEndoscope(seed=seed, width=config.width, height=config.height)
    rng = np.random.default_rng([seed, 0x715])
    grid = (image_size[1] // 32, image_size[0] // 32)
    pixels, targets, start = [], [], 0
    while len(pixels) < n:
        lo, hi = scope.segment_range(start)
        start = hi
        for i in np.sort(rng.integers(lo, hi, size=per_scene)):
            frame, truth = scope.frame(int(i))
            pixels.append(preprocess(frame, size=image_size).astype(np.float16))
            targets.append(dense_targets(truth, grid))
            if len(pixels) == n:
                break
    stacked = {k: np.stack([t[k] for t in targets]) for k in targets[0]}
    return np.stack(pixels), stacked


def _loss(torch, out, target, pos_weight: float = 20.0):
    """(total, parts): BCE on cover and centre (centre positives weighted up: a few cells in
    64), L1 on the box where a centre is."""
    f = torch.nn.functional
    nc, cov = len(CLASSES), len(CLASSES) * SUB * SUB
    cover, centre, box = out[:, :cov], out[:, cov:cov + nc], out[:, cov + nc:]
    l_cover = f.binary_cross_entropy_with_logits(cover, target["cover"])
    l_centre = f.binary_cross_entropy_with_logits(
        centre, target["centre"], pos_weight=torch.tensor(pos_weight))
    where = target["centre"].repeat_interleave(4, dim=1)
    l_box = (f.l1_loss(box.sigmoid(), target["box"], reduction="none") * where).sum() / where.sum().clamp(min=1)
    return l_cover + l_centre + 5 * l_box, {"cover": l_cover.item(), "centre": l_centre.item(), "box": l_box.item()}


def _scores(torch, out, target) -> dict:
    """Held-out figures: polyp cover IoU at sub-cell resolution, centre precision/recall, and
    how often the number of centre peaks equals the number of polyps."""
    cov = len(CLASSES) * SUB * SUB
    pred_cover = out[:, :SUB * SUB].sigmoid() > 0.5
    true_cover = target["cover"][:, :SUB * SUB] > 0.5
    inter, union = (pred_cover & true_cover).sum().item(), (pred_cover | true_cover).sum().item()
    pred_centre = out[:, cov].sigmoid() > 0.5
    true_centre = target["centre"][:, 0] > 0.5
    tp = (pred_centre & true_centre).sum().item()
    counts_equal = (pred_centre.flatten(1).sum(1) == true_centre.flatten(1).sum(1)).float().mean().item()
    return {"polyp_cover_iou": inter / max(union, 1), "centre_precision": tp / max(pred_centre.sum().item(), 1),
            "centre_recall": tp / max(true_centre.sum().item(), 1), "count_equal": counts_equal}


def pretrain_vision(base, out_dir, config: VisionPretrainConfig | None = None, progress: bool = True) -> Path:
    """Train ``base``'s vision tower with the dense targets; write a checkpoint to ``out_dir``
    (same files as ``base``, tower weights trained, ``vision_pretrain.json`` beside them)."""
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    from gi_sdk.checkpoint import Checkpoint

    config = config or VisionPretrainConfig()
    torch.manual_seed(config.seed)
    base, out = Path(base), Path(out_dir)
    size = Checkpoint.open(base).image_size
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(base)
    tower = model.model.vision_tower
    channels = model.config.vision_config.embed_dim[-1]
    head = torch.nn.Conv2d(channels, n_outputs(), 1)

    t0 = time.perf_counter()
    pixels, targets = _frames(config, config.seed, config.n_images, config.frames_per_scene, size)
    val_pixels, val_targets = _frames(config, config.seed + 1000, config.held_out, 1, size)
    data_s = time.perf_counter() - t0
    if progress:
        print(f"vision stage: {len(pixels)} training frames, {len(val_pixels)} held out ({data_s:.0f} s)", flush=True)

    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate, total_steps=config.steps,
                                                pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    tower.train()
    log, t1 = [], time.perf_counter()
    for step in range(1, config.steps + 1):
        idx = rng.integers(0, len(pixels), config.batch_size)
        x = torch.from_numpy(pixels[idx].astype(np.float32))
        y = {k: torch.from_numpy(v[idx]) for k, v in targets.items()}
        if rng.random() < 0.5:   # mirror image and targets alike (the scenes have no handedness)
            x, y = _mirror(torch, x, y)
        loss, parts = _loss(torch, head(tower(x).last_hidden_state), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % config.log_every == 0 or step == config.steps:
            log.append({"step": step, "loss": round(loss.item(), 4), **{k: round(v, 4) for k, v in parts.items()}})
            if progress:
                rate = (time.perf_counter() - t1) / step
                print(f"vision stage: step {step}/{config.steps} loss {loss.item():.4f} {parts} ({rate:.2f} s/step)",
                      flush=True)
    tower.eval()
    with torch.no_grad():
        outs = [head(tower(torch.from_numpy(val_pixels[i:i + 50].astype(np.float32))).last_hidden_state)
                for i in range(0, len(val_pixels), 50)]
        scores = _scores(torch, torch.cat(outs), {k: torch.from_numpy(v) for k, v in val_targets.items()})
    if progress:
        print(f"vision stage, held-out frames: {scores}", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    # stage 2 keeps the tower frozen; stochastic depth would only add noise to its features
    model.config.vision_config.drop_path_rate = 0.0
    model.save_pretrained(out)
    for name in _CARRIED:
        if (base / name).is_file():
            shutil.copyfile(base / name, out / name)
    record = {"config": asdict(config), "held_out": scores, "losses": log, "data_seconds": round(data_s, 1),
              "train_seconds": round(time.perf_counter() - t1, 1)}
    (out / "vision_pretrain.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out


def calibrate_checkpoint(seeing, out_dir, n_frames: int = 400, progress: bool = True) -> Path:
    """Write ``seeing`` (stage 1's checkpoint) to ``out_dir`` with its projector calibrated
    (``calibrate_projector``) on ``n_frames`` synthetic frames of stage 1's scenes; the
    figures go into ``vision_pretrain.json`` under ``projector``."""
    transformers = require("transformers", "train")
    from gi_sdk.checkpoint import Checkpoint

    seeing, out = Path(seeing), Path(out_dir)
    record = json.loads((seeing / "vision_pretrain.json").read_text(encoding="utf-8"))
    config = VisionPretrainConfig(**record["config"])
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(seeing).eval()
    pixels, _ = _frames(config, config.seed, n_frames, config.frames_per_scene, Checkpoint.open(seeing).image_size)
    record["projector"] = calibrate_projector(model, pixels.astype(np.float32))
    if progress:
        print(f"projector calibrated: {record['projector']}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in _CARRIED:
        if (seeing / name).is_file():
            shutil.copyfile(seeing / name, out / name)
    (out / "vision_pretrain.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out


def calibrate_projector(model, pixels, batch: int = 50) -> dict:
    """Data-dependent start of the projector between a trained tower and the language model.

    A trained tower's features share a large common part (on the built-in model's: a mean
    vector of norm 24 against 0.57 per channel of variation), and Florence-2's learnt 2D
    position embeddings start at std 0.02: through the projector's linear map and LayerNorm
    every image token came out nearly the same (mean cosine 0.91 between tokens) and carried
    no position, so the decoder could neither tell frames apart nor say where anything was
    (it wrote the same box for every frame). So, measured on ``pixels`` (N, 3, H, W):

    - the row / column position embeddings become 2D sinusoidal codes of each cell's place,
      as strong per channel as the features vary;
    - the projection scales each channel by its spread and removes the common direction
      (it has no bias, so the mean is taken out as a direction), so what the language model
      sees is what differs between places and frames.

    Returns the figures before / after (mean cosine between image tokens).
    """
    torch = require("torch", "train")
    proj = model.model.multi_modal_projector
    tower = model.model.vision_tower
    with torch.no_grad():
        before = _token_cosine(torch, model, pixels[:batch])
        feats = torch.cat([tower(torch.as_tensor(pixels[i:i + batch]).float()).last_hidden_state
                           for i in range(0, len(pixels), batch)])          # (N, C, rows, cols)
        _, channels, rows, cols = feats.shape
        spread = feats.permute(0, 2, 3, 1).reshape(-1, channels).std(0).clamp_min(1e-3)
        pe = proj.image_position_embed
        n_col = pe.column_embeddings.weight.shape[1]
        pe.column_embeddings.weight[:cols] = _sinusoid(torch, cols, n_col) * spread[:n_col]
        pe.row_embeddings.weight[:rows] = _sinusoid(torch, rows, channels - n_col) * spread[n_col:]
        positioned = feats + pe(feats)
        tokens = positioned.flatten(2).transpose(1, 2)
        tokens = tokens + proj.visual_temporal_embed(tokens[:, :1, :]).unsqueeze(1)
        scaled = (tokens / spread).reshape(-1, channels)
        common = scaled.mean(0)
        common = common / common.norm()
        weight = (torch.eye(channels) - torch.outer(common, common)) / spread     # (C, C)
        out_dim = proj.image_projection.weight.shape[0]
        if out_dim != channels:   # another width: an orthonormal map on top
            q, _ = torch.linalg.qr(torch.randn(max(out_dim, channels), min(out_dim, channels)))
            weight = (q.T if out_dim < channels else q) @ weight
        proj.image_projection.weight.copy_(weight.to(proj.image_projection.weight.dtype))
        after = _token_cosine(torch, model, pixels[:batch])
    return {"token_cosine_before": round(before, 4), "token_cosine_after": round(after, 4)}


def _sinusoid(torch, n: int, dim: int):
    """(n, dim) sine/cosine codes of n evenly spaced places (cell centres), unit variance."""
    import math

    place = (torch.arange(n, dtype=torch.float32)[:, None] + 0.5) / n
    periods = torch.logspace(math.log10(0.08), math.log10(4.0), (dim + 1) // 2)
    angle = 2 * math.pi * place / periods[None]
    code = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(n, -1)[:, :dim]
    return code * math.sqrt(2.0)


def _token_cosine(torch, model, pixels) -> float:
    """Mean cosine similarity between the image tokens the language model receives."""
    tokens = model.model.get_image_features(torch.as_tensor(pixels).float()).pooler_output[:, 1:]
    flat = torch.nn.functional.normalize(tokens.reshape(-1, tokens.shape[-1]), dim=-1)
    return (flat @ flat.T).mean().item()


def _mirror(torch, x, y):
    """Left-right mirror of a batch and its dense targets (sub-cells, centre offsets too)."""
    x = x.flip(-1)
    b, _, rows, cols = y["cover"].shape
    cover = y["cover"].reshape(b, len(CLASSES), SUB, SUB, rows, cols).flip(3).flip(-1).reshape(b, -1, rows, cols)
    box = y["box"].reshape(b, len(CLASSES), 4, rows, cols).flip(-1)
    box[:, :, 0] = torch.where(box[:, :, 2] > 0, 1 - box[:, :, 0], box[:, :, 0])
    return x, {"cover": cover, "centre": y["centre"].flip(-1), "box": box.reshape(b, -1, rows, cols)}
