"""The seed papers' evaluation extras (expert-role prefix, swapped-image ablation, nonsense
questions) and their zero-case / parse-failure counts, run through ``gi-sdk eval`` on a tiny
decoder-only model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gi_sdk.json_answer import parse_json_answer
from gi_sdk.train.ablations import EXPERT_ROLE, swap_images, with_role
from gi_sdk.train.examples import Example
from gi_sdk.tasks import build_prompt


def _examples():
    frames = [np.full((24 + 8 * k, 32, 3), 40 * k, np.uint8) for k in range(3)]   # three sizes, three shades
    return [Example(f, f"img{k}", task, build_prompt(task, text), f"target{k}", "s")
            for k, f in enumerate(frames) for task, text in (("ask", "Is there a polyp?"), ("count", "polyp"))]


def test_swapped_images_put_every_example_on_another_image_of_its_own_size():
    examples = _examples()
    swapped = swap_images(examples, lambda image: image, seed=3)
    for before, after in zip(examples, swapped):
        assert after.image.shape == before.image.shape                       # coordinates stay comparable
        assert after.image[0, 0, 0] != before.image[0, 0, 0]                 # never its own image
        assert (after.image_id, after.task, after.prompt, after.target) == \
            (before.image_id, before.task, before.prompt, before.target)    # the truth is its own
    same_image = [a.image for a in swapped if a.image_id == "img0"]
    assert np.array_equal(same_image[0], same_image[1])                      # one donor per image
    with pytest.raises(ValueError, match="two images"):
        swap_images(examples[:2], lambda image: image)


def test_role_prefix_goes_on_questions_only():
    out = with_role(_examples())
    assert out[0].prompt == build_prompt("ask", f"{EXPERT_ROLE} Is there a polyp?")
    assert out[1].prompt == build_prompt("count", "polyp")   # a class name stays a class name


@pytest.mark.slow
def test_eval_reports_the_extras_with_zero_cases_and_parse_failures(tmp_path):
    pytest.importorskip("llguidance")
    pytest.importorskip("peft")
    from gi_sdk.cli import main
    from gi_sdk.train.tiny_vlm import build_tiny_vlm

    model = build_tiny_vlm(tmp_path / "llava", "llava")
    data = tmp_path / "data.yaml"
    data.write_text(json.dumps({"sources": [{"kind": "synthetic", "params": {
        "seed": 5, "n_images": 3, "width": 96, "height": 72, "tasks": ["point", "ask"], "qa_per_image": 1}}]}))
    out, samples = tmp_path / "report.json", tmp_path / "samples.jsonl"
    assert main(["eval", str(model), "--data", str(data), "--out", str(out), "--samples", str(samples),
                 "--max-new-tokens", "24", "--role-prefix", "--swapped-images", "--nonsense", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["role_prefix"] == EXPERT_ROLE
    asked = [json.loads(line) for line in samples.read_text().splitlines()]
    assert all(r["input"].startswith(EXPERT_ROLE) for r in asked if r["task"] == "ask")
    swapped = report["ablations"]["swapped_images"]
    assert {t: b["n"] for t, b in swapped["tasks"].items()} == {t: b["n"] for t, b in report["tasks"].items()}
    for block in (report["overall"], swapped["overall"]):   # every report counts both
        assert {"zero_cases", "parse_failures", "parse_failure_rate"} <= set(block)
    # the point block counts what the answers were: unparsed ones, and empty ones (zero cases)
    points = [r for r in asked if r["task"] == "point"]
    assert report["tasks"]["point"]["parse_failures"] == sum(parse_json_answer(r["answer"]) is None for r in points)
    assert report["tasks"]["point"]["zero_cases"] == sum(not r["boxes"] for r in points)
    nonsense = report["ablations"]["nonsense"]
    assert (nonsense["images"], nonsense["n"], nonsense["errors"]) == (3, 9, 0)
    assert 0.0 <= nonsense["affirmed_rate"] <= 1.0 and set(nonsense["by_question"]) == {
        "ask: Is there an elephant in the image?", "ask: How many cars are there in the image?", "count: elephant"}
