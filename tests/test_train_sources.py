"""Data sources: every kind on small fixture data, bad records counted with their reason,
the skip-share limit, targets through the shared codec, and the split by image."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from gi_sdk.decode import build_result
from gi_sdk.cli import main
from gi_sdk.errors import MissingDependencyError, SourceError
from gi_sdk.tasks import get_task
from gi_sdk.train.config import SourceSpec
from gi_sdk.train.examples import Example
from gi_sdk.train.sources import load_sources
from gi_sdk.train.split import apply_weights, split_by_image

from train_data import all_sources, scene


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    specs, expect = all_sources(root)
    return {s["name"]: SourceSpec(**s) for s in specs}, expect


@pytest.mark.parametrize("name, tasks, images, good", [
    ("synthetic", {"detect", "count", "point", "ground", "segment", "ask"}, 3, 3),  # one scene, every task
    ("vqa", {"ask"}, 4, 8),                # Kvasir-VQA-x1 records -> <MedVQA>, 2 questions an image
    ("explanations", {"explain"}, 4, 4),   # answer + explanation -> <MedVQA_EXPLAIN>
    ("seg", {"segment"}, 4, 4),            # Kvasir-SEG masks -> polygons (one mask a .png)
    ("points", {"point", "count", "detect"}, 4, 4),  # MedMultiPoints fields, 3 tasks a record
    ("prefix", {"detect", "ask"}, 5, 10),  # {"image", "prefix", "suffix"} layout, train + valid
])
def test_each_source_yields_and_reports(data, name, tasks, images, good):
    specs, expect = data
    examples, report = load_sources([specs[name]], max_skip_share=0.6)
    (source,) = report.sources
    assert set(source.by_task) == tasks
    assert source.images == images
    assert source.skipped == expect[name]                 # every bad record counted, with its reason
    assert source.records - source.n_skipped == good      # ... and every other record used
    assert source.examples == len(examples) == sum(source.by_task.values())
    assert all(e.source == name and e.prompt for e in examples)
    assert len(source.samples) == source.n_skipped        # the user sees which records and why


@pytest.mark.parametrize("name", ["vqa", "seg", "points", "prefix"])
def test_too_many_skips_stop_the_run(data, name):
    # a source that loses more than the allowed share of its records is a data problem to fix,
    # not something to train through; the message says what was skipped and why
    specs, _ = data
    with pytest.raises(SourceError, match="skipped .* records .*max_skip_share"):
        load_sources([specs[name]], max_skip_share=0.05)


@pytest.mark.parametrize("spec, message", [
    (SourceSpec("no-such-kind", path="x"), "unknown source kind"),        # typo in a kind
    (SourceSpec("kvasir-vqa-x1"), "needs a path"),                        # path forgotten
    (SourceSpec("kvasir-vqa-x1", path="/nonexistent/v.jsonl"), "does not exist"),  # wrong path: no skips, an error
])
def test_misconfigured_source_is_an_error(spec, message):
    with pytest.raises(SourceError, match=message):
        load_sources([spec])


def test_targets_parse_back_with_the_runtime_decoder(data):
    # what a model is taught to write must be what Session reads back: the same decoder
    # (gi_sdk.decode.build_result, which Session.run calls) turns each target into a Result
    specs, _ = data
    examples, _ = load_sources(list(specs.values()), max_skip_share=0.6)
    for e in examples:
        task = get_task(e.task)
        r = build_result(task, e.target, (96, 72))
        n_locs = e.target.count("<loc_")
        if task.name in ("detect", "count", "ground"):
            assert len(r.boxes) == n_locs // 4, e.target
        if task.name == "count":
            assert r.count == n_locs // 4
        if task.name == "point":
            assert len(r.points) == n_locs // 2
        if task.name == "segment":
            assert r.polygons
        if task.name == "explain":
            assert r.explanation and r.answer


def test_synthetic_targets_follow_the_truth(data):
    # detection: one "polyp<loc>x4" per instance; count/point: one entry per polyp
    specs, _ = data
    examples, _ = load_sources([specs["synthetic"]])
    by = {(e.image_id, e.task): e for e in examples}
    for (image_id, task), e in by.items():
        if task == "count":
            assert e.target.count("polyp") == by[(image_id, "point")].target.count("polyp")


def test_synthetic_frames_per_scene_gives_distinct_views_of_fewer_scenes():
    spec = lambda **kw: SourceSpec("synthetic", params={"n_images": 6, "width": 64, "height": 48,  # noqa: E731
                                                        "tasks": ["detect"], **kw})
    many, _ = load_sources([spec(frames_per_scene=3)])
    frames = [e.image for e in many]
    assert len(frames) == 6 and len({e.image_id for e in many}) == 6
    assert all(not np.array_equal(a, b) for i, a in enumerate(frames) for b in frames[i + 1:])
    with pytest.raises(ValueError, match="frames_per_scene"):
        load_sources([spec(frames_per_scene=0)])


def test_synthetic_min_scene_polyps_takes_only_crowded_scenes_and_says_what_it_passed_over():
    from gi_sdk.synthetic import SyntheticEndoscope
    from gi_sdk.train.examples import SourceReport
    from gi_sdk.train.source_synthetic import _next_scene

    scope = SyntheticEndoscope(seed=59, width=64, height=48)
    report = SourceReport("crowded", "synthetic")
    start, ranges = 0, []
    for _ in range(5):
        lo, hi = _next_scene(scope, start, 3, report)
        assert lo >= start and len(scope.describe_segment(lo).polyps) >= 3
        # every scene between the last one taken and this one holds fewer: passed over, counted
        passed = []
        while start < lo:
            passed.append(len(scope.describe_segment(start).polyps))
            start = scope.segment_range(start)[1]
        assert all(n < 3 for n in passed)
        ranges.append((lo, hi, len(passed)))
        start = hi
    assert report.filtered == {"scene with fewer than 3 polyps": sum(r[2] for r in ranges)} and report.filtered
    assert report.records == 0 and report.n_skipped == 0   # passed over is not bad data
    # describe_segment is the painted segment's own description
    assert scope.describe_segment(ranges[0][0]).polyps == scope.segment(ranges[0][0]).polyps

    spec = SourceSpec("synthetic", params={"n_images": 4, "width": 64, "height": 48, "tasks": ["count"],
                                           "seed": 59, "frames_per_scene": 2, "min_scene_polyps": 3})
    examples, data = load_sources([spec])
    assert len(examples) == 4 and data.sources[0].filtered["scene with fewer than 3 polyps"] > 0
    assert data.to_json()["sources"][0]["filtered"] == data.sources[0].filtered
    with pytest.raises(ValueError, match="min_scene_polyps"):
        load_sources([SourceSpec("synthetic", params={**spec.params, "min_scene_polyps": 4})])


def test_synthetic_polygon_points_caps_each_segment_polygon():
    spec = lambda **kw: SourceSpec("synthetic", params={"n_images": 8, "width": 320, "height": 256,  # noqa: E731
                                                        "tasks": ["segment"], "seed": 4, **kw})
    full, _ = load_sources([spec()])
    short, _ = load_sources([spec(polygon_points=6)])
    assert [e.image_id for e in full] == [e.image_id for e in short] and full
    seg = get_task("segment")
    for long_one, e in zip(full, short):
        polygons = [p for instance in build_result(seg, e.target, (320, 256)).polygons for p in instance]
        assert polygons and all(3 <= len(p) <= 6 for p in polygons)
        assert e.target.count("<loc_") <= long_one.target.count("<loc_")


def test_box_and_point_targets_list_instances_left_to_right():
    # one order for every target, so the first instance a model writes has one right answer
    from gi_sdk.train.targets import count_target, detect_target, ground_target, point_target

    size = (1000, 1000)
    boxes = [[700, 100, 800, 200], [100, 500, 200, 600], [400, 300, 500, 400], [100, 100, 200, 200]]
    labels = ["instrument", "polyp", "polyp", "polyp"]
    got = build_result(get_task("detect"), detect_target(boxes, labels, size), size)
    assert np.floor(got.boxes[:, 0]).tolist() == [100, 100, 400, 700]          # left to right ...
    assert np.floor(got.boxes[:2, 1]).tolist() == [100, 500]                   # ... top first on a tie
    assert list(got.labels) == ["polyp", "polyp", "polyp", "instrument"]   # labels follow their box
    for task, target in [("count", count_target(boxes, "polyp", size)),
                         ("ground", ground_target("polyp", boxes, size))]:
        assert np.floor(build_result(get_task(task), target, size).boxes[:, 0]).tolist() == [100, 100, 400, 700]
    points = build_result(get_task("point"), point_target([[600, 10], [50, 900], [50, 20]], "polyp", size), size)
    assert np.floor(points.points).tolist() == [[50, 20], [50, 900], [600, 10]]


def _ex(image_id, task="ask", source="s"):
    return Example(None, image_id, task, "p", "t", source)


@pytest.mark.parametrize("n_images, share, n_val", [
    (10, 0.2, 2),    # the default 80/20
    (2, 0.2, 1),     # tiny sets still get one validation image
    (1, 0.2, 0),     # a single image cannot be split: all for training
    (10, 0.0, 0),    # val_split 0: train on everything
])
def test_split_by_image_never_shares_an_image(n_images, share, n_val):
    examples = [_ex(f"i{k}", task) for k in range(n_images) for task in ("ask", "detect", "count")]
    train, val = split_by_image(examples, share, seed=1)
    train_ids, val_ids = {e.image_id for e in train}, {e.image_id for e in val}
    assert not train_ids & val_ids
    assert len(val_ids) == n_val and len(train) + len(val) == len(examples)
    assert split_by_image(examples, share, seed=1) == (train, val)  # seeded: same split every run


def test_split_keeps_one_image_on_one_side_across_sources(data):
    # Kvasir-VQA-x1 and explanation records name the same images: they must land together
    specs, _ = data
    examples, _ = load_sources([specs["vqa"], specs["explanations"]], max_skip_share=0.6)
    train, val = split_by_image(examples, 0.5, seed=0)
    assert not {e.image_id for e in train} & {e.image_id for e in val}
    assert {e.task for e in val} == {"ask", "explain"}


@pytest.mark.parametrize("source_w, task_w, expected", [
    ({}, {}, 100),                       # no weights: every example once
    ({"s": 2.0}, {}, 200),               # a source weighted 2 is seen twice
    ({}, {"ask": 0.0}, 0),               # a task weighted 0 is left out
    ({"s": 0.5}, {}, (35, 65)),          # fractional weights sample (about half)
])
def test_mixture_weights(source_w, task_w, expected):
    out = apply_weights([_ex(f"i{k}") for k in range(100)], source_w, task_w, seed=0)
    if isinstance(expected, tuple):
        assert expected[0] <= len(out) <= expected[1]
    else:
        assert len(out) == expected


def test_json_list_records(tmp_path):
    # Kvasir-VQA-x1 exports also come as one JSON list; a non-object entry is a counted skip
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), scene(0)[0])
    rows = [{"img_id": "a", "question": "Is there a polyp?", "answer": "Yes."}] * 3 + ["junk"]
    (tmp_path / "vqa.json").write_text(json.dumps(rows))
    examples, report = load_sources([SourceSpec("kvasir-vqa-x1", path=str(tmp_path / "vqa.json"))], 0.3)
    assert len(examples) == 3 and report.sources[0].skipped == {"unparseable record": 1}


def test_parquet_without_pyarrow_names_the_fix(tmp_path):
    # parquet is optional: without pyarrow the error says what to install, not an ImportError trace
    if importlib.util.find_spec("pyarrow") is not None:
        pytest.skip("pyarrow is installed here")
    (tmp_path / "vqa.parquet").write_bytes(b"PAR1")
    with pytest.raises(MissingDependencyError, match="pip install pyarrow"):
        load_sources([SourceSpec("kvasir-vqa-x1", path=str(tmp_path / "vqa.parquet"))])


@pytest.mark.parametrize("good_base, message", [
    (True, "max_skip_share"),      # data that skips too much: the reasons, before the model loads
    (False, "does not exist"),     # a wrong base path: said at once, before the data is read
])
def test_cli_reports_bad_input_without_a_traceback(data, tiny_checkpoint, tmp_path, capsys, good_base, message):
    # `gi-sdk train` turns user mistakes into exit code 2 and a one-line reason
    specs, _ = data
    seg = specs["seg"]
    recipe = {"base": str(tiny_checkpoint if good_base else tmp_path / "missing"),
              "output_dir": str(tmp_path / "out"), "sources": [{"kind": seg.kind, "path": seg.path}]}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    assert main(["train", "--config", str(tmp_path / "r.yaml")]) == 2
    assert message in capsys.readouterr().err
