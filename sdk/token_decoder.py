"""Generated token ids -> boxes, polygons, points and label text, without decoding to text first.

transformers' Florence-2 post-processor decodes the ids to text and runs regexes over it.
``decode_ids`` reads the same instances straight from the ids and decodes only the label text,
span by span, with the tokenizer (each distinct span once: a model repeats its labels). It
returns exactly what ``parse_instances(tokenizer.decode(ids), ...)`` returns. With the
extension the whole call after the argument checks is one native call
(``TokenVocab.native_decoder``: the token rules, the cached span texts, the ``Parsed``) and
takes a few microseconds; without it the Python twin ``decode_tokens_python`` and
``_assemble`` give the same result.

How the text rules become token rules. Every token falls in one class (``TokenVocab``):
location ``<loc_N>``, ``<sep>``, ``<poly>``, ``</poly>``, dropped (``<s>``, ``</s>``,
``<pad>``, unknown ids: the parser deletes them from the text), *tag* (any other added token
such as ``<od>``: one ``<`` at its start), or text (an ordinary token). Then:

- a label is the text tokens right before a run of locations, back to the previous non-text
  token; when that token is not the end of an instance already read, transformers' pattern
  ``[^<]+`` starts inside it, after its ``<``, so its tail (``loc_12>``, ``sep>``, ``od>``)
  opens the label (a run opening the text is labelled by its own first token's tail). The
  decoder reports a label as (first, end, tail token) indices;
- boxes are groups of 4 in a run of >= 4 locations; polygons and rings follow the same
  ``<poly>``/``</poly>``/``<sep>`` rules as the regexes, on tokens;
- label text rules that need characters (a newline after the first non-space character drops
  the instance, strip, ASCII-only box labels, banned grounding phrases) run in Python on the
  decoded label.

Those token rules are exact unless an ordinary token's text contains ``<``: then text pieces
can form tags (``"<"`` + ``"loc_5>"``) and transformers' result depends on characters the
ids do not show. The decoder flags such sequences (``exact`` false) and ``decode_ids`` then
decodes the whole text and parses it with ``parse_instances``: slower, same answer.
The rules in full: docs/native.md; their Python twin: ``gi_sdk.token_grammar``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from . import native as _native
from .florence_parser import _BART_NOISE, _OTHER_SPECIALS, Parsed, _ascii, _drop, _grammar, parse_instances
from .locations import NUM_BINS
from .token_grammar import (DROP, GRAMMAR_CODES, HAZARD, LOC, POLY, POLY_END, SEP, TAG, TAG_HIDDEN, TEXT,
                            decode_tokens_python)

__all__ = ["TokenVocab", "decode_ids", "decode_tokens_python", "GRAMMAR_CODES"]

_STRUCTURE = {"<sep>": SEP, "<poly>": POLY, "</poly>": POLY_END}
_HIDDEN = set(_OTHER_SPECIALS.pattern.replace("\\", "").split("|"))


@dataclass(eq=False)
class TokenVocab:
    """What the id decoder knows about a tokenizer: one class per id, and the location ids.

    Build it once per tokenizer with ``TokenVocab.from_tokenizer(tokenizer)`` (a
    ``tokenizers.Tokenizer`` or a transformers fast tokenizer).
    """

    tokenizer: object
    classes: np.ndarray          # uint8 (vocab,), the class of each id
    loc_begin: int               # id of <loc_0>; <loc_N> is loc_begin + N
    tails: dict                  # tag id -> its text after the last "<"
    _labels: dict = field(default_factory=dict, repr=False)
    _decoder: object = field(default=None, repr=False)

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TokenVocab":
        tok = getattr(tokenizer, "backend_tokenizer", tokenizer)
        size = tok.get_vocab_size(with_added_tokens=True)
        loc_begin = tok.token_to_id("<loc_0>")
        if loc_begin is None or tok.token_to_id(f"<loc_{NUM_BINS - 1}>") != loc_begin + NUM_BINS - 1:
            raise ValueError("the tokenizer has no consecutive <loc_0> .. <loc_999> tokens")
        added = tok.get_added_tokens_decoder()
        texts = tok.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
        classes = np.full(size, TEXT, np.uint8)
        tails = {}
        for i, text in enumerate(texts):
            if loc_begin <= i < loc_begin + NUM_BINS:
                classes[i] = LOC
            elif i in added and text in _BART_NOISE:
                classes[i] = DROP
            elif i in added and text in _STRUCTURE:
                classes[i] = _STRUCTURE[text]
            elif i in added and text.startswith("<") and text.count("<") == 1:
                classes[i] = TAG_HIDDEN if text in _HIDDEN else TAG
            elif "<" in text:
                classes[i] = HAZARD
            elif text == "":  # nothing in the text: as if the id were not there
                classes[i] = DROP
            if classes[i] in (SEP, POLY, POLY_END, TAG, TAG_HIDDEN):
                tails[i] = text[text.rfind("<") + 1:]
        classes.setflags(write=False)
        return cls(tok, classes, int(loc_begin), tails)

    def tail(self, token_id: int) -> str:
        return _tail(self.tails, self.loc_begin, token_id)

    def decode(self, ids) -> str:
        """Text of ``ids`` as the runtime decodes it (unknown ids decode to nothing)."""
        size = len(self.classes)
        return self.tokenizer.decode([int(i) for i in ids if 0 <= i < size], skip_special_tokens=False)

    def span_text(self, ids: list, start: int, end: int, tail: int = -1, phrase: bool = False):
        """Text of a decoder span of ``ids`` (a list), cleaned as transformers' rules want it
        (see ``_span_text``). Cached per distinct span: a model repeats its labels.
        """
        key = (phrase, ids[tail] if tail >= 0 else -1, tuple(ids[start:end]))
        text = self._labels.get(key, _MISSING)
        if text is _MISSING:
            text = _span_text(self.tokenizer, self.tails, self.loc_begin, len(self.classes), key[2], key[1], phrase)
            if len(self._labels) > 4096:
                self._labels.clear()
            self._labels[key] = text
        return text

    def native_decoder(self, mod):
        """The extension's ``IdDecoder`` for this vocabulary (made once; it keeps the texts of
        the spans it has met)."""
        if self._decoder is None:
            # the text function holds the tokenizer, not the vocab: no reference cycle
            text = partial(_span_text, self.tokenizer, self.tails, self.loc_begin, len(self.classes))
            self._decoder = mod.IdDecoder(self.classes, self.loc_begin, text, _NO_BOXES, _NO_POINTS, Parsed,
                                          _PARSED_FIELDS if _plain_dataclass(Parsed, _PARSED_FIELDS) else None)
        return self._decoder

    def __getstate__(self) -> dict:
        # the native decoder cannot be pickled; a copy makes its own when first used
        return {**self.__dict__, "_decoder": None}


_PARSED_FIELDS = ("text", "boxes", "box_labels", "polygons", "polygon_labels", "points", "point_labels")


def _plain_dataclass(cls, names: tuple) -> bool:
    """True when ``cls(*values)`` does nothing but store each value under its name: a dataclass
    (frozen or not) with exactly these init fields, no ``__post_init__`` and ``object``'s
    ``__new__``. The native decoder then makes the result itself (``object.__new__``, then
    ``object.__setattr__`` per field, which is all such an ``__init__`` does): a frozen
    dataclass's ``__init__`` costs ~1.3 us, a third of a whole ``decode_ids`` call."""
    return (dataclasses.is_dataclass(cls) and cls.__new__ is object.__new__ and not hasattr(cls, "__post_init__")
            and tuple(f.name for f in dataclasses.fields(cls) if f.init) == names
            and all(f.init for f in dataclasses.fields(cls)))


def _tail(tails: dict, loc_begin: int, token_id: int) -> str:
    if loc_begin <= token_id < loc_begin + NUM_BINS:
        return f"loc_{token_id - loc_begin}>"
    return tails.get(int(token_id), "")


def _span_text(tokenizer, tails: dict, loc_begin: int, size: int, span, tail_id: int, phrase: bool):
    """Text of the ids ``span`` (those outside 0 .. size - 1 decode to nothing), cleaned as
    transformers' rules want it.

    Event text (``phrase`` false): specials removed, stripped. Phrase: the tail of token
    ``tail_id`` (if not -1) then the span, ``<s>``/``</s>``/``<pad>`` removed, stripped; None
    when a newline follows its first non-space character (transformers then drops the
    instance).
    """
    raw = tokenizer.decode([i for i in span if 0 <= i < size], skip_special_tokens=False)
    raw = _drop((_tail(tails, loc_begin, tail_id) if tail_id >= 0 else "") + raw, _BART_NOISE)
    if phrase:
        return None if "\n" in raw.lstrip() else raw.strip()
    return _OTHER_SPECIALS.sub("", raw).strip()


_MISSING = object()


def decode_ids(ids, output_kind: str, image_size=None, vocab: TokenVocab | None = None, *,
               task: str | None = None, banned_phrases=("the image",)) -> Parsed:
    """Parse generated token ids by output kind: the same ``Parsed`` as ``parse_instances`` on
    their decoded text, read from the ids.

    ids: 1-D int64 or int32 array (the ``</s>`` generation starts from may be included).
    output_kind, image_size, task, banned_phrases: as for ``gi_sdk.codec.parse_instances``.
    vocab: ``TokenVocab.from_tokenizer(tokenizer)``, built once and reused.

    >>> vocab = TokenVocab.from_tokenizer(tokenizer)                  # doctest: +SKIP
    >>> decode_ids(gen.token_ids, "boxes", (1920, 1080), vocab).boxes  # doctest: +SKIP
    """
    if not isinstance(vocab, TokenVocab):
        raise ValueError(f"vocab: expected a TokenVocab, got {type(vocab).__name__}")
    grammar = _grammar(output_kind, task)
    if image_size is None and grammar != "pure_text":
        raise ValueError(f"output kind {output_kind!r} has locations: pass image_size=(width, height)")
    mod = _native.native()
    if mod is not None:  # one native call does it all (it checks ids and image_size)
        parsed = vocab.native_decoder(mod).decode(ids, GRAMMAR_CODES[grammar], image_size,
                                                  banned_phrases if grammar == "phrase_grounding" else None)
        if parsed is not None:
            return parsed
        return parse_instances(vocab.decode(ids), output_kind, image_size, task=task, banned_phrases=banned_phrases)
    if not (isinstance(ids, np.ndarray) and ids.ndim == 1 and ids.dtype.kind == "i" and ids.dtype.itemsize in (4, 8)):
        got = f"{ids.dtype} {ids.shape}" if isinstance(ids, np.ndarray) else type(ids).__name__
        raise ValueError(f"ids: expected a 1-D int64 or int32 array, got {got}")
    width = height = 1.0
    if image_size is not None:
        width, height = float(image_size[0]), float(image_size[1])
        if not (0 < width < np.inf and 0 < height < np.inf):
            raise ValueError(f"image size must be positive and finite, got {image_size!r}")
    raw = decode_tokens_python(np.ascontiguousarray(ids), vocab.classes, vocab.loc_begin, GRAMMAR_CODES[grammar],
                               width, height)
    if not raw[0]:
        return parse_instances(vocab.decode(ids), output_kind, image_size, task=task, banned_phrases=banned_phrases)
    return _assemble(raw, ids, vocab, grammar, banned_phrases)


def _assemble(raw, ids: np.ndarray, vocab: TokenVocab, grammar: str, banned) -> Parsed:
    (_, _, _, boxes, box_label, poly_xy, rings, instances, instance_label, points, point_event,
     distinct, event_text, label_text) = raw
    id_list = ids.tolist()
    decoded = [vocab.span_text(id_list, a, b, t, phrase=bool(p)) for a, b, t, p in distinct.tolist()]
    texts = [decoded[k] for k in event_text.tolist()]
    phrases = [decoded[k] for k in label_text.tolist()]
    fields = {"text": " ".join(t for t in texts if t)}
    if len(box_label):
        banned = frozenset(banned) if grammar == "phrase_grounding" else frozenset()
        keep, box_labels = [], []
        for j in box_label.tolist():
            ok = j < 0 or (phrases[j] is not None and phrases[j] not in banned)
            keep.append(ok)
            if ok:
                box_labels.append(_ascii(phrases[j]) if j >= 0 else "")
        fields["boxes"] = boxes if all(keep) else boxes[np.asarray(keep, bool)]
        fields["box_labels"] = box_labels
    if len(instance_label):
        polygons, polygon_labels = [], []
        bounds, starts = instances.tolist(), rings.tolist()
        for i, j in enumerate(instance_label.tolist()):
            if phrases[j] is None:
                continue
            polygons.append([poly_xy[starts[r]:starts[r + 1]] for r in range(bounds[i], bounds[i + 1])])
            polygon_labels.append(phrases[j])
        fields["polygons"], fields["polygon_labels"] = polygons, polygon_labels
    if grammar == "points":
        fields["points"] = points
        fields["point_labels"] = [texts[e] if e >= 0 else "" for e in point_event.tolist()]
    for name in ("box_labels", "polygons", "polygon_labels", "point_labels"):
        fields.setdefault(name, [])
    fields.setdefault("boxes", _NO_BOXES)
    fields.setdefault("points", _NO_POINTS)
    return Parsed(**fields)


# shared empty results: read-only, so no caller can change them for the next one
_NO_BOXES, _NO_POINTS = np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32)
_NO_BOXES.setflags(write=False)
_NO_POINTS.setflags(write=False)
