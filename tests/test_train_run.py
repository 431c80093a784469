"""Training end to end on a tiny random Florence-2: batches in the runtime's layout, a smoke
run over every source kind and task (loss falls, merged checkpoint loads in Session and
answers), merged == unmerged, new task tokens, resume, and the ``gi-sdk train`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.checkpoint import Checkpoint  # noqa: E402
from gi_sdk.preprocessing import preprocess  # noqa: E402
from gi_sdk.tasks import NEW_TASK_TOKENS, build_prompt, get_task  # noqa: E402
from gi_sdk.train import TrainConfig, run  # noqa: E402
from gi_sdk.train.collate import IGNORE, Collator  # noqa: E402
from gi_sdk.train.examples import Example  # noqa: E402
from gi_sdk.train.model import add_lora, load_base_model, load_tokenizer  # noqa: E402

from train_data import all_sources, scene  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """The tiny Florence-2 at 128 px input (17 image tokens instead of 577): same code path,
    about 20x less vision work per step, so a real training run fits in a CI test."""
    from gi_sdk.train.tiny import build_tiny_florence2

    return build_tiny_florence2(tmp_path_factory.mktemp("tiny128"), image_size=128)


def _config(base, out, sources, **kw):
    settings = dict(lora="r8-dropout", lora_dropout=0.0, learning_rate=1e-2, warmup_ratio=0.0,
                    # lm_head too: the tiny model's random lm_head (std 0.02) keeps every logit
                    # near 0, so adapters below it alone can barely move the loss in 40 steps
                    target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "lm_head"],
                    batch_size=4, logging_steps=5, save_steps=1000, progress=False, device="cpu", seed=0)
    settings.update(kw)
    return TrainConfig(base=str(base), output_dir=str(out), sources=sources, **settings)


# ---------------------------------------------------------------------------------- batches

@pytest.mark.parametrize("task,text", [
    ("detect", None),                             # Florence-2 task: expanded prompt, no input
    ("ask", "How many polyps are there?"),        # our task token + question
    ("segment", "polyp"),                         # expanded prompt with an input
])
def test_batch_encoder_ids_are_transformers_processor_ids(tiny_checkpoint, hf_processor, task, text):
    # the model must see in training the ids HF's processor gives it (and so does Session)
    tokenizer, _ = load_tokenizer(tiny_checkpoint)
    spec = get_task(task)
    prompt = build_prompt(task, text)
    batch = Collator(Checkpoint.open(tiny_checkpoint), tokenizer)([Example(scene(0)[0], "a", task, prompt, "", "s")])
    hf_text = spec.token + (text or "") if spec.hf_parse_type else prompt
    hf_ids = hf_processor(text=hf_text, images=scene(0)[0][..., ::-1].copy(), return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(batch["input_ids"].numpy(), hf_ids)


def test_batch_labels_pixels_and_padding(tiny_checkpoint):
    tokenizer, _ = load_tokenizer(tiny_checkpoint)
    ck = Checkpoint.open(tiny_checkpoint)
    img = scene(0)[0]
    batch = [Example(img, "a", "ask", build_prompt("ask", "Is there a polyp?"), "Yes, one polyp.", "s"),
             Example(img, "a", "detect", build_prompt("detect"), "", "s")]  # empty target: just </s>
    out = Collator(ck, tokenizer)(batch)
    labels = out["labels"].numpy()
    first = tokenizer.encode("Yes, one polyp.", add_special_tokens=False).ids + [ck.eos_token_id]
    assert labels[0, : len(first)].tolist() == first and (labels[0, len(first):] == IGNORE).all()
    assert labels[1, 0] == ck.eos_token_id and (labels[1, 1:] == IGNORE).all()
    # shorter prompt padded with <pad> and masked out
    n = out["attention_mask"][1].sum().item()
    assert (out["input_ids"][1, n:] == ck.pad_token_id).all()
    expected = preprocess(img, size=ck.image_size, mean=ck.image_mean, std=ck.image_std, channels="bgr")
    np.testing.assert_array_equal(out["pixel_values"][0].numpy(), expected)


# ---------------------------------------------------------------------------------- smoke run

@pytest.fixture(scope="module")
def trained(small_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    sources, expect = all_sources(root / "data")
    cfg = _config(small_checkpoint, root / "out", sources, max_steps=40, max_skip_share=0.6)
    return run(cfg), expect


def test_loss_falls(trained):
    out, _ = trained
    losses = [x["loss"] for x in json.loads((out / "training_record.json").read_text())["losses"]]
    assert len(losses) == 8
    # from ~log(vocab) = 7.4 to about 4.3 on this data; a broken label layout stays near 7
    assert np.mean(losses[-2:]) < losses[0] - 1.0, losses


def test_record_accounts_for_every_source_and_task(trained):
    out, expect = trained
    record = json.loads((out / "training_record.json").read_text())
    data = record["data"]
    assert {s["name"]: s["skipped"] for s in data["sources"]} == expect  # bad records counted, run went on
    tasks = set(data["train_by_task"]) | set(data["val_by_task"])
    assert tasks == {"detect", "segment", "count", "point", "ask", "ground", "explain"}
    assert data["val_images"] > 0 and record["lora"]["preset"] == "r8-dropout"
    assert "eval_loss" in record["metrics"]
    assert TrainConfig.from_json(out / "train_config.json").max_steps == 40
    # the class names of the box / point targets: what a Session's grammar holds labels to
    assert "polyp" in record["labels"] and set(record["labels"]) <= {"polyp", "instrument"}
    assert Session(out, backend="torch").labels == tuple(sorted(record["labels"]))


@pytest.mark.parametrize("task, text", [
    ("detect", None), ("segment", "polyp"), ("count", "polyp"), ("point", "polyp"),
    ("ask", "Is there a polyp?"), ("explain", "Is there a polyp?"), ("ground", "polyp"),
])
def test_merged_checkpoint_loads_in_session_and_answers(trained, task, text):
    # the merged folder is a plain checkpoint: the runtime loads it and every trained task runs
    out, _ = trained
    session = Session(out, backend="torch")
    r = session.run(scene(1)[0], task, text, max_new_tokens=8)
    assert r.task == task and r.timings["total"] > 0


def test_same_seed_same_run(small_checkpoint, tmp_path):
    # a recipe and its seed fix the run: data order, adapter init, dropout, merged weights
    from safetensors.numpy import load_file

    sources = [{"kind": "synthetic", "params": {"n_images": 2, "width": 96, "height": 72, "tasks": ["detect", "ask"]}}]
    runs = [run(_config(small_checkpoint, tmp_path / f"run{k}", sources, max_steps=3, logging_steps=1,
                        lora_dropout=0.1)) for k in range(2)]
    records = [json.loads((r / "training_record.json").read_text())["losses"] for r in runs]
    assert records[0] == records[1] and len(records[0]) == 3
    a, b = (load_file(str(r / "model.safetensors")) for r in runs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_full_preset_trains_every_weight_without_an_adapter(small_checkpoint, tmp_path):
    # the built-in model's recipe: random base, every weight trains, nothing to merge
    from safetensors.numpy import load_file

    sources = [{"kind": "synthetic", "params": {"n_images": 2, "width": 96, "height": 72, "tasks": ["detect"]}}]
    out = run(_config(small_checkpoint, tmp_path / "full", sources, lora="full", learning_rate=1e-3,
                      target_modules=None, max_steps=2))
    before, after = load_file(str(small_checkpoint / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(after) == set(before)   # a plain checkpoint: no lora_ or base_layer names
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert any("vision_tower" in k for k in moved) and any("decoder" in k for k in moved)
    assert json.loads((out / "training_record.json").read_text())["lora"]["preset"] == "full"
    assert Session(out, backend="torch").detect(scene(1)[0], max_new_tokens=4).task == "detect"


def test_full_preset_keeps_frozen_modules_and_teaches_locations_softly(small_checkpoint, tmp_path):
    # the built-in model's stage 2: projector and encoder layers fixed, soft location labels,
    # location embeddings started as ordinal codes
    from safetensors.numpy import load_file

    from gi_sdk.train.locations import location_ids
    from gi_sdk.train.model import load_tokenizer

    sources = [{"kind": "synthetic", "params": {"n_images": 2, "width": 96, "height": 72, "tasks": ["detect"]}}]
    frozen = ["model.multi_modal_projector", "model.language_model.encoder.layers"]
    out = run(_config(small_checkpoint, tmp_path / "frozen", sources, lora="full", learning_rate=1e-3,
                      target_modules=None, max_steps=2, freeze_modules=frozen, location_sigma=6.0,
                      ordinal_locations=True))
    before, after = load_file(str(small_checkpoint / "model.safetensors")), load_file(str(out / "model.safetensors"))
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert any("decoder" in k for k in moved) and any("vision_tower" in k for k in moved)
    assert not any("multi_modal_projector" in k or "encoder.layers" in k for k in moved)
    locs = location_ids(load_tokenizer(out)[0])
    emb = next(after[k] for k in after if k.endswith("shared.weight"))[locs.start:locs.stop]
    norms = np.linalg.norm(emb, axis=1)   # ordinal codes (norm 1), moved a little by two steps
    assert np.allclose(norms, 1.0, atol=0.05)
    with pytest.raises(Exception, match="no submodule 'model.nowhere'"):
        run(_config(small_checkpoint, tmp_path / "bad", sources, lora="full", target_modules=None,
                    max_steps=1, freeze_modules=["model.nowhere"]))


def test_image_feature_cache_computes_each_image_once_and_changes_nothing(small_checkpoint, tmp_path):
    # the cache serves a frozen tower's tokens from memory: one computation per distinct image,
    # the same tokens as the tower, the same training run; refused when the tower would train
    from gi_sdk.errors import ConfigError
    from gi_sdk.train.feature_cache import ImageFeatureCache
    from safetensors.numpy import load_file

    tokenizer, _ = load_tokenizer(small_checkpoint)
    frozen = ["model.multi_modal_projector"]
    model = add_lora(load_base_model(small_checkpoint, tokenizer),
                     {"rank": 0, "freeze_vision_tower": True, "freeze_modules": frozen}, tokenizer)
    pixels = torch.randn(3, 3, 128, 128)
    batch = torch.stack([pixels[0], pixels[1], pixels[0], pixels[2]])     # image 0 twice
    model.eval()
    with torch.no_grad():
        want = model.model.get_image_features(batch).pooler_output
    cache = ImageFeatureCache(model).install()
    got = model.model.get_image_features(batch).pooler_output
    assert (cache.misses, cache.hits, len(cache)) == (3, 1, 3)
    torch.testing.assert_close(got, want)
    again = model.model.get_image_features(batch[1:3]).pooler_output
    assert (cache.misses, cache.hits) == (3, 3)
    torch.testing.assert_close(again, want[1:3])
    cache.remove()
    assert "get_image_features" not in vars(model.model)
    model.model.multi_modal_projector.requires_grad_(True)
    with pytest.raises(ConfigError, match="multi_modal_projector.* trains"):
        ImageFeatureCache(model)

    # a tower without drop-path (the built-in model's): in training mode it computes what the
    # cache keeps (with drop-path on, a frozen tower's training-mode tokens are random; the cache
    # keeps the inference ones)
    import shutil

    base_dir = shutil.copytree(small_checkpoint, tmp_path / "base")
    config = json.loads((base_dir / "config.json").read_text())
    config["vision_config"]["drop_path_rate"] = 0.0
    (base_dir / "config.json").write_text(json.dumps(config))
    sources = [{"kind": "synthetic", "params": {"n_images": 3, "width": 96, "height": 72, "tasks": ["detect", "count"]}}]
    settings = dict(lora="full", learning_rate=1e-3, target_modules=None, max_steps=3, freeze_vision_tower=True,
                    freeze_modules=frozen, batch_size=2, logging_steps=1)
    plain = run(_config(base_dir, tmp_path / "plain", sources, **settings))
    cached = run(_config(base_dir, tmp_path / "cached", sources, cache_image_features=True, **settings))
    a, b = load_file(str(plain / "model.safetensors")), load_file(str(cached / "model.safetensors"))
    base = load_file(str(base_dir / "model.safetensors"))
    records = [json.loads((out / "training_record.json").read_text()) for out in (plain, cached)]
    losses = [[h["loss"] for h in r["losses"]] for r in records]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-4)   # the same run
    # weights: the cache computes tokens in other batches, so they differ by rounding; Adam divides
    # by the gradient's size, which makes that up to ~1e-4 here, and full steps for key biases
    # (their gradient is 0 but for rounding: softmax ignores a shift): left out. A step moves
    # weights by ~1e-3.
    assert max(float(np.abs(a[k] - base[k]).max()) for k in a) > 1e-3
    for k in a:
        if not k.endswith("k_proj.bias"):
            np.testing.assert_allclose(a[k], b[k], atol=2e-4, err_msg=k)
    metrics = records[1]["metrics"]
    assert metrics["image_feature_cache_misses"] == 3 and metrics["image_feature_cache_hits"] > 0


# ---------------------------------------------------------------------------------- merge

def _tied_copy(checkpoint, out):
    """The checkpoint with input embeddings and lm_head tied, as in the public Florence-2."""
    import shutil

    from transformers import AutoConfig, Florence2ForConditionalGeneration

    config = AutoConfig.from_pretrained(checkpoint)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    Florence2ForConditionalGeneration(config).save_pretrained(out)
    for f in checkpoint.iterdir():
        if f.suffix == ".json" and f.name not in ("config.json", "generation_config.json"):
            shutil.copyfile(f, out / f.name)
    return out


@pytest.mark.parametrize("tied", [
    False,   # the tiny test model (untied, see gi_sdk.train.tiny)
    True,    # the public Florence-2 ties lm_head to the embeddings the task-token rows live in
])
def test_merged_and_unmerged_logits_agree(small_checkpoint, tmp_path, tied):
    # merge_and_unload must not change what the model computes (LoRA and trained token
    # rows), and the saved merged checkpoint must compute the same again after loading
    from transformers import Florence2ForConditionalGeneration

    base = _tied_copy(small_checkpoint, tmp_path / "tied") if tied else small_checkpoint
    tokenizer, _ = load_tokenizer(base)
    settings = dict(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "qkv"],
                    freeze_vision_tower=False)
    model = add_lora(load_base_model(base, tokenizer), settings, tokenizer).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero: give the adapter something to merge
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.normal_(0, 0.5)
    batch = Collator(Checkpoint.open(base), tokenizer)(
        [Example(scene(2)[0], "a", "ask", build_prompt("ask", "Is there a polyp?"), "Yes.", "s")])
    with torch.no_grad():
        unmerged = model(**batch).logits
        with model.disable_adapter():
            plain = model(**batch).logits
        merged_model = model.merge_and_unload()
        merged = merged_model(**batch).logits
        merged_model.save_pretrained(tmp_path / "merged")
        reloaded = Florence2ForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()(**batch).logits
    assert not torch.allclose(unmerged, plain, atol=1e-3)   # the adapter does something
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(reloaded, unmerged, atol=1e-4, rtol=1e-4)


def test_missing_task_tokens_are_added_and_only_their_rows_train(small_checkpoint, tmp_path):
    # the public Florence-2 has no <MedVQA> etc.: training adds them, grows the embeddings,
    # trains those rows only, and the merged checkpoint knows them
    from transformers import Florence2ForConditionalGeneration

    base = tmp_path / "base"
    tok_json = json.loads((small_checkpoint / "tokenizer.json").read_text())
    tok_json["added_tokens"] = [t for t in tok_json["added_tokens"] if t["content"] not in NEW_TASK_TOKENS]
    model = Florence2ForConditionalGeneration.from_pretrained(small_checkpoint)
    model.resize_token_embeddings(model.get_input_embeddings().weight.shape[0] - len(NEW_TASK_TOKENS))
    model.save_pretrained(base)
    for f in small_checkpoint.iterdir():
        if f.suffix == ".json" and f.name not in ("config.json", "generation_config.json"):
            (base / f.name).write_text(f.read_text())
    (base / "tokenizer.json").write_text(json.dumps(tok_json))
    old_rows = model.get_input_embeddings().weight.detach().clone()

    cfg = _config(base, tmp_path / "out", [{"kind": "synthetic", "params": {
        "n_images": 2, "width": 96, "height": 72, "tasks": ["ask", "count"], "qa_per_image": 1}}], max_steps=3)
    out = run(cfg)
    record = json.loads((out / "training_record.json").read_text())
    assert record["added_tokens"] == [t for t in NEW_TASK_TOKENS]
    merged = Florence2ForConditionalGeneration.from_pretrained(out).get_input_embeddings().weight.detach()
    assert merged.shape[0] == old_rows.shape[0] + len(NEW_TASK_TOKENS)
    torch.testing.assert_close(merged[: old_rows.shape[0]], old_rows)  # the old vocabulary untouched
    r = Session(out, backend="torch").ask(scene(0)[0], "Is there a polyp?", max_new_tokens=4)
    assert r.task == "ask"


# ---------------------------------------------------------------------------------- CLI, resume

def test_cli_train_and_resume(small_checkpoint, tmp_path):
    # `gi-sdk train --config` runs a recipe; a second run resumes from the trainer checkpoint
    from gi_sdk.cli import main

    recipe = {"base": str(small_checkpoint), "output_dir": str(tmp_path / "out"), "lora": "r8-dropout",
              "sources": [{"kind": "synthetic", "params": {"n_images": 2, "width": 96, "height": 72,
                                                           "tasks": ["detect"]}}],
              "max_steps": 2, "save_steps": 2, "batch_size": 2, "progress": False, "device": "cpu"}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    assert main(["train", "--config", str(tmp_path / "recipe.yaml")]) == 0
    assert (tmp_path / "out" / "checkpoints" / "checkpoint-2").is_dir()

    # a marker in the saved trainer state: only a run that really resumed carries it on
    state_file = tmp_path / "out" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"step": 2, "loss": 123.0, "epoch": state["epoch"]})
    state_file.write_text(json.dumps(state))
    recipe.update(max_steps=4, resume_from_checkpoint=True)
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))
    assert main(["train", "--config", str(tmp_path / "recipe.yaml")]) == 0
    record = json.loads((tmp_path / "out" / "training_record.json").read_text())
    assert {"step": 2, "loss": 123.0} in record["losses"]
    state = json.loads((tmp_path / "out" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    Session(tmp_path / "out", backend="torch")
