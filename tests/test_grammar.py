"""Grammar-constrained decoding: the output of every task always parses into the task's shape.

Three layers: the compiled state machines against independent regular expressions over token
classes (every budget, random walks); the generation loop with a grammar on adversarial random
logits (no model); and the tiny random-weight Florence-2 end to end, whose unconstrained output
is garbage that often does not parse, which is what makes the constrained property a real test.
"""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gi_sdk import tasks as T
from gi_sdk.codec import encode_region, parse_florence
from gi_sdk.decode import build_result
from gi_sdk.generate import greedy
from gi_sdk.grammar import (BLANK, BOS, EOS, LOCATION, MACHINES, NEWLINE, OTHER, POLY_CLOSE, POLY_OPEN, SEPARATOR,
                            WORD, GrammarError, GrammarVocab, grammar_name)
from gi_sdk.token_grammar import LOC, POLY, POLY_END, SEP, TAG, TAG_HIDDEN

# ------------------------------------------------------------------ the machines, on a hand-made vocabulary
# one id per class: 0 <s>, 1 <pad> (other), 2 </s>, 3 word, 4 blank, 5 newline, 6 <poly>, 7 </poly>, 8 <sep>, 9.. <loc>
_CLASSES = np.array([BOS, OTHER, EOS, WORD, BLANK, NEWLINE, POLY_OPEN, POLY_CLOSE, SEPARATOR] + [LOCATION] * 4)
_LETTER = dict(zip(range(13), "BO/WSNPQXLLLL"))
VOCAB = GrammarVocab(_CLASSES, eos_id=2, bos_id=0)

#: An independent statement of each grammar: a regular expression over class letters
#: (B <s>, / </s>, W word, S blank, N newline, L location, P <poly>, Q </poly>, X <sep>).
_LABEL = r"[WS]*W[WS]*"
ORACLE = {
    "labelled_boxes": rf"B?({_LABEL}(LLLL)+)*/",
    "boxes": r"B?(LLLL)*/",
    "polygons": r"B?(P(LL){3,}Q(XP(LL){3,}Q)*)?/",
    "labelled_points": rf"B?({_LABEL}(LL)+)*/",
    "answer": r"B?[SN]*W[WSN]*/",
}


def _walk(grammar, budget, rng):
    """A random walk through what the cursor allows; returns the class letters."""
    cursor, out = grammar.start(budget), []
    while not cursor.done:
        allowed = np.flatnonzero(cursor.allowed())
        assert len(allowed), "a cursor must always allow something"
        token = int(rng.choice(allowed))
        cursor.advance(token)
        out.append(_LETTER[token])
        assert len(out) <= budget, "the grammar ran past its budget"
    return "".join(out)


@pytest.mark.parametrize("name", sorted(MACHINES))
@settings(max_examples=60, deadline=None, derandomize=True)
@given(budget=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_every_walk_is_in_the_language_and_within_budget(name, budget, seed):
    # Whatever the model prefers among the allowed tokens, the sequence is a sentence of the
    # grammar and ends with </s> within the budget. The one exception is by design: an answer
    # whose budget cannot hold a word closes at once, empty.
    text = _walk(VOCAB.grammar(name), budget, np.random.default_rng(seed))
    if name == "answer" and budget < 2:
        assert text == "/"
    else:
        assert re.fullmatch(ORACLE[name], text), text


@pytest.mark.parametrize("name,budget,shortest", [
    ("labelled_boxes", 6, "WLLLL/"),          # a label, four locations, </s>: six tokens, exactly fits
    ("labelled_boxes", 5, "/"),               # one short: no instance is started at all
    ("polygons", 9, "PLLLLLLQ/"),             # a triangle needs nine tokens
    ("polygons", 8, "/"),
    ("labelled_points", 4, "WLL/"),
    ("answer", 2, "W/"),
])
def test_an_instance_is_started_only_when_the_budget_can_finish_it(name, budget, shortest):
    # walks that try hard to open instances (always take the non-EOS choice if there is one)
    grammar = VOCAB.grammar(name)
    cursor, out = grammar.start(budget), []
    while not cursor.done:
        allowed = np.flatnonzero(cursor.allowed())
        opening = [t for t in allowed if _LETTER[t] in "WLP"]
        token = int(opening[0]) if opening else int(allowed[-1] if 2 not in allowed else 2)
        cursor.advance(token)
        out.append(_LETTER[token])
    assert "".join(out) == shortest


def test_the_last_step_of_the_budget_allows_only_eos():
    for name in MACHINES:
        cursor = VOCAB.grammar(name).start(1)
        assert np.flatnonzero(cursor.allowed()).tolist() == [2], name


@pytest.mark.parametrize("name,prefix,refused,why", [
    ("labelled_boxes", [3, 9, 9, 9], 2, "</s> inside a box"),
    ("labelled_boxes", [], 9, "a box without a label"),
    ("labelled_boxes", [4], 9, "a label of blanks only"),
    ("labelled_boxes", [3], 5, "a newline inside a label (transformers drops such instances)"),
    ("labelled_boxes", [3], 6, "<poly> in a box grammar"),
    ("labelled_boxes", [3], 1, "<pad> and other specials"),
    ("polygons", [6, 9, 9, 9, 9], 7, "</poly> after two points"),
    ("polygons", [6, 9, 9, 9, 9, 9, 9, 9], 7, "</poly> after an odd coordinate"),
    ("polygons", [6, 9, 9, 9, 9, 9, 9, 7], 6, "<poly> right after </poly> without <sep>"),
    ("answer", [3], 9, "a location token in an answer"),
    ("answer", [], 2, "an empty answer"),
    ("answer", [0], 0, "<s> twice"),
])
def test_refusals(name, prefix, refused, why):
    cursor = VOCAB.grammar(name).start(100)
    for token in prefix:
        cursor.advance(token)
    assert not cursor.allowed()[refused], why
    with pytest.raises(GrammarError):
        cursor.advance(refused)


@pytest.mark.parametrize("task,grammar", [
    ("detect", "labelled_boxes"), ("count", "labelled_boxes"), ("ground", "labelled_boxes"),
    ("dense_region_caption", "labelled_boxes"), ("open_vocabulary_detect", "labelled_boxes"),
    ("region_proposal", "boxes"),  # transformers reads <REGION_PROPOSAL> label-less
    ("segment", "polygons"), ("region_to_segmentation", "polygons"), ("point", "labelled_points"),
    ("ask", "answer"), ("explain", "answer"), ("caption", "answer"), ("ocr", "answer"),
])
def test_each_task_has_its_grammar(task, grammar):
    assert grammar_name(T.get_task(task)) == grammar


# ------------------------------------------------------------------ the shape checker the properties use
def shape_problems(result, ids, vocab_classes, task, budget) -> list:
    """Why ``result`` (decoded from ``ids`` with a token budget) is not a well-formed output of
    ``task`` ([] if it is)."""
    kinds = vocab_classes[np.clip(ids, 0, len(vocab_classes) - 1)]
    n_loc = int(np.sum(kinds == LOC))
    grammar = grammar_name(T.get_task(task))
    problems = []
    if not len(ids) or ids[-1] != 2:
        problems.append("does not end with </s>")
    if grammar == "answer":
        if np.any(np.isin(kinds, [LOC, SEP, POLY, POLY_END, TAG, TAG_HIDDEN])):
            problems.append("location, structure or task tokens in an answer")
        if not result.answer.strip() and budget >= 2:  # a budget of 1 holds nothing but </s>
            problems.append("empty answer")
    elif grammar in ("labelled_boxes", "boxes"):
        if n_loc != 4 * len(result):
            problems.append(f"{n_loc} location tokens for {len(result)} boxes")
        if grammar == "labelled_boxes" and not all(result.labels):
            problems.append("a box without a label")
    elif grammar == "labelled_points":
        if n_loc != 2 * len(result) or not all(result.labels):
            problems.append(f"{n_loc} location tokens for {len(result)} points, labels {result.labels}")
    elif grammar == "polygons":
        rings = [ring for parts in result.polygons for ring in parts]
        if len(rings) != len(result) or any(len(r) < 3 for r in rings):
            problems.append("a polygon of < 3 points or of several rings")
        if sum(2 * len(r) for r in rings) != n_loc or int(np.sum(kinds == POLY)) != len(result):
            problems.append("location or <poly> tokens outside the polygons")
    spec = T.get_task(task)
    if spec.hf_parse_type not in (None, "pure_text"):  # transformers' own post-processor agrees
        hf = parse_florence(result.raw_text, spec.token, result.image_size)[spec.token]
        if len(hf.get("bboxes", hf.get("polygons", []))) != len(result):
            problems.append("transformers' post-processor reads another number of instances")
    if len(result.scores) != len(result) or not np.all((result.scores >= 0) & (result.scores <= 1)):
        problems.append(f"scores {result.scores} for {len(result)} instances")
    return problems


# ------------------------------------------------------------------ the loop on adversarial random logits
class _Vocabs(tuple):
    def __repr__(self):  # hypothesis prints the arguments of a failing case: keep it short
        return "tiny_vocab"


@pytest.fixture(scope="module")
def tiny_vocab(tiny_tokenizer_dir):
    from tokenizers import Tokenizer

    from gi_sdk.token_decoder import TokenVocab

    tok = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    vocab = TokenVocab.from_tokenizer(tok)
    return _Vocabs((tok, vocab, GrammarVocab.from_token_vocab(vocab, eos_id=2, bos_id=0)))


class RandomLogits:
    """A stand-in backend: random logits with a bias per grammar class (pushes the walk into
    the corners a real model rarely visits: endless locations, newlines, early EOS...)."""

    def __init__(self, classes, seed, bias):
        self.rng, self.offset = np.random.default_rng(seed), np.asarray(bias, np.float32)[classes]

    def decode_step(self, state, tokens, cache=None):
        return (self.rng.standard_normal((len(tokens), len(self.offset))).astype(np.float32) * 3 + self.offset), None


_TASKS = sorted(T.TASKS)


def _decode(tok, vocab, gen, task, size=(320, 240)):
    """The Result a Session makes of ``gen`` (decoded text, parsed, scored per instance)."""
    from gi_sdk.scores import instance_scores

    text = tok.decode([2, *gen.token_ids.tolist()], skip_special_tokens=False)
    result = build_result(T.get_task(task), text, size, raw_text=text, token_ids=gen.token_ids)
    result.scores = instance_scores(result, gen.token_ids, gen.token_probs, vocab)
    return result


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(task=st.sampled_from(_TASKS), seed=st.integers(0, 2**32 - 1), budget=st.integers(1, 80),
       bias=st.lists(st.floats(-6, 6), min_size=10, max_size=10))
def test_any_logits_under_the_grammar_give_output_that_parses(tiny_vocab, task, seed, budget, bias):
    tok, vocab, gvocab = tiny_vocab
    backend = RandomLogits(gvocab.classes, seed, bias)
    gen = greedy(backend, None, start_id=2, eos_id=2, max_new_tokens=budget, grammar=gvocab.for_task(T.get_task(task)))
    assert len(gen.token_ids) <= budget and gen.finished
    result = _decode(tok, vocab, gen, task)
    assert shape_problems(result, gen.token_ids, vocab.classes, task, budget) == []


def test_the_same_logits_without_the_grammar_often_do_not_parse(tiny_vocab):
    # the control: the property above is not vacuous
    tok, vocab, gvocab = tiny_vocab
    bad = 0
    for seed, task in enumerate(_TASKS * 3):
        gen = greedy(RandomLogits(gvocab.classes, seed, [0] * 10), None, start_id=2, eos_id=2, max_new_tokens=40)
        result = _decode(tok, vocab, gen, task)
        bad += bool(shape_problems(result, gen.token_ids, vocab.classes, task, 40))
    assert bad >= len(_TASKS)


# ------------------------------------------------------------------ a label vocabulary
_CLASS_NAMES = ["polyp", "instrument", "a snare"]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(task=st.sampled_from(["detect", "count", "point"]), seed=st.integers(0, 2**32 - 1),
       budget=st.integers(1, 60), bias=st.lists(st.floats(-6, 6), min_size=10, max_size=10))
def test_with_a_label_vocabulary_every_label_is_a_class_name(tiny_vocab, task, seed, budget, bias):
    tok, vocab, gvocab = tiny_vocab
    grammar = gvocab.for_task(T.get_task(task), _CLASS_NAMES)
    backend = RandomLogits(gvocab.classes, seed, bias)
    gen = greedy(backend, None, start_id=2, eos_id=2, max_new_tokens=budget, grammar=grammar)
    assert len(gen.token_ids) <= budget and gen.finished
    result = _decode(tok, vocab, gen, task)
    assert shape_problems(result, gen.token_ids, vocab.classes, task, budget) == []
    assert set(result.labels) <= set(_CLASS_NAMES), result.labels


def test_without_the_vocabulary_the_same_logits_write_other_labels(tiny_vocab):
    # the control: the open grammar lets random logits write labels that are no class name,
    # and the closed one, on the same logits, still finds instances (it is not vacuous)
    tok, vocab, gvocab = tiny_vocab
    other, closed_instances = 0, 0
    for seed in range(12):
        for labels in ((), _CLASS_NAMES):
            grammar = gvocab.for_task(T.get_task("detect"), labels)
            gen = greedy(RandomLogits(gvocab.classes, seed, [0, -4, 0, 2, 0, 0, 0, 0, 0, 0]), None, start_id=2,
                         eos_id=2, max_new_tokens=60, grammar=grammar)
            result = _decode(tok, vocab, gen, "detect")
            if labels:
                closed_instances += len(result)
            else:
                other += any(label not in _CLASS_NAMES for label in result.labels)
    assert other >= 6 and closed_instances >= 6, (other, closed_instances)


def test_a_label_vocabulary_refuses_a_repeated_label_and_keeps_free_phrases_free(tiny_vocab):
    _, _, gvocab = tiny_vocab
    grammar = gvocab.for_task(T.get_task("detect"), ["polyp", "instrument"])
    polyp = gvocab.label_ids("polyp")[0]
    cursor = grammar.start(40)
    for token in polyp:
        cursor.advance(token)
    # a whole label written: only its box may follow ("polyppolyp" cannot start)
    assert set(gvocab.classes[cursor.allowed()].tolist()) == {LOCATION}
    with pytest.raises(GrammarError):
        cursor.advance(polyp[0])
    # tasks whose labels are phrases or captions keep the open grammar
    for task in ("ground", "dense_region_caption", "open_vocabulary_detect"):
        assert gvocab.for_task(T.get_task(task), ["polyp"]).labels == ()
    assert grammar.labels == ("instrument", "polyp")


@pytest.mark.parametrize("labels", [["polyp", ""], ["a<loc_1>"], ["two\nlines"], "polyp", [3]])
def test_labels_that_cannot_be_class_names_are_refused(labels):
    from gi_sdk.grammar import check_labels

    with pytest.raises(ValueError):
        check_labels(labels)


# ------------------------------------------------------------------ the tiny random-weight model end to end
torch = pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402

_WORDS = ["polyp", "instrument", "a polyp", "the colon wall", "forceps", "pink mucosa", "a snare near the fold"]


@pytest.fixture(scope="module")
def sessions(tiny_checkpoint):
    return (Session(tiny_checkpoint, backend="torch"), Session(tiny_checkpoint, backend="torch", constrained=False))


def _text_for(task, word, size=(320, 240)):
    spec = T.get_task(task)
    if not spec.needs_input:
        return None
    if task == "region_to_segmentation":
        return encode_region((40, 30, 200, 180), size)
    if task in ("ask", "explain"):
        return f"Is there {word} in the image?"
    return word


def _frame(seed):
    return np.random.default_rng(seed).integers(0, 255, (240, 320, 3), dtype=np.uint8)


@settings(max_examples=45, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(task=st.sampled_from(_TASKS), word=st.sampled_from(_WORDS), seed=st.integers(0, 3), budget=st.integers(1, 48))
def test_the_tiny_model_under_the_grammar_always_parses(sessions, task, word, seed, budget):
    constrained, _ = sessions
    r = constrained.run(_frame(seed), task, _text_for(task, word), max_new_tokens=budget)
    assert len(r.token_ids) <= budget
    assert shape_problems(r, r.token_ids, constrained._vocab().classes, task, budget) == []


def test_the_tiny_model_without_the_grammar_writes_output_that_does_not_parse(sessions):
    # the same cases unconstrained: the random model's garbage breaks the task's shape, so the
    # property above shows what the grammar does
    constrained, plain = sessions
    broken, instances = [], 0
    frame = _frame(0)  # one frame: each session runs its vision tower once
    for i, task in enumerate(_TASKS):
        word = _WORDS[i % len(_WORDS)]
        r = plain.run(frame, task, _text_for(task, word), max_new_tokens=40)
        if shape_problems(r, r.token_ids, plain._vocab().classes, task, 40):
            broken.append(task)
        c = constrained.run(frame, task, _text_for(task, word), max_new_tokens=40)
        instances += len(c)
    assert len(broken) >= len(_TASKS) // 2, broken
    assert instances > 0  # the grammar does not get there by emitting nothing


def test_a_session_holds_labels_to_the_class_names_its_model_was_trained_on(tiny_checkpoint, tmp_path):
    # the training record names the class names; the Session takes them (or the caller's), and
    # the random model, which writes junk labels when free, writes only those
    import json
    import shutil

    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "training_record.json").write_text(json.dumps({"labels": ["polyp", "instrument"]}))
    closed, free = Session(folder, backend="torch"), Session(folder, backend="torch", labels=[])
    assert closed.labels == ("instrument", "polyp") and free.labels == ()
    assert Session(tiny_checkpoint, backend="torch").labels == ()        # no record: any words
    junk, instances = 0, 0
    for seed in range(4):
        for task, text in (("detect", None), ("count", "polyp"), ("point", "polyp")):
            r = closed.run(_frame(seed), task, text, max_new_tokens=40)
            assert set(r.labels) <= {"polyp", "instrument"}, r.labels
            instances += len(r)
            junk += any(label not in ("polyp", "instrument") for label in free.run(_frame(seed), task, text,
                                                                                    max_new_tokens=40).labels)
    assert instances > 0 and junk > 0, (instances, junk)
    with pytest.raises(ValueError, match="list of class names"):
        Session(folder, backend="torch", labels="polyp")
