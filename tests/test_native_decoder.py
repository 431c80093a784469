"""gi_sdk.decode_ids: instances read from token ids equal parse_instances on the decoded text.

The reference is ``parse_instances(vocab.decode(ids), ...)`` (itself equal to transformers'
post-processor, tests/test_codec_differential.py) and, for Florence-2's own tasks, transformers'
``post_process_generation`` directly. Sequences holding an ordinary token with a '<' cannot be
read on tokens (``exact`` is false) and are parsed from text instead; the module counts how many
sequences went each way and prints it.
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

import gi_sdk.native
from gi_sdk.codec import parse_florence, parse_instances
from gi_sdk.tasks import BOXES, BOXES_OR_POLYGONS, PHRASE_BOXES, POINTS, POLYGONS, TEXT
from gi_sdk.token_decoder import HAZARD, TAG, TokenVocab, decode_ids, decode_tokens_python

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

# (output kind, task) pairs covering every grammar of the task registry
KINDS = [(TEXT, None), (BOXES, None), (BOXES, "<REGION_PROPOSAL>"), (PHRASE_BOXES, None), (POLYGONS, None),
         (POLYGONS, "<REGION_TO_SEGMENTATION>"), (BOXES_OR_POLYGONS, None), (POINTS, None)]
HF_TASKS = {"<OD>": (BOXES, None), "<REGION_PROPOSAL>": (BOXES, "<REGION_PROPOSAL>"),
            "<CAPTION_TO_PHRASE_GROUNDING>": (PHRASE_BOXES, None), "<REFERRING_EXPRESSION_SEGMENTATION>": (POLYGONS, None),
            "<OPEN_VOCABULARY_DETECTION>": (BOXES_OR_POLYGONS, None)}
SEEN: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report(terminal_line):
    """Print how many sequences were read on tokens and how many fell back to text."""
    yield
    line = (f"id decoder: {SEEN['compared']} comparisons on {SEEN['sequences']} sequences; "
            f"{SEEN['exact']} read on tokens, {SEEN['fallback']} fell back to text (an ordinary token holds '<'); "
            f"{SEEN['hf']} compared with transformers directly")
    terminal_line(line)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    tok.add_special_tokens(["<foo>", "</foo>", "a<b"])  # a tag transformers keeps, and a hazard
    return tok


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return TokenVocab.from_tokenizer(tokenizer)


def same(a, b) -> bool:
    return (a.text == b.text and np.array_equal(a.boxes, b.boxes) and a.box_labels == b.box_labels
            and a.polygon_labels == b.polygon_labels and len(a.polygons) == len(b.polygons)
            and all(len(p) == len(q) and all(np.array_equal(x, y) for x, y in zip(p, q))
                    for p, q in zip(a.polygons, b.polygons))
            and np.array_equal(a.points, b.points) and a.point_labels == b.point_labels)


def check(vocab, ids, size=(640, 480), count=True):
    """decode_ids == parse_instances(decoded text) for every output kind."""
    ids = np.asarray(ids, np.int64)
    text = vocab.decode(ids)
    exact = decode_tokens_python(ids, vocab.classes, vocab.loc_begin, 0, 1.0, 1.0)[0]
    for kind, task in KINDS:
        got = decode_ids(ids, kind, size, vocab, task=task)
        want = parse_instances(text, kind, size, task=task)
        assert same(got, want), f"kind={kind} task={task} text={text!r}\n got={got}\nwant={want}"
        SEEN["compared"] += count
    SEEN["sequences"] += count
    SEEN["exact" if exact else "fallback"] += count
    return text


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


CASES = [
    # (text the ids spell, why)
    ("</s><s>polyp<loc_100><loc_100><loc_200><loc_200>polyp<loc_5><loc_6><loc_7><loc_8></s>", "two labelled boxes"),
    ("polyp<loc_1><loc_2><loc_3><loc_4><loc_5>", "odd coordinate count: the 5th location is dropped"),
    ("polyp<loc_1><loc_2><loc_3>", "three locations: no box"),
    ("<loc_9><loc_1><loc_2><loc_3><loc_4>x", "a run opening the text: its first location's tail is the label"),
    ("<sep><loc_1><loc_2><loc_3><loc_4>", "label made of the tail of <sep>: 'sep>'"),
    ("a<loc_1><loc_2>b<loc_3><loc_4><loc_5><loc_6>", "a short run: its last location's tail joins the next label"),
    ("polyp<loc_1><loc_2><loc_3><loc_4> the image<loc_5><loc_6><loc_7><loc_8>", "a banned grounding phrase"),
    ("red\npolyp<loc_1><loc_2><loc_3><loc_4>", "a newline inside a label drops its instance"),
    ("\n polyp <loc_1><loc_2><loc_3><loc_4>", "leading whitespace and newlines are stripped"),
    ("pólyp<loc_1><loc_2><loc_3><loc_4>", "box labels keep only ASCII; polygon labels keep all"),
    ("polyp<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6></poly><sep><poly><loc_7><loc_8></poly>", "two bodies"),
    ("polyp<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6>", "unclosed <poly>: the whole run is one body"),
    ("<loc_1><loc_2><loc_3><sep><loc_4><loc_5><loc_6><loc_7>", "Florence's own segmentation: rings split by <sep>"),
    ("x<loc_1><loc_2><poly><loc_3><loc_4></poly>", "locations before <poly> end no ring"),
    ("</poly><poly><sep><loc_1><loc_2><loc_3>", "a </poly> before <poly>: no body, the run is read whole"),
    ("polyp<loc_500><loc_500>fold<loc_10><loc_20><loc_30>", "points: each label covers its run, odd bin dropped"),
    ("po<od>lyp<loc_1><loc_2><loc_3><loc_4>", "a hidden tag inside a label: the box grammar keeps it"),
    ("A<foo>B<loc_1><loc_2><loc_3><loc_4>", "a kept tag: its tail 'foo>' opens the label"),
    ("polyp a<b<loc_1><loc_2><loc_3><loc_4>", "an added token with '<' inside: not exact, parsed from text"),
    ("3 < 5<loc_1><loc_2><loc_3><loc_4>", "an ordinary '<': not exact, parsed from text"),
    ("", "no ids"),
    ("</s><s><pad></s>", "specials only"),
]


@pytest.mark.parametrize("text, why", CASES, ids=[c[-1] for c in CASES])
def test_cases(impl, tokenizer, vocab, text, why):
    ids = encode(tokenizer, text)
    assert check(vocab, ids) == tokenizer.decode(ids, skip_special_tokens=False)


def test_examples_give_what_they_say(vocab, tokenizer):
    # a few cases spelled out: what the id decoder returns, not only that it matches
    ids = np.array(encode(tokenizer, "<loc_9><loc_1><loc_2><loc_3><loc_4>x"), np.int64)
    r = decode_ids(ids, BOXES, (1000, 1000), vocab)
    assert r.box_labels == ["loc_9>"] and r.boxes.tolist() == [[1.5, 2.5, 3.5, 4.5]]
    ids = np.array(encode(tokenizer, "polyp<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6>"), np.int64)
    r = decode_ids(ids, BOXES_OR_POLYGONS, (1000, 1000), vocab)
    assert r.polygon_labels == ["polyp"] and r.polygons[0][0].tolist() == [[1.5, 2.5], [3.5, 4.5], [5.5, 6.5]]
    ids = np.array(encode(tokenizer, "polyp<loc_500><loc_500>fold<loc_10><loc_20><loc_30>"), np.int64)
    r = decode_ids(ids, POINTS, (1000, 1000), vocab)
    assert r.point_labels == ["polyp", "fold"] and r.points.tolist() == [[500.5, 500.5], [10.5, 20.5]]


def test_native_result_is_the_frozen_parsed_its_class_makes(vocab, tokenizer):
    # the native decoder makes the Parsed itself (object.__new__, then object.__setattr__ per
    # field: all the dataclass's __init__ does); the same as calling the class, still frozen
    import dataclasses
    from functools import partial

    from gi_sdk.florence_parser import Parsed, _grammar
    from gi_sdk.token_decoder import (_NO_BOXES, _NO_POINTS, _PARSED_FIELDS, GRAMMAR_CODES, _plain_dataclass,
                                      _span_text)

    mod = gi_sdk.native.native()
    if mod is None:
        pytest.skip("gi_sdk._native is not built")
    assert _plain_dataclass(Parsed, _PARSED_FIELDS)
    text = partial(_span_text, vocab.tokenizer, vocab.tails, vocab.loc_begin, len(vocab.classes))
    calling = mod.IdDecoder(vocab.classes, vocab.loc_begin, text, _NO_BOXES, _NO_POINTS, Parsed, None)
    for piece, kind in [("polyp<loc_1><loc_2><loc_3><loc_4>", BOXES), ("x<poly><loc_1><loc_2><loc_3><loc_4></poly>",
                                                                      POLYGONS), ("a<loc_1><loc_2>", POINTS)]:
        ids = np.array(encode(tokenizer, piece), np.int64)
        made = decode_ids(ids, kind, (640, 480), vocab)
        called = calling.decode(ids, GRAMMAR_CODES[_grammar(kind, None)], (640, 480), None)
        assert type(made) is Parsed and list(vars(made)) == list(vars(called)) == list(_PARSED_FIELDS)
        assert same(made, called) and repr(made) == repr(called)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.text = "changed"


def test_ids_outside_the_vocabulary(impl, tokenizer, vocab):
    # negative and too-large ids decode to nothing, in both readers
    ids = encode(tokenizer, "polyp<loc_1><loc_2>") + [-7, 10 ** 9, len(vocab.classes)] + encode(tokenizer, "<loc_3><loc_4>")
    check(vocab, ids)
    r = decode_ids(np.array(ids, np.int64), BOXES, (1000, 1000), vocab)
    assert len(r.boxes) == 1


def test_vocab_classes(vocab, tokenizer):
    # one class per id: tags that transformers keeps, and ids whose text holds a '<'
    assert vocab.classes[tokenizer.token_to_id("<foo>")] == TAG
    assert vocab.classes[tokenizer.token_to_id("a<b")] == HAZARD
    assert vocab.classes[tokenizer.token_to_id("<")] == HAZARD
    assert vocab.tail(tokenizer.token_to_id("<sep>")) == "sep>" and vocab.tail(vocab.loc_begin + 12) == "loc_12>"


def random_ids(rng: random.Random, vocab: TokenVocab, tokenizer) -> list[int]:
    size = len(vocab.classes)
    locs = range(vocab.loc_begin, vocab.loc_begin + 1000)
    specials = [tokenizer.token_to_id(t) for t in ("<s>", "</s>", "<pad>", "<sep>", "<poly>", "</poly>", "<od>",
                                                   "<unk>", "<MedVQA>", "<foo>", "</foo>")]
    plain = [i for i in range(4, vocab.loc_begin) if vocab.classes[i] == 0]
    hazards = list(np.flatnonzero(vocab.classes == HAZARD))
    seq = []
    for _ in range(rng.randint(0, 40)):
        r = rng.random()
        seq.append(rng.choice(locs) if r < 0.45 else rng.choice(plain) if r < 0.75 else rng.choice(specials)
                   if r < 0.975 else int(rng.choice(hazards)) if r < 0.985 else rng.choice([-1, size, 10 ** 6]))
    return seq


def test_seeded_random_sequences(impl, vocab, tokenizer):
    # malformed and random sequences: odd coordinate counts, unclosed <poly>, stray specials,
    # ids out of range, empty; the well-formed outputs of the encoders, tokenized
    rng = random.Random(f"decoder {impl}")
    wells = ["polyp<loc_10><loc_20><loc_300><loc_200>", "<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6></poly>",
             "a red polyp<loc_1><loc_2><loc_3><loc_4><sep>", " fold<loc_7><loc_8>"]
    for _ in range(800):
        seq = random_ids(rng, vocab, tokenizer)
        if rng.random() < 0.4:
            seq = encode(tokenizer, rng.choice(wells)) + seq
        check(vocab, seq, size=(rng.randint(1, 4000), rng.randint(1, 4000)))


def test_native_raw_output_equals_twin(vocab, tokenizer):
    # the arrays of the C++ decoder and of its Python twin, every grammar, both id dtypes
    mod = gi_sdk.native.native()
    if mod is None:
        pytest.skip("gi_sdk._native is not built")
    rng = random.Random("raw")
    for k in range(3000):
        ids = np.array(random_ids(rng, vocab, tokenizer), np.int64 if k % 2 else np.int32)
        for grammar in range(8):
            a = mod.decode_tokens(ids, vocab.classes, vocab.loc_begin, grammar, 1920.0, 1080.0)
            b = decode_tokens_python(ids, vocab.classes, vocab.loc_begin, grammar, 1920.0, 1080.0)
            assert a[0] == b[0] and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a[1:], b[1:]))


_piece = st.one_of(st.integers(0, 999).map(lambda b: ("loc", b)), st.sampled_from(
    ["<s>", "</s>", "<pad>", "<sep>", "<poly>", "</poly>", "<od>", "<foo>", "a<b", "polyp", " red", "\n", " ", "é",
     "the image", "<", "x"]).map(lambda t: ("text", t)), st.integers(-3, 2000).map(lambda i: ("id", i)))


@hypothesis.settings(max_examples=600, deadline=None, derandomize=True, database=None)
@hypothesis.given(pieces=st.lists(_piece, max_size=30), w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_hypothesis_sequences(tokenizer, vocab, pieces, w, h):
    # hypothesis combines locations, specials, text and raw ids in orders we did not think of
    ids = []
    for kind, value in pieces:
        if kind == "loc":
            ids.append(vocab.loc_begin + value)
        elif kind == "id":
            ids.append(value)
        else:
            ids += encode(tokenizer, value)
    check(vocab, ids, size=(w, h))


def test_against_transformers(hf_processor, vocab, tokenizer):
    # Florence-2's own tasks: decode_ids truncated to ints == post_process_generation
    rng = random.Random("hf")
    ids_vocab = TokenVocab.from_tokenizer(hf_processor.tokenizer)  # a transformers tokenizer works too
    for _ in range(150):
        seq = [i for i in random_ids(rng, vocab, tokenizer) if i < len(ids_vocab.classes)]
        ids = np.array([2, 0] + seq + [2], np.int64)
        text = ids_vocab.decode(ids)
        size = (rng.randint(1, 3000), rng.randint(1, 3000))
        for task, (kind, grammar_task) in HF_TASKS.items():
            want = hf_processor.post_process_generation(text, task=task, image_size=size)[task]
            assert want == parse_florence(text, task, size)[task]
            got = decode_ids(ids, kind, size, ids_vocab, task=grammar_task)
            truncate = lambda a: np.asarray(a, np.float32).astype(np.int32).ravel().tolist()  # noqa: E731
            boxes = [truncate(b) for b in got.boxes]
            polygons = [[truncate(r) for r in inst] for inst in got.polygons]
            assert boxes == want.get("bboxes", []) and polygons == want.get("polygons", []), text
            labels = got.box_labels + got.polygon_labels
            assert labels == want.get("labels", want.get("bboxes_labels", []) + want.get("polygons_labels", [])), text
            SEEN["hf"] += 1


BAD = [
    # (ids, kind, size, why)
    ([1, 2, 3], BOXES, (10, 10), "a list, not an array"),
    (np.array([1.0, 2.0]), BOXES, (10, 10), "float ids"),
    (np.zeros((2, 2), np.int64), BOXES, (10, 10), "2-D ids"),
    (np.zeros(3, np.int64), BOXES, None, "locations without an image size"),
    (np.zeros(3, np.int64), BOXES, (0, 10), "zero width"),
    (np.zeros(3, np.int64), "masks", (10, 10), "unknown output kind"),
]


@pytest.mark.parametrize("ids, kind, size, why", BAD, ids=[c[-1] for c in BAD])
def test_bad_inputs(impl, vocab, ids, kind, size, why):
    with pytest.raises(ValueError):
        decode_ids(ids, kind, size, vocab)
