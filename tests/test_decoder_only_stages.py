"""The two-stage recipe in one config (align on captions with the projector trained, then the
instruction tasks) on a tiny LLaVA, and QLoRA's refusal where bitsandbytes or a GPU is missing."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("llguidance")
torch = pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.errors import ConfigError, MissingDependencyError  # noqa: E402
from gi_sdk.train import TrainConfig, run  # noqa: E402
from gi_sdk.train.tiny_vlm import build_tiny_vlm  # noqa: E402

from train_data import scene  # noqa: E402

pytestmark = pytest.mark.slow


def _captions(root):
    """A prefix / suffix caption set (the ROCO stand-in): four scenes, one caption each."""
    folder = root / "captions" / "train"
    folder.mkdir(parents=True)
    with open(folder / "annotations.jsonl", "w") as f:
        for k in range(4):
            cv2.imwrite(str(folder / f"{k}.png"), scene(k)[0])
            f.write(json.dumps({"image": f"{k}.png", "prefix": "<CAPTION>",
                                "suffix": "A pink round polyp on red mucosa."}) + "\n")
    return root / "captions"


def test_two_stages_in_one_config(tmp_path):
    from safetensors.numpy import load_file

    base = build_tiny_vlm(tmp_path / "base", "llava")
    recipe = dict(
        base=str(base), output_dir=str(tmp_path / "out"), lora="vision-frozen-r16", learning_rate=5e-3,
        batch_size=4, val_split=0.0, logging_steps=5, save_steps=10_000, progress=False, device="cpu", seed=0,
        stages=[
            {"name": "align", "sources": [{"kind": "jsonl", "path": str(_captions(tmp_path))}],
             "train_projector": True, "max_steps": 10},
            {"name": "instruct", "max_steps": 10, "sources": [{"kind": "synthetic", "params": {
                "n_images": 4, "width": 96, "height": 72, "tasks": ["point", "count"]}}]},
        ])
    out = run(TrainConfig.from_dict(recipe))

    record = json.loads((out / "training_record.json").read_text())
    assert [s["name"] for s in record["stages"]] == ["align", "instruct"]
    align, instruct = record["stages"]
    assert align["data"]["train_by_task"] == {"caption": 4} and align["lora"]["train_projector"] is True
    assert set(instruct["data"]["train_by_task"]) == {"point", "count"} and instruct["lora"]["train_projector"] is False
    assert instruct["config"]["base"] == str(out / "stages" / "align")   # stage 2 starts from stage 1's model
    assert record["config"]["stages"] == recipe["stages"]                 # the whole recipe is on record

    before = load_file(str(base / "model.safetensors"))
    aligned = load_file(str(out / "stages" / "align" / "model.safetensors"))
    moved = {k for k in before if not np.array_equal(before[k], aligned[k])}
    assert any("multi_modal_projector" in k for k in moved)    # stage 1 trained the projector in full
    assert not any("vision_tower" in k for k in moved)         # and left the frozen tower alone
    assert any("language_model" in k for k in moved)           # its adapters merged into the decoder

    r = Session(out, backend="torch").count(scene(0)[0], "polyp", max_new_tokens=40)
    assert r.task == "count" and r.image_size == (scene(0)[0].shape[1], scene(0)[0].shape[0])


def test_a_stage_may_not_move_the_base_or_output():
    with pytest.raises(ValueError, match="cannot differ between stages"):
        TrainConfig(base="b", output_dir="o", stages=[{"output_dir": "elsewhere"}])


def test_qlora_is_refused_clearly_without_bitsandbytes_and_a_gpu(tmp_path):
    # refused before anything is read or loaded: the source path does not even exist
    config = TrainConfig(base=str(tmp_path / "no-model"), output_dir=str(tmp_path / "out"), quantization="4bit",
                         device="cpu", sources=[{"kind": "jsonl", "path": str(tmp_path / "nothing")}])
    with pytest.raises((MissingDependencyError, ConfigError), match=r"QLoRA.*(bitsandbytes|CUDA GPU)"):
        run(config)
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
def test_qlora_trains_and_merges_into_the_full_precision_base(tmp_path):
    pytest.importorskip("bitsandbytes")
    if not torch.cuda.is_available():
        pytest.skip("QLoRA needs a CUDA GPU")
    base = build_tiny_vlm(tmp_path / "base", "llava")
    out = run(TrainConfig(base=str(base), output_dir=str(tmp_path / "out"), quantization="4bit", max_steps=4,
                          batch_size=2, val_split=0.0, progress=False, sources=[{"kind": "synthetic", "params": {
                              "n_images": 2, "width": 96, "height": 72, "tasks": ["point"]}}]))
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert Session(out, backend="torch").run(scene(0)[0], "point", "polyp", max_new_tokens=16).task == "point"
