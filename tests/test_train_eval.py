"""Evaluation: metrics against hand-computed values, scoring of model text against targets,
``gi-sdk eval`` end to end on the tiny checkpoint, ``--predictions`` files, Medico 2025
submission files, and remote-code LoRA adapters renamed for the native model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("sacrebleu")
pytest.importorskip("pycocotools")

from gi_sdk.result import Result  # noqa: E402
from gi_sdk.train import metrics as M  # noqa: E402
from gi_sdk.train import text_metrics  # noqa: E402
from gi_sdk.train.config import SourceSpec  # noqa: E402
from gi_sdk.train.json_predictions import score_records  # noqa: E402
from gi_sdk.train.scoring import Scored, is_parse_failure, score_all, truth_of  # noqa: E402
from gi_sdk.train.sources import load_sources  # noqa: E402


def _box(x1, y1, x2, y2):
    return np.array([[x1, y1, x2, y2]], np.float32)


# ----------------------------------------------------------------------------- box metrics

@pytest.mark.parametrize("pred,true,expected", [
    # identical box: every IoU threshold matches
    ([_box(0, 0, 10, 10)], [_box(0, 0, 10, 10)], {"map": 1.0, "map50": 1.0, "map75": 1.0}),
    # IoU 0.64 (8x8 inside 10x10): matched at thresholds .50 .55 .60 of the ten -> mAP 0.3
    ([_box(0, 0, 8, 8)], [_box(0, 0, 10, 10)], {"map": 0.3, "map50": 1.0, "map75": 0.0}),
    # a true box and no prediction: a miss, 0 (not None)
    ([np.zeros((0, 4))], [_box(0, 0, 10, 10)], {"map": 0.0, "map50": 0.0, "map75": 0.0}),
    # predictions but nothing true anywhere: COCO has nothing to score -> None, never 0 or 1
    ([_box(0, 0, 8, 8)], [np.zeros((0, 4))], {"map": None, "map50": None, "map75": None}),
    # two images, one truth each; image 1 has its hit then a false positive, image 2 nothing:
    # precision 1 up to recall 0.5, then nothing -> 51 of COCO's 101 recall points = 0.50495
    ([np.concatenate([_box(0, 0, 10, 10), _box(50, 50, 60, 60)]), np.zeros((0, 4))],
     [_box(0, 0, 10, 10), _box(0, 0, 10, 10)], {"map": 51 / 101, "map50": 51 / 101, "map75": 51 / 101}),
])
def test_box_map_against_hand_computed_coco_values(pred, true, expected):
    labels = lambda boxes: [["polyp"] * len(b) for b in boxes]  # noqa: E731
    got = M.box_map(pred, labels(pred), true, labels(true))
    for key, value in expected.items():
        assert got[key] == (None if value is None else pytest.approx(value, abs=1e-6)), key


def test_box_map_scores_each_category_apart():
    # the instrument box is perfect, the polyp box has the wrong place: mean of 1 and 0
    pred = [np.concatenate([_box(0, 0, 10, 10), _box(40, 40, 50, 50)])]
    true = [np.concatenate([_box(0, 0, 10, 10), _box(0, 0, 10, 10)])]
    got = M.box_map(pred, [["instrument", "polyp"]], true, [["instrument", "polyp"]])
    assert got["map50"] == pytest.approx(0.5)


def test_mean_best_iou_and_localization_leave_out_or_fail_empty_samples():
    pred = [np.concatenate([_box(0, 0, 8, 8), _box(50, 50, 60, 60)]), np.zeros((0, 4)), _box(0, 0, 10, 10)]
    true = [_box(0, 0, 10, 10), _box(0, 0, 1, 1), np.zeros((0, 4))]
    got = M.mean_best_iou(pred, true)
    # sample 1: best IoUs 0.64 and 0 -> 0.32; samples 2 and 3 have an empty side: zero cases
    assert got == {"mean_best_iou": pytest.approx(0.32), "n": 1, "zero_cases": 2}
    loc = M.localization_accuracy(pred, true)
    # sample 1: first box IoU 0.64 >= 0.5 right; sample 2: no prediction, wrong; sample 3: no truth, left out
    assert loc == {"n": 2, "accuracy": 0.5}


# ------------------------------------------------------------------- counts, points, masks

def test_count_scores_and_presence():
    assert M.count_scores([2, 0, 1, 4], [2, 1, 1, 1]) == {"n": 4, "mae": 1.0, "mse": 2.5, "exact": 0.5}
    assert M.count_scores([], []) == {"n": 0, "mae": None, "mse": None, "exact": None}
    # presence: 2 vs 2 yes/yes, 0 vs 1 no/yes, 0 vs 0 no/no, 3 vs 1 yes/yes
    assert M.presence_accuracy([2, 0, 0, 3], [2, 1, 0, 1]) == 0.75
    with pytest.raises(ValueError):
        M.count_scores([1], [1, 2])


def test_point_scores_follow_the_medmultipoints_rules():
    pred = [np.array([[0, 0], [50, 0]]), np.zeros((0, 2)), np.array([[0, 0], [1, 1]])]
    true = [np.array([[3, 4]]), np.array([[1, 1]]), np.array([[0, 0]])]
    got = M.point_scores(pred, true)
    far = np.hypot(47, 4)  # (50, 0) to (3, 4)
    # sample 1: nearest distances 5 and 47.2 -> accuracy 0.5; sample 3: 0 and 1.41 -> 1.0
    assert got["match_accuracy"] == pytest.approx(0.75)
    assert got["mean_distance"] == pytest.approx(((5 + far) / 2 + np.sqrt(2) / 2) / 2)
    assert got["rmse"] == pytest.approx((np.sqrt((25 + far ** 2) / 2) + np.sqrt(1.0)) / 2)
    assert (got["n"], got["zero_cases"]) == (2, 1)  # sample 2 has no predicted point
    # one-to-one: one true point can be matched once -> 1 of max(2, 1) in both samples
    assert got["match_accuracy_one_to_one"] == pytest.approx(0.5)
    assert got["mean_distance_one_to_one"] == pytest.approx(2.5)
    empty = M.point_scores([np.zeros((0, 2))], [np.zeros((0, 2))])
    assert empty["match_accuracy"] is None and empty["zero_cases"] == 1


def test_seg_iou_per_category_and_empty_masks():
    half = np.zeros((4, 4), bool)
    half[:2] = True
    got = M.seg_iou([half, np.zeros((4, 4), bool), half], [np.ones((4, 4), bool), np.zeros((4, 4), bool), half],
                    ["polyp", "polyp", "instrument"])
    # polyp: IoU 0.5, and 1 for "nothing there, nothing drawn"; instrument: 1; mean of means
    assert got["per_category"] == {"instrument": {"n": 1, "mean_iou": 1.0}, "polyp": {"n": 2, "mean_iou": 0.75}}
    assert got["mean_iou"] == pytest.approx(0.875)
    assert M.seg_iou([], [], [])["mean_iou"] is None


@pytest.mark.parametrize("pred,true,expected", [
    (["Yes,  one polyp."], ["yes, one polyp"], 1.0),   # case, spaces, end punctuation ignored
    (["pink"], ["red"], 0.0),
    ([], [], None),                                     # no samples: undefined, not 0
])
def test_answer_accuracy(pred, true, expected):
    assert M.accuracy(pred, true) == expected


def test_yes_no_accuracy_counts_only_yes_no_questions():
    got = M.yes_no_accuracy(["Yes, one.", "No polyp.", "Pink"], ["Yes, there is.", "Yes.", "Red."])
    assert got == {"n": 2, "accuracy": 0.5}


# ------------------------------------------------------------------------------ text metrics

def test_text_metrics_against_hand_computed_values():
    # unigrams 3 of 4 shared -> ROUGE-1 0.75; bigrams 2 of 3 -> ROUGE-2 2/3; LCS 3 -> ROUGE-L 0.75
    r = text_metrics.rouge(["the polyp is red"], ["the polyp is pink"])
    assert r == {"rouge1": pytest.approx(0.75), "rouge2": pytest.approx(2 / 3), "rougeL": pytest.approx(0.75)}
    assert text_metrics.bleu(["the polyp is red"], ["the polyp is red"]) == pytest.approx(1.0)
    # BLEU is unsmoothed, as the Medico scorer: no 4-gram in common -> 0
    assert text_metrics.bleu(["the polyp is red"], ["the polyp is pink"]) == 0.0
    assert text_metrics.chrf_plus_plus(["a sessile polyp"], ["a sessile polyp"]) == pytest.approx(1.0)
    assert text_metrics.chrf_plus_plus(["xyz"], ["a sessile polyp"]) < 0.05
    empty = text_metrics.text_scores([], [])
    assert empty["n"] == 0 and empty["bleu"] is None and empty["rougeL"] is None
    with pytest.raises(ValueError):
        text_metrics.bleu(["a"], [])


def test_meteor_uses_wordnet_synonyms_when_it_is_installed():
    if text_metrics.meteor(["x"], ["x"]) is None:
        pytest.skip(text_metrics.wordnet_source())
    # 5 tokens all matched in one chunk: 1 - 0.5 * (1/5)^3
    assert text_metrics.meteor(["The polyp is red."], ["The polyp is red."]) == pytest.approx(0.996)
    # "huge" / "vast" share a WordNet synset: matched as synonyms; "small" is not
    assert text_metrics.meteor(["The polyp is huge."], ["The polyp is vast."]) == pytest.approx(0.996)
    assert text_metrics.meteor(["The polyp is small."], ["The polyp is vast."]) == pytest.approx(0.75)


def test_meteor_without_wordnet_is_none_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("GI_SDK_WORDNET", str(tmp_path))   # a folder without WordNet in it
    text_metrics._wordnet.cache_clear()
    try:
        assert text_metrics.meteor(["a polyp"], ["a polyp"]) is None
        assert "not a WordNet 3.0 dict folder" in text_metrics.wordnet_source()
        assert text_metrics.text_scores(["a polyp"], ["a polyp"])["meteor"] is None
    finally:
        monkeypatch.delenv("GI_SDK_WORDNET")
        text_metrics._wordnet.cache_clear()


# --------------------------------------------------------------- scoring model text vs targets

@pytest.mark.parametrize("task,text,failed", [
    ("count", "</s>polyp<loc_1><loc_2><loc_3><loc_4></s>", False),  # a box: fine
    ("count", "</s></s>", False),                                  # nothing: a zero case, not a failure
    ("count", "</s>polyp</s>", True),                              # a label without coordinates
    ("count", "</s><loc_1><loc_2></s>", True),                     # two coordinates make no box
    ("segment", "</s><poly></poly></s>", True),                      # a polygon with no coordinates
    ("segment", "</s><poly><loc_1><loc_2></poly></s>", False),      # one point: kept, as transformers does
    ("ask", "</s><loc_1> what</s>", False),                         # text answers never fail to parse
])
def test_parse_failures(task, text, failed):
    from gi_sdk.decode import build_result
    from gi_sdk.tasks import get_task

    result = build_result(get_task(task), text, (640, 480), raw_text=text)
    assert is_parse_failure(task, result) is failed


def test_text_block_scores_answers_explanations_and_stated_counts():
    from gi_sdk.decode import build_result
    from gi_sdk.tasks import get_task
    from gi_sdk.train.scoring import score_task

    def ask(question, pred, target, task="ask"):
        return Scored(task, question, build_result(get_task(task), pred, (64, 64)), truth_of(task, target, (64, 64)))

    block = score_task([
        ask("How many polyps are visible?", "There is one polyp.", "There are two polyps visible."),  # 1 for 2
        ask("How many polyps are visible?", "Pink.", "There are no polyps visible."),  # states none: -1 for 0
        ask("Is there a polyp?", "Yes, one polyp.", "Yes, one polyp."),                # not a count question
    ])
    assert block["stated_count"] == {"n": 2, "mae": 1.0, "mse": 1.0, "exact": 0.0}
    assert block["answer_accuracy"] == pytest.approx(1 / 3) and block["yes_no"] == {"n": 1, "accuracy": 1.0}
    explained = score_task([ask("Colour?", "Pink. Explanation: it is pink.", "Red. Explanation: it is pink.", "explain")])
    # the answer is wrong, the explanation right: scored apart
    assert explained["answer_accuracy"] == 0.0 and explained["explanation"]["rougeL"] == 1.0


@pytest.fixture(scope="module")
def synthetic_examples():
    examples, _ = load_sources([SourceSpec("synthetic", params={"n_images": 4, "seed": 77, "width": 160,
                                                                "height": 128, "qa_per_image": 2})])
    return examples


def _scored(examples, predict):
    out = []
    for ex in examples:
        from gi_sdk.train.evaluate import task_input

        size = (ex.image.shape[1], ex.image.shape[0])
        out.append(Scored(ex.task, task_input(ex.task, ex.prompt), predict(ex, size), truth_of(ex.task, ex.target, size)))
    return out


def test_a_model_that_writes_the_targets_scores_perfectly(synthetic_examples):
    # prediction = the target text parsed as model output: every metric must be at its best
    report = score_all(_scored(synthetic_examples, lambda ex, size: truth_of(ex.task, ex.target, size)))
    tasks, head = report["tasks"], report["overall"]["headline"]
    assert set(tasks) == {"detect", "count", "point", "ground", "segment", "ask"}
    assert head["polyp_presence_accuracy"] == 1.0 and head["polyp_count_exact"] == 1.0
    assert head["detection_map50"] == 1.0 and tasks["detect"]["map"] == 1.0
    assert head["segmentation_mean_iou"] == 1.0 and head["answer_bleu"] == pytest.approx(1.0)
    assert tasks["point"]["points"]["match_accuracy"] == 1.0 and tasks["count"]["count"]["mae"] == 0.0
    assert tasks["detect"]["best_iou"]["mean_best_iou"] == 1.0 and tasks["count"]["localization"]["accuracy"] == 1.0
    assert tasks["ask"]["answer_accuracy"] == 1.0 and tasks["ask"]["rougeL"] == 1.0
    assert report["overall"]["parse_failures"] == 0


def test_a_model_that_says_nothing_scores_zero_and_counts_zero_cases(synthetic_examples):
    report = score_all(_scored(synthetic_examples, lambda ex, size: Result.empty(ex.task, size)))
    tasks = report["tasks"]
    assert report["overall"]["zero_cases"] == report["overall"]["n"] == len(synthetic_examples)
    assert tasks["detect"]["map50"] == 0.0 and tasks["ask"]["bleu"] == 0.0
    assert tasks["segment"]["seg_iou"]["mean_iou"] == 0.0
    # frames without polyps: "none" is right there, so presence is the share of empty frames
    counts = [len(truth_of("count", ex.target, (160, 128))) for ex in synthetic_examples if ex.task == "count"]
    assert tasks["count"]["presence_accuracy"] == pytest.approx(np.mean([c == 0 for c in counts]))


# ------------------------------------------------------------------------- gi-sdk eval, e2e

def test_eval_cli_end_to_end_on_the_tiny_checkpoint(tiny_checkpoint, tmp_path):
    from gi_sdk.cli import main

    out, samples, medico = tmp_path / "report.json", tmp_path / "samples.jsonl", tmp_path / "medico"
    code = main(["eval", str(tiny_checkpoint), "--data", "synthetic", "--seed", "1000", "--n", "1",
                 "--max-new-tokens", "8", "--out", str(out), "--samples", str(samples),
                 "--medico", str(medico), "--quiet"])
    assert code == 0
    report = json.loads(out.read_text())
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert report["overall"]["n"] == len(lines) == report["data"]["examples_scored"] > 0
    assert sum(b["n"] for b in report["tasks"].values()) == len(lines)
    assert report["model"]["weights_sha256"] and len(report["model"]["weights_sha256"]) == 64
    assert report["data"]["report"]["sources"][0]["name"] == "synthetic-eval-seed1000"
    for block in report["tasks"].values():   # every block accounts for empty and unreadable outputs
        assert {"zero_cases", "parse_failures", "parse_failure_rate", "errors"} <= set(block)
    assert all(line["error"] is None for line in lines)
    for line in lines:  # one probability per instance, beside its box
        assert len(line["scores"]) == len(line["boxes"]) and all(0 <= v <= 1 for v in line["scores"])
    # the random model answers the ask questions: Task 1 has one prediction per question
    task1 = json.loads((medico / "predictions_1.json").read_text())
    assert len(task1["predictions"]) == sum(line["task"] == "ask" for line in lines)
    assert set(task1["public_scores"]) == {"bleu", "rouge1", "rouge2", "rougeL", "meteor"}


def test_eval_decodes_under_the_task_grammars_unless_told_not_to(tiny_checkpoint, tmp_path):
    """The random tiny model writes unparsable output on its own; under the grammars (the
    default, as in Session) nothing fails to parse, and the report says which decoding ran."""
    from gi_sdk.cli import main

    reports = {}
    for flag in ([], ["--unconstrained"]):
        out = tmp_path / f"report{len(flag)}.json"
        assert main(["eval", str(tiny_checkpoint), "--data", "synthetic", "--seed", "1000", "--n", "2",
                     "--max-new-tokens", "24", "--out", str(out), "--quiet", *flag]) == 0
        reports[bool(flag)] = json.loads(out.read_text())
    assert reports[False]["settings"]["decoding"] == "greedy, task grammars"
    assert reports[True]["settings"]["decoding"] == "greedy, unconstrained"
    assert reports[False]["overall"]["parse_failures"] == 0
    assert reports[True]["overall"]["parse_failures"] > 0


def test_eval_refuses_synthetic_seeds_the_model_trained_on(tiny_checkpoint, tmp_path):
    from gi_sdk.errors import SourceError
    from gi_sdk.train.evaluate import evaluate, synthetic_spec

    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    record = {"config": {"sources": [{"kind": "synthetic", "params": {"seed": 5, "width": 200, "height": 100,
                                                                     "n_images": 9}}]}}
    (model / "training_record.json").write_text(json.dumps(record))
    spec = synthetic_spec(model, seed=5, n_images=2)
    # scenes are drawn like training's (size from the record), but never from its seeds
    assert spec.params == {"seed": 5, "n_images": 2, "width": 200, "height": 100}
    with pytest.raises(SourceError, match="seed 5 was used to train"):
        evaluate(model, [spec])


def test_eval_data_file_errors_say_what_to_give(tmp_path):
    from gi_sdk.errors import SourceError
    from gi_sdk.train.evaluate import read_data_file

    path = tmp_path / "data.yaml"
    path.write_text("base: x\n")
    with pytest.raises(SourceError, match="'sources:' list"):
        read_data_file(path)
    path.write_text("sources:\n  - {kind: synthetic, params: {n_images: 3, seed: 9}}\nmax_skip_share: 0.1\n")
    specs, skip = read_data_file(path)
    assert specs[0].kind == "synthetic" and specs[0].params["seed"] == 9 and skip == 0.1


# -------------------------------------------------------------------- --predictions (JSON)

def _fence(value) -> str:
    return "```json\n" + json.dumps(value) + "\n```"


def test_predictions_file_scoring_by_the_papers_rules(tmp_path):
    from gi_sdk.cli import main

    records = [
        # count: 2 for 3, and an unparsed answer that costs the whole true count (2)
        {"response": _fence({"counts": 2, "label": "polyp"}), "labels": _fence({"counts": 3, "label": "polyp"})},
        {"response": "I think two", "labels": {"counts": 2, "label": "polyp"}},   # labels as the JSON value
        # points: distances 5 and far -> accuracy 0.5; an empty answer is a zero case
        {"response": _fence([{"point_2d": [0, 0], "label": "polyp"}, {"point_2d": [100, 100], "label": "polyp"}]),
         "labels": _fence([{"point_2d": [3, 4], "label": "polyp"}])},
        {"response": _fence([]), "labels": _fence([{"point_2d": [1, 1], "label": "polyp"}])},
        # boxes: IoU 0.64 -> mAP50 1, mAP75 0, mAP 0.3, mean best IoU 0.64
        {"response": _fence([{"bbox_2d": [0, 0, 8, 8], "label": "polyp"}]),
         "labels": "```JSON\n" + json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "polyp"}]) + "\n```"},
        # count + points: the dict answer counts as its "counts"
        {"response": _fence({"counts": 1, "point_2d": [[5, 5]], "label": "polyp"}),
         "labels": _fence({"counts": 1, "point_2d": [[5, 6]], "label": "polyp"})},
        {"response": "x", "labels": "no json here"},                              # skipped, and said so
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "report.json"
    assert main(["eval", "--predictions", str(path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    kinds = report["kinds"]
    assert kinds["count"]["count"] == {"n": 2, "mae": 1.5, "mse": 2.5, "exact": 0.0}
    assert kinds["count"]["parse_failures"] == 1 and kinds["count"]["parse_failure_rate"] == 0.5
    assert kinds["point"]["points"]["match_accuracy"] == 0.5 and kinds["point"]["points"]["zero_cases"] == 1
    assert kinds["box"]["boxes"]["map50"] == pytest.approx(1.0) and kinds["box"]["boxes"]["map75"] == 0.0
    assert kinds["box"]["boxes"]["map"] == pytest.approx(0.3)
    assert kinds["box"]["boxes"]["mean_best_iou"] == pytest.approx(0.64)
    assert kinds["count_point"]["count"]["exact"] == 1.0 and kinds["count_point"]["points"]["mean_distance"] == 1.0
    assert report["overall"]["n"] == 6 and sum(report["overall"]["skipped"].values()) == 1


def test_predictions_with_no_truth_of_a_kind_are_skipped_not_scored():
    got = score_records([{"response": "[]", "labels": "[]"}])
    assert got["kinds"] == {} and got["overall"]["n"] == 0 and got["overall"]["parse_failure_rate"] is None


# ------------------------------------------------------------------------------ Medico files

def _sample(task, image_id, question, answer, explanation=None, boxes=(), confidence=0.8):
    return {"task": task, "image_id": image_id, "input": question, "answer": answer, "explanation": explanation,
            "boxes": [list(b) for b in boxes], "labels": ["polyp"] * len(boxes), "confidence": confidence,
            "seconds": 0.5}


def test_medico_task1_and_task2_files_as_formats_md_describes(tmp_path):
    from gi_sdk.train.medico import write_from_samples

    samples = [
        _sample("ask", "img1", "Is there a polyp?", "Yes, one polyp."),
        _sample("ask", "img2", "How many polyps?", "None."),
        _sample("explain", "img1", "Is there a polyp?", "Yes.", "A raised red lesion in the upper left."),
        _sample("detect", "img1", None, "polyp", boxes=[(10, 20, 30, 40)]),
        _sample("explain", "img2", "What colour?", "Pink.", None),       # no explanation: left out, counted
    ]
    report = {"tasks": {"ask": {"bleu": 0.4567, "rouge1": 0.5, "rouge2": 0.25, "rougeL": 0.5, "meteor": None}}}
    got = write_from_samples(tmp_path, samples, report)
    task1 = json.loads((tmp_path / "predictions_1.json").read_text())
    assert task1["predictions"] == [
        {"index": 0, "img_id": "img1", "question": "Is there a polyp?", "answer": "Yes, one polyp."},
        {"index": 1, "img_id": "img2", "question": "How many polyps?", "answer": "None."}]
    assert task1["public_scores"] == {"bleu": 0.46, "rouge1": 0.5, "rouge2": 0.25, "rougeL": 0.5, "meteor": None}
    assert task1["total_time"] == 1.0 and task1["time_per_item"] == 0.5
    lines = [json.loads(line) for line in (tmp_path / "submission_task2.jsonl").read_text().splitlines()]
    assert lines == [{
        "val_id": 0, "img_id": "img1", "question": "Is there a polyp?", "answer": "Yes.",
        "textual_explanation": "A raised red lesion in the upper left.",
        "visual_explanation": [{"type": "bounding_box", "data": [[10.0, 20.0, 30.0, 40.0]], "description": "detect: polyp"}],
        "confidence_score": 0.8}]
    assert got["task2_questions"] == 1 and got["explain_without_explanation"] == 1


@pytest.mark.parametrize("kwargs,match", [
    ({"confidence": 1.5}, "confidence_score"),          # must be in [0, 1]
    ({"explanation": " "}, "textual_explanation"),      # mandatory
])
def test_medico_task2_record_checks_its_fields(kwargs, match):
    from gi_sdk.train.medico import task2_record

    args = {"val_id": 0, "img_id": "a", "question": "q?", "answer": "y", "explanation": "why", **kwargs}
    with pytest.raises(ValueError, match=match):
        task2_record(**args)


# ------------------------------------------------------------ remote-code adapter key map

# Native -> remote-code renames (the inverse of gi_sdk.train.remote_code, written from
# transformers' convert_florence2_original_pytorch_to_hf.py), to make a remote-style adapter.
_TO_REMOTE = [
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\b", "language_model.lm_head"),
    (r"^model\.vision_tower\.", "vision_tower."),
    (r"^model\.multi_modal_projector\.image_position_embed\b", "image_pos_embed"),
    (r"^model\.multi_modal_projector\.(image_proj_norm|visual_temporal_embed)\b", r"\1"),
    (r"\.convs\.(\d+)\.conv\b", r".convs.\1.proj"),
    (r"\.(spatial_block|channel_block)\.conv(1|2)\b", r".\1.conv\2.fn.dw"),
    (r"\.spatial_block\.norm1\b", ".spatial_block.window_attn.norm"),
    (r"\.channel_block\.norm1\b", ".channel_block.channel_attn.norm"),
    (r"\.(window_attn|channel_attn)\.(qkv|proj)\b", r".\1.fn.\2"),
    (r"\.(spatial_block|channel_block)\.norm2\b", r".\1.ffn.norm"),
    (r"\.ffn\.(fc1|fc2)\b", r".ffn.fn.net.\1"),
]


def _remote_name(key: str) -> str:
    import re

    prefix = "base_model.model."
    path = key[len(prefix):]
    for pattern, replacement in _TO_REMOTE:
        path = re.sub(pattern, replacement, path)
    return prefix + path


@pytest.mark.parametrize("remote,native", [
    # pairs as transformers' converter writes them
    ("vision_tower.convs.0.proj", "model.vision_tower.convs.0.conv"),
    ("vision_tower.blocks.1.0.spatial_block.conv1.fn.dw", "model.vision_tower.blocks.1.0.spatial_block.conv1"),
    ("vision_tower.blocks.1.0.spatial_block.window_attn.norm", "model.vision_tower.blocks.1.0.spatial_block.norm1"),
    ("vision_tower.blocks.1.0.spatial_block.window_attn.fn.qkv", "model.vision_tower.blocks.1.0.spatial_block.window_attn.qkv"),
    ("vision_tower.blocks.2.0.channel_block.channel_attn.fn.proj", "model.vision_tower.blocks.2.0.channel_block.channel_attn.proj"),
    ("vision_tower.blocks.2.0.channel_block.ffn.norm", "model.vision_tower.blocks.2.0.channel_block.norm2"),
    ("vision_tower.blocks.2.0.channel_block.ffn.fn.net.fc2", "model.vision_tower.blocks.2.0.channel_block.ffn.fc2"),
    ("language_model.model.decoder.layers.1.encoder_attn.k_proj", "model.language_model.decoder.layers.1.encoder_attn.k_proj"),
    ("language_model.model.encoder.layers.0.fc1", "model.language_model.encoder.layers.0.fc1"),  # text fc1 keeps its name
    ("language_model.lm_head", "lm_head"),
    ("image_pos_embed.row_embeddings", "model.multi_modal_projector.image_position_embed.row_embeddings"),
])
def test_remote_code_module_names_map_as_the_transformers_converter(remote, native, tiny_checkpoint):
    from safetensors import safe_open

    from gi_sdk.train.remote_code import native_module_name

    assert native_module_name(remote) == native
    assert _remote_name("base_model.model." + native) == "base_model.model." + remote  # the test's inverse agrees
    with safe_open(str(tiny_checkpoint / "model.safetensors"), "pt") as f:  # the name is the native model's
        assert native + ".weight" in set(f.keys())


def test_remote_code_adapter_merges_like_the_native_one(tiny_checkpoint, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from safetensors.torch import load_file, save_file

    from gi_sdk.errors import ModelLoadError
    from gi_sdk.train.merge import merge_adapter
    from gi_sdk.train.model import add_lora, load_base_model, load_tokenizer
    from gi_sdk.train.remote_code import is_remote_code_adapter

    base = tiny_checkpoint
    tokenizer, _ = load_tokenizer(base)
    targets = ["q_proj", "v_proj", "fc1", "fc2", "qkv", "proj", "conv", "lm_head"]  # text, vision, patch convs
    adapted = add_lora(load_base_model(base, tokenizer), dict(rank=4, alpha=8, dropout=0.0, target_modules=targets,
                                                              freeze_vision_tower=False), tokenizer)
    torch.manual_seed(0)
    for name, p in adapted.named_parameters():   # LoRA B starts at 0: make the adapter do something
        if "lora_" in name or "trainable_tokens" in name:
            p.data.normal_(0, 0.2)
    native_dir, remote_dir = tmp_path / "native", tmp_path / "remote"
    adapted.save_pretrained(native_dir)
    state = load_file(str(native_dir / "adapter_model.safetensors"))
    remote_state = {_remote_name(k): v for k, v in state.items()}
    assert any(".ffn.fn.net.fc1." in k for k in remote_state) and any(".convs.0.proj." in k for k in remote_state)
    assert is_remote_code_adapter(remote_state) and not is_remote_code_adapter(state)
    remote_dir.mkdir()
    save_file(remote_state, str(remote_dir / "adapter_model.safetensors"))
    config = json.loads((native_dir / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "v_proj", "fc1", "fc2", "qkv", "proj", "lm_head"]  # remote-code names
    (remote_dir / "adapter_config.json").write_text(json.dumps(config))

    expected = {k: v.detach().clone() for k, v in adapted.merge_and_unload().state_dict().items()}
    merged_remote = load_file(str(merge_adapter(base, remote_dir, tmp_path / "m_remote") / "model.safetensors"))
    merged_native = load_file(str(merge_adapter(base, native_dir, tmp_path / "m_native") / "model.safetensors"))
    base_weights = load_file(str(base / "model.safetensors"))
    assert merged_remote.keys() == merged_native.keys()
    for key, value in merged_remote.items():
        torch.testing.assert_close(value, merged_native[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(value, expected[key], msg=key)
    changed = [k for k in base_weights if k in merged_remote and not torch.equal(base_weights[k], merged_remote[k])]
    # the merge really moved vision, text and output weights (a no-op merge would pass the rest)
    for part in ("vision_tower.convs.0.conv", "window_attn.qkv", "ffn.fc1", "encoder.layers.0.self_attn.q_proj", "lm_head"):
        assert any(part in k for k in changed), part

    # an adapter that fits no Florence-2 module is refused, not merged silently
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({"base_model.model.language_model.model.nowhere.lora_A.weight": torch.zeros(4, 64)},
              str(bad / "adapter_model.safetensors"))
    (bad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        merge_adapter(base, bad, tmp_path / "m_bad")
