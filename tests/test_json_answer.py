"""gi_sdk.json_answer: JSON point / box / count answers (FORMATS.md, MedMultiPoints rules)."""
from __future__ import annotations

import numpy as np
import pytest

from gi_sdk import codec
from gi_sdk.json_answer import answer_count, parse_json_answer

POINTS = '[{"point_2d": [10, 20], "label": "polyp"}, {"point_2d": [30.5, 40], "label": "polyp"}]'
BOXES = '[{"bbox_2d": [1, 2, 3, 4], "label": "polyp"}]'


def fenced(body: str, name: str = "json") -> str:
    return f"```{name}\n{body}\n```"


CASES = [
    # (answer text, expected points, boxes, labels, count, answer_count, why)
    (fenced(POINTS), [[10, 20], [30.5, 40]], [], ["polyp", "polyp"], None, 2, "points, the paper's format"),
    (fenced(BOXES), [], [[1, 2, 3, 4]], ["polyp"], None, 1, "boxes"),
    (fenced('{"counts": 3, "label": "polyp"}'), [], [], ["polyp"], 3, 3, "count answer"),
    (fenced('{"count": 3, "label": "polyp"}'), [], [], ["polyp"], 3, 3, "'count' is accepted for 'counts'"),
    (fenced('{"counts": 2, "point_2d": [[5, 6], [7, 8]], "label": "polyp"}'), [[5, 6], [7, 8]], [],
     ["polyp", "polyp"], 2, 2, "combined count + points"),
    (fenced('{"counts": 1, "bbox_2d": [[1, 2, 3, 4]], "label": "polyp"}'), [], [[1, 2, 3, 4]], ["polyp"], 1, 1,
     "combined count + boxes"),
    (fenced('{"counts": 5, "point_2d": [[5, 6]], "label": "polyp"}'), [[5, 6]], [], ["polyp"], 5, 5,
     "a dict scores its stated counts, not its number of points"),
    (fenced('{"point_2d": [[5, 6]], "label": "polyp"}'), [[5, 6]], [], ["polyp"], None, 0,
     "a dict without counts scores 0 (the paper's rule), whatever it points at"),
    (fenced(POINTS, "JSON"), [[10, 20], [30.5, 40]], [], ["polyp", "polyp"], None, 2, "fence name in capitals"),
    (fenced(POINTS, "Json"), [[10, 20], [30.5, 40]], [], ["polyp", "polyp"], None, 2, "fence name in mixed case"),
    ("There are two polyps.\n" + fenced(POINTS) + "\nHope this helps!", [[10, 20], [30.5, 40]], [],
     ["polyp", "polyp"], None, 2, "prose around the fence"),
    (fenced(BOXES) + "\n" + fenced(POINTS), [], [[1, 2, 3, 4]], ["polyp"], None, 1, "several fences: the first wins"),
    (fenced("not json") + "\n" + fenced(POINTS), None, None, None, None, 0,
     "the first fence is the answer even when a later one parses (paper's rule)"),
    (POINTS, [[10, 20], [30.5, 40]], [], ["polyp", "polyp"], None, 2, "a bare JSON answer without a fence"),
    ('  {"counts": 4}  ', [], [], [], 4, 4, "bare count dict, blank around"),
    ('The answer: [{"point_2d": [1, 2]}] as requested.', [[1, 2]], [], [""], None, 1,
     "bare JSON inside prose: the first object or array that decodes"),
    ("```json\n" + POINTS, [[10, 20], [30.5, 40]], [], ["polyp", "polyp"], None, 2,
     "an unclosed fence (generation stopped) still parses when its JSON is whole"),
    ("```json\n[{\"point_2d\": [10, 2", None, None, None, None, 0, "a cut-off JSON value does not parse"),
    (fenced("[]"), [], [], [], None, 0, "an empty list: nothing found, count 0"),
    (fenced('[{"point_2d": [1]}, {"point_2d": "x"}, {"bbox_2d": [1, 2, 3]}, 7, {"point_2d": [1, 2]}]'),
     [[1, 2]], [], [""], None, 5, "malformed items are skipped; the list still counts as its length"),
    (fenced('[{"point_2d": [true, 2]}, {"point_2d": [NaN, 1]}, {"point_2d": [3, 4]}]'), [[3, 4]], [], [""], None, 3,
     "booleans and NaN are not coordinates"),
    (fenced('{"counts": "3"}'), [], [], [], 3, 3, "a count written as a string"),
    (fenced('{"counts": 2.0}'), [], [], [], 2, 2, "a count written as a float"),
    (fenced('{"counts": null, "label": "polyp"}'), [], [], ["polyp"], None, 0, "a null count scores 0"),
    (fenced('{"counts": 3, "label": null}'), [], [], [], 3, 3, "a null label is no label"),
    ("", None, None, None, None, 0, "empty answer"),
    ("I cannot see any polyp.", None, None, None, None, 0, "prose only: unparsed, scores 0"),
    (fenced("{'counts': 3}"), None, None, None, None, 0, "single quotes are not JSON"),
    (fenced("3"), None, None, None, None, 0, "a JSON scalar is not an answer"),
    (fenced("[" * 100000 + "]" * 100000), None, None, None, None, 0, "absurd nesting: no crash"),
    ("```jsonl\n" + POINTS + "\n```", [[10, 20], [30.5, 40]], [], ["polyp", "polyp"], None, 2,
     "a ```jsonl fence is not a json fence; the JSON inside is still found"),
]


@pytest.mark.parametrize("text, points, boxes, labels, count, scored, why", CASES, ids=[c[-1] for c in CASES])
def test_parse_json_answer(text, points, boxes, labels, count, scored, why):
    parsed = parse_json_answer(text)
    assert answer_count(parsed) == scored
    if points is None:
        assert parsed is None
        return
    assert parsed["points"].dtype == np.float32 and parsed["points"].shape == (len(points), 2)
    assert parsed["boxes"].dtype == np.float32 and parsed["boxes"].shape == (len(boxes), 4)
    assert parsed["points"].tolist() == points
    assert parsed["boxes"].tolist() == boxes
    assert parsed["labels"] == labels
    assert parsed["count"] == count


@pytest.mark.parametrize("value", [None, 3, b"[1]", ["[1]"]], ids=["None", "int", "bytes", "list"])
def test_parse_json_answer_never_raises_on_non_text(value):
    assert parse_json_answer(value) is None


def test_raw_keeps_the_decoded_json():
    # the scoring rule and any other reader can go back to exactly what the model wrote
    assert parse_json_answer(fenced('{"counts": 2, "extra": [1]}'))["raw"] == {"counts": 2, "extra": [1]}


def test_codec_re_exports_the_json_parser():
    assert codec.parse_json_answer is parse_json_answer and codec.answer_count is answer_count
