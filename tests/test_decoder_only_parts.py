"""The parts of the decoder-only VLM families, each alone: the JSON task table (the paper's
prompts, answer layout, Result), the JSON grammar, training batches in the runtime's layout,
LoRA targets on the families' module names, and the clear refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gi_sdk import json_tasks as J
from gi_sdk.errors import PromptError
from gi_sdk.json_answer import parse_json_answer


# ------------------------------------------------------------------------------- prompts

@pytest.mark.parametrize("task, text, expected", [
    # the paper's format sentences, verbatim: a model fine-tuned on its data saw exactly these
    ("point", "polyp", 'Point to every polyp in the image. Must output in this json format:'
                       '[{"point_2d": [x,y], "label": p_lbl},.., {..}].'),
    ("count", "instrument", 'Count all instrument in the image and provide their bounding boxes. Must output in json '
                            'exactly in this json format with same keys : {"counts": count, "bbox_2d": '
                            '[[x1,y1,x2,y2],.., [x1,y1,x2,y2]], "label": c_lbl, }.'),
    ("detect", None, 'Locate the objects with category name in the image. Must output in this json format:'
                     '[{"bbox_2d": [x1,y1,x2,y2], "label": b_lbl},.., {..}].'),
    # text tasks are asked in words, without Florence-2's task tokens
    ("ask", "  Is there a polyp? ", "Is there a polyp?"),
    ("caption", None, "What does the image describe?"),
])
def test_prompts_are_the_papers(task, text, expected):
    assert J.json_prompt(task, text) == expected


@pytest.mark.parametrize("task, text, match", [
    ("segment", "polyp", "no JSON form"),      # polygons have no JSON answer format
    ("point", None, "needs an input"),         # the registry's own input checks still apply
    ("detect", "polyp", "takes no input"),
])
def test_prompts_refused(task, text, match):
    with pytest.raises(PromptError, match=match):
        J.json_prompt(task, text)


# -------------------------------------------------------------------------- answers, Result

@pytest.mark.parametrize("task, kwargs, expected", [
    ("point", dict(points=[[106, 197.04], [1.26, 2]], label="polyp"),
     [{"point_2d": [106.0, 197.0], "label": "polyp"}, {"point_2d": [1.3, 2.0], "label": "polyp"}]),
    ("detect", dict(boxes=[[1, 2, 3, 4], [5, 6, 7, 8]], labels=["polyp", "instrument"]),
     [{"bbox_2d": [1.0, 2.0, 3.0, 4.0], "label": "polyp"}, {"bbox_2d": [5.0, 6.0, 7.0, 8.0], "label": "instrument"}]),
    ("count", dict(boxes=[[1, 2, 3, 4]], label="polyp"), {"counts": 1, "bbox_2d": [[1.0, 2.0, 3.0, 4.0]],
                                                        "label": "polyp"}),
    ("count", dict(boxes=np.zeros((0, 4)), label="polyp"), {"counts": 0, "bbox_2d": [], "label": "polyp"}),
    ("point", dict(points=[], label="polyp"), []),   # nothing there: an empty list, not a missing answer
])
def test_answers_are_fenced_json_in_the_papers_layout(task, kwargs, expected):
    text = J.json_answer(task, **kwargs)
    assert text.startswith("```json\n") and text.endswith("\n```")
    assert json.loads(text[8:-4]) == expected
    assert text[8:-4] == json.dumps(expected)   # json.dumps separators: what the grammar enforces


RESULTS = [
    # (task, model text, points, boxes, count, parse_failed, why)
    ("point", '```json\n[{"point_2d": [10, 20], "label": "polyp"}]\n```', [[10, 20]], [[10, 20, 10, 20]], 1, False,
     "a point is a degenerate box, as in Florence-2's Result"),
    ("detect", '```json\n[{"bbox_2d": [0, 0, 10, 20], "label": "polyp"}]\n```', [[5, 10]], [[0, 0, 10, 20]], 1,
     False, "a box's point is its centre"),
    ("count", '```JSON\n{"counts": 2, "bbox_2d": [[0, 0, 2, 2], [4, 4, 6, 6]], "label": "polyp"}\n```',
     [[1, 1], [5, 5]], [[0, 0, 2, 2], [4, 4, 6, 6]], 2, False, "count with its boxes; fence in capitals"),
    ("count", '```json\n{"counts": 3, "bbox_2d": [[0, 0, 2, 2]], "label": "polyp"}\n```', [[1, 1]], [[0, 0, 2, 2]],
     3, False, "the stated count wins over the boxes listed (the paper's rule)"),
    ("count", '```json\n{"count": 0, "label": "polyp"}\n```', [], [], 0, False, "'count' accepted, no instances"),
    ("point", '```json\n[{"point_2d": [10, 2', [], [], None, True, "cut by the budget: marked, count unknown"),
    ("point", "I see no polyp.", [], [], None, True, "prose: marked, the text kept"),
]


@pytest.mark.parametrize("task, text, points, boxes, count, failed, why", RESULTS)
def test_json_answers_become_the_florence_result(task, text, points, boxes, count, failed, why):
    r = J.build_json_result(task, text, (64, 48), confidence=0.5)
    np.testing.assert_allclose(r.points, np.reshape(points, (-1, 2)))
    np.testing.assert_allclose(r.boxes, np.reshape(boxes, (-1, 4)))
    assert (r.count, r.parse_failed, r.image_size, r.confidence) == (count, failed, (64, 48), 0.5), why
    assert r.answer == text.strip() and len(r.labels) == len(r)
    assert r.to_dict()["parse_failed"] is failed


def test_text_answers_read_like_florences():
    r = J.build_json_result("ask", "There are two polyps.", (64, 48))
    assert (r.answer, r.count, r.parse_failed) == ("There are two polyps.", 2, False)


# ------------------------------------------------------------------------------- grammar

@pytest.fixture(scope="module")
def grammar_tokenizer():
    """A tiny byte-level BPE with an end-of-turn token (no model needed)."""
    pytest.importorskip("llguidance")
    from gi_sdk.train.tiny_vlm import _json_corpus
    from gi_sdk.train.tiny import train_byte_bpe

    return train_byte_bpe(["<pad>", "<end>"], 600, _json_corpus())


def _walk(grammar, tokenizer, text):
    """Feed ``text``'s tokens through a fresh cursor; (tokens accepted, last mask or None)."""
    cursor = grammar.start()
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    for n, token in enumerate(ids):
        if not cursor.allowed()[token]:
            return n, None
        cursor.advance(token)
    return len(ids), cursor.allowed()


@pytest.mark.parametrize("task, kwargs", [
    ("point", dict(points=[[10.5, 20], [63.9, 47.9]], label="polyp")),
    ("detect", dict(boxes=[[0, 0, 64, 48]], labels=["instrument"])),
    ("count", dict(boxes=[[1, 2, 3, 4]], label="polyp")),
    ("count", dict(boxes=[], label="polyp")),
])
def test_grammar_accepts_what_training_teaches_then_only_the_end(grammar_tokenizer, task, kwargs):
    from gi_sdk.json_grammar import JsonGrammar

    end = grammar_tokenizer.token_to_id("<end>")
    grammar = JsonGrammar(grammar_tokenizer.to_str(), [end], J.answer_kind(task), image_size=(64, 48))
    text = J.json_answer(task, **kwargs)
    n, mask = _walk(grammar, grammar_tokenizer, text)
    assert n == len(grammar_tokenizer.encode(text, add_special_tokens=False).ids), text
    assert mask[end] and mask.sum() == 1   # the answer is whole: only the end of turn may follow


@pytest.mark.parametrize("seed", range(4))
def test_the_budget_closes_an_answer_that_would_go_on(grammar_tokenizer, seed):
    """A 'model' that never wants to stop (it picks any allowed token but a closing one while
    it can) still ends with a whole answer inside the budget; without a budget it does not."""
    from gi_sdk.json_grammar import JsonGrammar

    end = grammar_tokenizer.token_to_id("<end>")
    grammar = JsonGrammar(grammar_tokenizer.to_str(), [end], "point", image_size=(64, 48))
    rng = np.random.default_rng(seed)

    def run(cursor, budget):
        ids = []
        for _ in range(budget):
            mask = cursor.allowed()
            keep_going = np.flatnonzero(mask & ~grammar.closing)
            token = int(rng.choice(keep_going if len(keep_going) else np.flatnonzero(mask)))
            cursor.advance(token)
            ids.append(token)
            if token == end:
                break
        return ids

    budget = 200
    ids = run(grammar.start(budget), budget)
    assert ids[-1] == end and len(ids) <= budget
    answer = grammar_tokenizer.decode(ids[:-1], skip_special_tokens=False)
    assert not J.build_json_result("point", answer, (64, 48)).parse_failed, answer
    assert run(grammar.start(), budget)[-1] != end   # unsteered, the same chooser runs out


@pytest.mark.parametrize("text, why", [
    ('```json\n[{"point_2d": [65, 20], "label": "polyp"}]\n```', "x outside the 64 px wide frame"),
    ('```json\n[{"point_2d": [10, 20, 30], "label": "polyp"}]\n```', "a point has two coordinates"),
    ('```json\n[{"point_2d": [10.25, 20], "label": "polyp"}]\n```', "at most one decimal"),
    ('```json\n[{"label": "polyp", "point_2d": [10, 20]}]\n```', "the properties in training's order"),
    ('```json\n[{"point_2d": [10, 20], "label": "a```b"}]\n```', "no fence inside a label"),
    ('```json\n[{"point_2d":[10, 20], "label": "polyp"}]\n```', "json.dumps spacing, no free layout"),
    ('{"counts": 1}', "the fence first"),
])
def test_grammar_refuses_what_would_not_read_back(grammar_tokenizer, text, why):
    from gi_sdk.json_grammar import JsonGrammar

    grammar = JsonGrammar(grammar_tokenizer.to_str(), [1], "point", image_size=(64, 48))
    n, mask = _walk(grammar, grammar_tokenizer, text)
    assert mask is None, why


# ------------------------------------------------------------------ training batches, LoRA

@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from gi_sdk.train.tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("llava"), "llava")


def test_batches_lay_the_prompt_out_as_the_runtime_does(tiny_llava):
    # the ids the model trains on start with exactly the ids Session sends it, then the answer
    from gi_sdk.backends.torch_vlm import model_inputs
    from gi_sdk.checkpoint import Checkpoint
    from gi_sdk.frames import to_rgb
    from gi_sdk.tasks import build_prompt
    from gi_sdk.train.decoder_only import JsonCollator, load_processor, load_text_tokenizer
    from gi_sdk.train.examples import Example
    from train_data import scene

    frame = scene(0)[0]
    processor, tokenizer = load_processor(tiny_llava), load_text_tokenizer(tiny_llava)
    collator = JsonCollator(Checkpoint.open(tiny_llava), processor, tokenizer)
    examples = [Example(frame, "a", "point", build_prompt("point", "polyp"), "polyp<loc_500><loc_250>", "s"),
                Example(frame, "a", "ask", build_prompt("ask", "Is there a polyp?"), "Yes.", "s")]
    batch = collator(examples)
    h, w = frame.shape[:2]
    answer = J.json_answer("point", points=[[500.5 * w / 1000, 250.5 * h / 1000]], label="polyp")
    end = tokenizer.token_to_id("</s>")
    for row, (question, target) in enumerate([(J.json_prompt("point", "polyp"), answer), ("Is there a polyp?", "Yes.")]):
        prompt = model_inputs(processor, to_rgb(frame), question)["input_ids"][0].tolist()
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        taught = tokenizer.encode(target, add_special_tokens=False).ids + [end]
        assert ids[: len(prompt)] == prompt
        assert ids[len(prompt): len(prompt) + len(taught)] == taught
        assert labels[: len(prompt)] == [-100] * len(prompt)              # no loss on the prompt
        assert labels[len(prompt): len(prompt) + len(taught)] == taught
        assert all(v == -100 for v in labels[len(prompt) + len(taught):])  # nor on the padding
        assert batch["attention_mask"][row].sum() == len(prompt) + len(taught)
    assert batch["pixel_values"].shape[0] == 2


@pytest.mark.parametrize("preset, vision_adapted", [("vision-frozen-r16", False), ("r8-dropout", True)])
def test_seed_presets_adapt_the_decoders_attention(tiny_llava, preset, vision_adapted):
    # the presets name o_proj (Llama); the vision tower stays frozen when the preset says so
    from transformers import AutoModelForImageTextToText

    from gi_sdk.train.presets import PRESETS, adapted_modules

    hits = adapted_modules(AutoModelForImageTextToText.from_pretrained(tiny_llava), PRESETS[preset])
    text = [n for n in hits if "language_model" in n]
    assert len(text) == 2 * 4 and any(n.endswith("o_proj") for n in text)   # 2 layers x q, k, v, o
    assert any("vision_tower" in n for n in hits) == vision_adapted


def test_a_vlm_checkpoint_is_described_and_refuses_onnx(tiny_llava):
    from gi_sdk import Session
    from gi_sdk.checkpoint import Checkpoint
    from gi_sdk.errors import BackendUnavailableError

    ck = Checkpoint.open(tiny_llava)
    assert (ck.family.name, ck.family.answers, ck.family.end_of_turn) == ("llava", "json", "</s>")
    with pytest.raises(BackendUnavailableError):
        Session(tiny_llava, backend="onnxruntime")


# --------------------------------------------------- the instruction seed's CLS / REC / REG / CAP

def test_instruction_tasks_are_in_the_registry_for_both_answer_forms():
    from gi_sdk.tasks import NEW_TASK_TOKENS, build_prompt, get_task

    # Florence-2: a task token each (learned like <MedVQA>), REC answers in location tokens
    assert [get_task(t).token for t in ("classify", "locate", "name_region")] == ["<MedCLS>", "<MedREC>", "<MedREG>"]
    assert {"<MedCLS>", "<MedREC>", "<MedREG>"} <= set(NEW_TASK_TOKENS)
    assert build_prompt("locate", "the polyp") == "<MedREC> the polyp"
    # JSON families: REC answers a box list, REG gets its region in frame pixels, CLS is a question
    assert J.json_prompt("locate", "the polyp").endswith(J.FORMAT_SENTENCES[J.BOX])
    assert J.json_prompt("name_region", "<loc_0><loc_0><loc_499><loc_999>", (640, 480)) == \
        "What is the finding in the region [0.3, 0.2, 319.7, 479.8]? Answer with its name."
    assert J.json_prompt("classify", "Which site is this: cecum, pylorus or z-line?") == \
        "Which site is this: cecum, pylorus or z-line?"
    assert J.served("caption")   # CAP is the registry's caption task


def test_florence_and_json_targets_of_the_instruction_tasks(tmp_path):
    # one annotation -> a location-token target (Florence-2) and a JSON turn (decoder-only)
    from gi_sdk.codec import encode_region
    from gi_sdk.tasks import build_prompt
    from gi_sdk.train.decoder_only import json_turn
    from gi_sdk.train.examples import Example
    from gi_sdk.train.targets import count_target

    size, box = (640, 480), [[64, 48, 320, 240]]
    rec = Example("x.png", "x", "locate", build_prompt("locate", "the polyp"), count_target(box, "the polyp", size), "s")
    question, answer = json_turn(rec, size)
    assert question == J.json_prompt("locate", "the polyp")
    np.testing.assert_allclose(parse_json_answer(answer)["boxes"], box, atol=0.33)   # 1000-bin quantization
    reg = Example("x.png", "x", "name_region", build_prompt("name_region", encode_region(box[0], size)), "polyp", "s")
    question, answer = json_turn(reg, size)
    assert "[64.3, 48.2, 320.3, 240.2]" in question and answer == "polyp"


@pytest.mark.parametrize("predicted, localized", [
    ([[64, 48, 320, 240]], 1.0),     # the true box
    ([[100, 80, 340, 260]], 1.0),    # shifted, IoU ~0.6: still right (>= 0.5)
    ([[300, 220, 600, 460]], 0.0),   # mostly elsewhere: wrong
    ([], 0.0),                       # no box: wrong
])
def test_rec_scores_localization_at_iou_half(predicted, localized):
    from gi_sdk.train.scoring import Scored, score_task
    from gi_sdk.train.targets import count_target

    size = (640, 480)
    truth = J.build_json_result("locate", J.json_answer("locate", boxes=[[64, 48, 320, 240]], label="the polyp"), size)
    pred = J.build_json_result("locate", J.json_answer("locate", boxes=predicted, label="the polyp"), size)
    block = score_task([Scored("locate", "the polyp", pred, truth)])
    assert block["localization"]["accuracy"] == localized and block["parse_failures"] == 0
    # a Florence-2 REC output (location tokens) is scored the same way
    from gi_sdk.train.scoring import truth_of

    florence = truth_of("locate", count_target(np.reshape(predicted, (-1, 4)), "the polyp", size), size)
    florence_truth = truth_of("locate", count_target([[64, 48, 320, 240]], "the polyp", size), size)
    assert score_task([Scored("locate", "the polyp", florence, florence_truth)])["localization"]["accuracy"] == localized


def test_cls_accuracy_is_exact_match():
    from gi_sdk.result import Result
    from gi_sdk.train.scoring import Scored, score_task

    samples = [Scored("classify", "Which site?", Result("classify", answer=a), Result("classify", answer=t))
               for a, t in [("Cecum.", "cecum"), ("pylorus", "z-line"), ("Z-line", "z-line")]]
    assert score_task(samples)["answer_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("text, failure, empty", [
    ('```json\n[{"point_2d": [10, 20], "label": "polyp"}]\n```', False, False),   # an answer
    ("```json\n[]\n```", False, True),                     # nothing found: a zero case, not a failure
    ('```json\n[{"point_2d": [10, 2', True, True),          # cut by the budget: both (the paper's rule)
    ("No polyp here.", True, True),                          # prose where JSON was asked for
])
def test_json_answers_count_as_parse_failures_and_zero_cases(text, failure, empty):
    from gi_sdk.train.scoring import is_empty, is_parse_failure

    r = J.build_json_result("point", text, (64, 48), raw_text=text)
    assert (is_parse_failure("point", r), is_empty(r)) == (failure, empty)


def test_export_refuses_a_vlm_checkpoint_and_says_why(tiny_llava, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from gi_sdk.errors import ExportError
    from gi_sdk.export import export_bundle

    with pytest.raises(ExportError, match="llava checkpoint.*backend 'torch'"):
        export_bundle(tiny_llava, tmp_path / "bundle", log=None)
    assert not (tmp_path / "bundle").exists()
