"""Grammar-constrained decoding: a token grammar per task that masks the logits so that the
output always parses into the task's shape.

    labelled boxes   (detect, count, ground, dense_region_caption, open_vocabulary_detect):
                     ( label <loc>{4} (<loc>{4})* )*            label: >= 1 visible ASCII word piece
    boxes            (region_proposal): ( <loc>{4} )*
    polygons         (segment, region_to_segmentation), the codec's form:
                     <poly> (<loc_x><loc_y>){3,} </poly> ( <sep> <poly> ... </poly> )*
    labelled points  (point): ( label <loc_x><loc_y> (<loc_x><loc_y>)* )*
    answers          (ask, explain, caption, ...): ordinary text, no location, structure or task
                     tokens, and at least one visible ASCII word piece (no empty "zero-case" answer)

Every output may open with ``<s>`` (Florence-2 writes it first) and ends with ``</s>`` at an
instance boundary. Label tokens are plain text tokens without a newline (a newline in a phrase
makes transformers drop the instance) and without ``<`` (text pieces could form a tag); both
are refused in answers too, so an answer never hides a location token in its text. What stays
unguarded: a phrase-grounding phrase the checkpoint bans (``"the image"``) still has its
instance dropped by the parser, as transformers does.

**The budget rule.** Each state knows the fewest tokens that close the output from it (the
rest of the instance, then ``</s>``). A token is allowed only when, after it, the tokens left
in the budget can still close the output; so an instance is never started that the budget
cannot finish, nothing unfinished is ever emitted, and the last token the budget allows is
``</s>``. (When even the shortest output does not fit, e.g. an answer with a budget of 1, the
grammar closes at once: ``</s>``, an empty result.)

**The protocol** ``gi_sdk.generate.greedy`` uses (a JSON grammar plugs into the same hook):

    cursor = grammar.start(max_new_tokens)  # a fresh cursor per sequence; grammar is shared, immutable
    mask = cursor.allowed()                 # bool numpy (V,): the tokens allowed at this step; V may be
                                            # shorter than the logits (ids past it are refused)
    cursor.advance(token_id)                # the token chosen (raises GrammarError if not allowed)

``allowed`` must never be all False, and must allow only EOS at the last step of the budget
given to ``start``; the loop stops a sequence at EOS. Probabilities and confidence are taken
from the model's unmasked distribution: the grammar decides what is emitted, not how sure the
model was.

Hand-written on purpose: the constrained-decoding libraries (outlines, xgrammar,
transformers-cfg) compile grammars over the *characters* of token strings, and Florence-2's
structure lives in added tokens (``<loc_0>`` .. ``<loc_999>``, ``<poly>``, ``<sep>``).
llguidance (which ``gi_sdk.json_grammar`` uses for JSON answers) can name token ids, but it
does not know the token budget, so it cannot close an output at an instance boundary before
the budget cuts it (``gi_sdk.json_grammar`` documents the same gap), and it would make a
torch-free onnxruntime install depend on it. The languages here are small: a dozen states over
ten token classes. Each (state, tokens left) pair maps to one of a few masks computed once, so
a step costs one row lookup, with no Python loop over the vocabulary.
"""
from __future__ import annotations

import numpy as np

from .errors import GrammarError
from .florence_parser import KIND_GRAMMARS
from .token_grammar import LOC, POLY, POLY_END, SEP, TEXT

#: Token classes the grammars read (one per vocabulary id).
OTHER, EOS, BOS, LOCATION, POLY_OPEN, POLY_CLOSE, SEPARATOR, WORD, BLANK, NEWLINE = range(10)
CLASS_NAMES = ("other", "eos", "bos", "loc", "<poly>", "</poly>", "<sep>", "word", "blank", "newline")

_DONE = "done"
_START = "start"


class GrammarVocab:
    """The grammar class of every token id of a tokenizer (built once per tokenizer).

    classes: uint8 (V,) one of OTHER, EOS, BOS, LOCATION, POLY_OPEN, POLY_CLOSE, SEPARATOR,
        WORD (text with a visible ASCII character, no newline), BLANK (text with none, no
        newline), NEWLINE (text with a newline). Tags, task tokens, ``<pad>``, ``<unk>``,
        text pieces with ``<`` and pieces with a control character (DEL, C0/C1 codes but tab
        and line breaks) are OTHER: no grammar allows them.
    """

    def __init__(self, classes: np.ndarray, eos_id: int, bos_id: int | None):
        self.classes = np.asarray(classes, np.uint8)
        self.classes.setflags(write=False)
        self.eos_id, self.bos_id = int(eos_id), bos_id
        self._grammars: dict = {}

    @classmethod
    def from_token_vocab(cls, vocab, eos_id: int, bos_id: int | None = None) -> "GrammarVocab":
        """From a ``gi_sdk.token_decoder.TokenVocab`` (its id classes; text ids are read once)."""
        kinds = vocab.classes
        classes = np.full(len(kinds), OTHER, np.uint8)
        classes[kinds == LOC] = LOCATION
        classes[kinds == POLY] = POLY_OPEN
        classes[kinds == POLY_END] = POLY_CLOSE
        classes[kinds == SEP] = SEPARATOR
        text_ids = np.flatnonzero(kinds == TEXT)
        texts = vocab.tokenizer.decode_batch([[int(i)] for i in text_ids], skip_special_tokens=False)
        for i, text in zip(text_ids.tolist(), texts):
            if any(c < " " and c not in "\t\n\r" or "\x7f" <= c <= "\x9f" for c in text):
                continue  # control characters (byte-level pieces like DEL): no output needs them
            if "\n" in text or "\r" in text:
                classes[i] = NEWLINE
            elif any(c.isascii() and c.isprintable() and not c.isspace() for c in text):
                classes[i] = WORD
            else:
                classes[i] = BLANK
        classes[eos_id] = EOS
        if bos_id is not None and bos_id != eos_id:
            classes[bos_id] = BOS
        return cls(classes, eos_id, bos_id)

    @classmethod
    def from_tokenizer(cls, tokenizer, eos_id: int, bos_id: int | None = None) -> "GrammarVocab":
        from .token_decoder import TokenVocab

        return cls.from_token_vocab(TokenVocab.from_tokenizer(tokenizer), eos_id, bos_id)

    def grammar(self, name: str) -> "TokenGrammar":
        """The compiled grammar ``name`` (one of ``MACHINES``) for this vocabulary, cached."""
        g = self._grammars.get(name)
        if g is None:
            if name not in MACHINES:
                raise ValueError(f"unknown grammar {name!r}; known: {sorted(MACHINES)}")
            g = self._grammars[name] = TokenGrammar(name, MACHINES[name], self)
        return g

    def for_task(self, task) -> "TokenGrammar | None":
        """The grammar of a ``gi_sdk.tasks.Task`` (None for a parse type no grammar covers)."""
        name = grammar_name(task)
        return self.grammar(name) if name is not None else None


# ------------------------------------------------------------------ the machines
# state -> {token class: next state}; "start" is added as the first state plus an optional <s>.
# A state is named after what was written last: "x1" = a box's first coordinate, "box" = a whole box.
_L = {WORD: "label", BLANK: "label_blank"}
_LABEL = {"label_blank": {WORD: "label", BLANK: "label_blank"}}

MACHINES = {
    "labelled_boxes": {
        "first": {EOS: _DONE, **_L}, **_LABEL,
        "label": {WORD: "label", BLANK: "label", LOCATION: "x1"},
        "x1": {LOCATION: "y1"}, "y1": {LOCATION: "x2"}, "x2": {LOCATION: "box"},
        "box": {EOS: _DONE, LOCATION: "x1", **_L},
    },
    "boxes": {
        "first": {EOS: _DONE, LOCATION: "x1"},
        "x1": {LOCATION: "y1"}, "y1": {LOCATION: "x2"}, "x2": {LOCATION: "box"},
        "box": {EOS: _DONE, LOCATION: "x1"},
    },
    "polygons": {
        "first": {EOS: _DONE, POLY_OPEN: "p0"},
        # p<k>: k coordinates of the polygon so far; p6 / p7: >= 3 points, even / odd
        **{f"p{k}": {LOCATION: f"p{k + 1}"} for k in range(6)},
        "p6": {LOCATION: "p7", POLY_CLOSE: "closed"}, "p7": {LOCATION: "p6"},
        "closed": {EOS: _DONE, SEPARATOR: "next"}, "next": {POLY_OPEN: "p0"},
    },
    "labelled_points": {
        "first": {EOS: _DONE, **_L}, **_LABEL,
        "label": {WORD: "label", BLANK: "label", LOCATION: "x"},
        "x": {LOCATION: "point"},
        "point": {EOS: _DONE, LOCATION: "x", **_L},
    },
    "answer": {
        "first": {WORD: "text", BLANK: "first", NEWLINE: "first"},
        "text": {WORD: "text", BLANK: "text", NEWLINE: "text", EOS: _DONE},
    },
}

#: transformers' parse type (and gi_sdk's "points") -> grammar
_BY_PARSE_TYPE = {
    "pure_text": "answer",
    "description_with_bboxes": "labelled_boxes",
    "phrase_grounding": "labelled_boxes",
    # any <poly> would turn every instance into a polygon: the grammar writes boxes
    "description_with_bboxes_or_polygons": "labelled_boxes",
    "bboxes": "boxes",
    "polygons": "polygons",
    "points": "labelled_points",
}


def grammar_name(task) -> str | None:
    """The grammar a task's output is held to (None: no grammar covers its parse type)."""
    parse_type = task.hf_parse_type or KIND_GRAMMARS[task.output][0]
    return _BY_PARSE_TYPE.get(parse_type)


class TokenGrammar:
    """One compiled machine over a ``GrammarVocab``; immutable, shared by threads and sequences.

    Tables: ``next`` (S, C) the state after a token class (-1: refused); ``fits`` (S, K + 2, C)
    whether a class is allowed with k tokens left (k capped at K + 1, past which the budget
    never bites); ``masks`` (U, V) the few distinct token masks and ``mask_of`` (S, K + 2) the
    mask of each (state, tokens left).
    """

    def __init__(self, name: str, machine: dict, vocab: GrammarVocab):
        self.name, self.vocab = name, vocab
        first = machine["first"]
        start = dict(first)
        if vocab.bos_id is not None:
            start[BOS] = "first"
        states = [_START, *machine, _DONE]
        self.states = states
        index = {s: i for i, s in enumerate(states)}
        n, c = len(states), len(CLASS_NAMES)
        nxt = np.full((n, c), -1, np.int32)
        for s, moves in {_START: start, **machine}.items():
            for cls, target in moves.items():
                nxt[index[s], cls] = index[target]
        # fewest tokens that close the output from each state (</s> included)
        dist = np.full(n, np.iinfo(np.int32).max // 2, np.int64)
        dist[index[_DONE]] = 0
        for _ in range(n):
            for s in range(n):
                ok = nxt[s] >= 0
                if ok.any():
                    dist[s] = min(dist[s], 1 + dist[nxt[s][ok]].min())
        if dist.max() >= np.iinfo(np.int32).max // 2:
            raise ValueError(f"grammar {name!r}: a state cannot reach the end")
        self.max_close = int(dist.max())
        k_cap = self.max_close + 1
        after = np.where(nxt >= 0, 1 + dist[np.maximum(nxt, 0)], np.iinfo(np.int32).max)
        fits = (nxt >= 0)[:, None, :] & (after[:, None, :] <= np.arange(k_cap + 1)[None, :, None])
        # nothing fits (the budget cannot hold even the shortest output): close at once
        stuck = ~fits.any(axis=2)
        fits[stuck, EOS] = True
        nxt[:, EOS] = np.where(nxt[:, EOS] >= 0, nxt[:, EOS], index[_DONE])
        self.next, self.fits, self.dist = nxt, fits, dist
        rows, mask_of = np.unique(fits.reshape(-1, c), axis=0, return_inverse=True)
        self.masks = rows[:, vocab.classes]          # (U, V) bool, one row per distinct class set
        self.masks.setflags(write=False)
        self.mask_of = mask_of.reshape(n, k_cap + 1).astype(np.int32)
        self._start, self._done, self._k_cap = index[_START], index[_DONE], k_cap

    def __repr__(self) -> str:
        return f"TokenGrammar({self.name!r}, {len(self.states)} states, {len(self.masks)} masks)"

    def start(self, max_new_tokens: int) -> "GrammarCursor":
        """A cursor for one sequence that may generate ``max_new_tokens`` tokens (EOS included)."""
        return GrammarCursor(self, int(max_new_tokens))


class GrammarCursor:
    """Where one sequence stands in its grammar: ``allowed()`` then ``advance(token)`` per step."""

    __slots__ = ("grammar", "state", "left")

    def __init__(self, grammar: TokenGrammar, left: int):
        self.grammar, self.state, self.left = grammar, grammar._start, left

    def allowed(self) -> np.ndarray:
        """bool (V,): the tokens allowed now (a read-only row of the grammar's masks)."""
        g = self.grammar
        return g.masks[g.mask_of[self.state, min(max(self.left, 0), g._k_cap)]]

    def advance(self, token: int) -> None:
        g = self.grammar
        classes = g.vocab.classes
        cls = int(classes[token]) if 0 <= token < len(classes) else OTHER
        k = min(max(self.left, 0), g._k_cap)
        if self.state == g._done or not g.fits[self.state, k, cls]:
            raise GrammarError(
                f"grammar {g.name!r}: token {token} ({CLASS_NAMES[cls]}) is not allowed in state "
                f"{g.states[self.state]!r} with {self.left} tokens left"
            )
        self.state = int(g.next[self.state, cls])
        self.left -= 1

    @property
    def done(self) -> bool:
        """True once EOS was taken."""
        return self.state == self.grammar._done
