"""Per-instance probability: each instance's score is the geometric mean of the probabilities
of its own label and location tokens, aligned with the Result's instances."""
import numpy as np
import pytest

from gi_sdk import tasks as T
from gi_sdk.decode import build_result
from gi_sdk.result import Result
from gi_sdk.scores import instance_scores

SIZE = (320, 240)


@pytest.fixture(scope="module")
def tok_vocab(tiny_tokenizer_dir):
    from tokenizers import Tokenizer

    from gi_sdk.token_decoder import TokenVocab

    tok = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    return tok, TokenVocab.from_tokenizer(tok)


def _piece(tok, text, p):
    ids = tok.encode(text, add_special_tokens=False).ids
    return ids, [p] * len(ids)


def _gm(values):
    return float(np.exp(np.mean(np.log(values))))


def _scored(tok, vocab, task, pieces):
    """Token ids and probabilities from (text, probability) pieces; the Result and its scores."""
    ids, probs = [], []
    for text, p in pieces:
        i, q = _piece(tok, text, p)
        ids += i
        probs += q
    ids.append(2)
    probs.append(0.99)
    text = tok.decode([2, *ids], skip_special_tokens=False)
    result = build_result(T.get_task(task), text, SIZE, raw_text=text)
    return result, instance_scores(result, np.array(ids), np.array(probs, np.float32), vocab), ids, probs


def _n(tok, text):
    return len(tok.encode(text, add_special_tokens=False).ids)


@pytest.mark.parametrize("why,task,pieces,expected", [
    ("each box: its own label and its four locations", "detect",
     [("polyp", 0.9), ("<loc_1><loc_2><loc_3><loc_4>", 0.5), (" instrument", 0.6),
      ("<loc_5><loc_6><loc_7><loc_8>", 0.2)],
     lambda n: [_gm([0.9] * n("polyp") + [0.5] * 4), _gm([0.6] * n(" instrument") + [0.2] * 4)]),
    ("boxes sharing a label both count it", "detect",
     [("polyp", 0.9), ("<loc_1><loc_2><loc_3><loc_4>", 0.5), ("<loc_5><loc_6><loc_7><loc_8>", 0.1)],
     lambda n: [_gm([0.9] * n("polyp") + [0.5] * 4), _gm([0.9] * n("polyp") + [0.1] * 4)]),
    ("label-less boxes: locations only", "region_proposal",
     [("<loc_1><loc_2><loc_3><loc_4>", 0.5), ("<loc_5><loc_6><loc_7><loc_8>", 0.25)],
     lambda n: [0.5, 0.25]),
    ("polygons: the locations of each (structure tokens are not the instance's content)", "segment",
     [("<poly>", 0.01), ("<loc_1><loc_2><loc_9><loc_2><loc_9><loc_9>", 0.4), ("</poly><sep><poly>", 0.01),
      ("<loc_20><loc_20><loc_30><loc_20><loc_30><loc_30><loc_20><loc_30>", 0.8), ("</poly>", 0.01)],
     lambda n: [0.4, 0.8]),
    ("points: the label covers every point after it", "point",
     [("polyp", 0.9), ("<loc_10><loc_10>", 0.5), ("<loc_20><loc_20>", 0.3), (" snare", 0.7), ("<loc_30><loc_30>", 0.6)],
     lambda n: [_gm([0.9] * n("polyp") + [0.5] * 2), _gm([0.9] * n("polyp") + [0.3] * 2),
                _gm([0.7] * n(" snare") + [0.6] * 2)]),
    ("unparsed locations before the box (a short run) are not the box's, even where their bins "
     "and the box's first ones read as the box", "detect",
     [("<loc_5><loc_5>", 0.05), ("polyp", 0.9), ("<loc_5><loc_5><loc_5><loc_5>", 0.5)],
     lambda n: [_gm([0.9] * n("polyp") + [0.5] * 4)]),
])
def test_instance_scores(tok_vocab, why, task, pieces, expected):
    tok, vocab = tok_vocab
    result, scores, _, _ = _scored(tok, vocab, task, pieces)
    want = expected(lambda text: _n(tok, text))
    assert len(result) == len(want), why
    np.testing.assert_allclose(scores, want, rtol=1e-5, err_msg=why)
    assert scores.dtype == np.float32


def test_no_instances_no_scores(tok_vocab):
    tok, vocab = tok_vocab
    result, scores, _, _ = _scored(tok, vocab, "ask", [("Yes, one polyp.", 0.5)])
    assert len(result) == 0 and scores.shape == (0,) and scores.dtype == np.float32


# ------------------------------------------------------------------ a place, not a bin
class _SpreadLocations:
    """A stand-in decoder: first a label token, then location tokens whose probability is
    spread like a softly taught model's (a Gaussian of ``sigma`` bins around bin 500), then EOS."""

    def __init__(self, vocab_size, loc_begin, label_id, sigma):
        self.size, self.loc_begin, self.label_id, self.sigma, self.step = vocab_size, loc_begin, label_id, sigma, 0

    def decode_step(self, state, tokens, cache=None):
        logits = np.full((len(tokens), self.size), -30.0, np.float32)
        if self.step == 0:
            logits[:, self.label_id] = 5.0
        elif self.step <= 4:
            bins = np.arange(1000)
            logits[:, self.loc_begin:self.loc_begin + 1000] = -0.5 * ((bins - 500) / self.sigma) ** 2
        else:
            logits[:, 2] = 5.0
        self.step += 1
        return logits, None


@pytest.mark.parametrize("sigma,chosen,place", [(6.0, 0.066, 0.95), (0.5, 0.787, 1.0)])
def test_a_location_counts_the_probability_of_its_place(tok_vocab, sigma, chosen, place):
    # a sure coordinate spread over neighbouring bins (soft location labels) scores as sure as
    # its place is; the chosen bin alone would say 0.07. A sharp one scores the same either way.
    from gi_sdk.generate import LOCATION_WINDOW, greedy

    tok, vocab = tok_vocab
    label = tok.encode("polyp", add_special_tokens=False).ids[0]
    backend = _SpreadLocations(len(vocab.classes), vocab.loc_begin, label, sigma)
    gen = greedy(backend, None, start_id=2, eos_id=2, max_new_tokens=10, locations=(vocab.loc_begin, 1000))
    assert gen.token_ids[1:5].tolist() == [vocab.loc_begin + 500] * 4
    np.testing.assert_allclose(gen.token_probs[1:5], chosen, atol=0.01)
    window = np.exp(-0.5 * (np.arange(-LOCATION_WINDOW, LOCATION_WINDOW + 1) / sigma) ** 2)
    whole = np.exp(-0.5 * ((np.arange(1000) - 500) / sigma) ** 2)
    np.testing.assert_allclose(gen.token_scores[1:5], window.sum() / whole.sum(), rtol=1e-4)
    assert gen.token_scores[1:5].min() >= place - 0.01
    np.testing.assert_array_equal(gen.token_scores[[0, 5]], gen.token_probs[[0, 5]])   # not locations
    # without locations the loop keeps no place scores (instance scores use token_probs)
    assert greedy(_SpreadLocations(len(vocab.classes), vocab.loc_begin, label, sigma), None, start_id=2, eos_id=2,
                  max_new_tokens=10).token_scores is None


# ------------------------------------------------------------------ Result.scores
def _two(**kw):
    return Result(task="detect", boxes=[[0, 0, 10, 10], [5, 5, 20, 30]], labels=["polyp", "instrument"],
                  points=[[5, 5], [12.5, 17.5]], count=2, image_size=(64, 48), **kw)


def test_scores_are_validated_and_follow_the_instances():
    assert Result.empty("detect").scores.shape == (0,) and Result.empty("detect").scores.dtype == np.float32
    r = _two(scores=[0.25, 0.75])
    assert r.scores.dtype == np.float32
    np.testing.assert_array_equal(r[r.labels_array == "instrument"].scores, [0.75])
    assert r.to_dict()["scores"] == [0.25, 0.75]
    assert _two().scores.shape == (0,)  # not known: empty, not made up
    for bad in ([0.5],            # one score for two instances
                [0.5, 1.5],       # not a probability
                [0.5, np.nan]):
        with pytest.raises(ValueError, match="scores"):
            _two(scores=bad)


def test_overlay_captions_show_each_instance_score(monkeypatch):
    from gi_sdk import overlay

    seen = []
    monkeypatch.setattr(overlay, "instance_caption",
                        lambda label, confidence=None, track_id=None: seen.append(confidence) or label)
    frame = np.zeros((48, 64, 3), np.uint8)
    overlay.draw_result(frame, _two(scores=[0.25, 0.75], confidence=0.5))
    assert seen == [0.25, 0.75]
    seen.clear()
    overlay.draw_result(frame, _two(confidence=0.5))  # no scores: the result's confidence
    assert seen == [0.5, 0.5]
