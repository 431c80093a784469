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

**A label vocabulary.** A model trained on a closed set of class names ("polyp",
"instrument") can still write a label outside it when it is unsure ("polyppolyppolyp"): the
open grammar allows any word pieces. Given the model's labels (``labels=`` of ``grammar`` and
``for_task``; a Session takes them from the bundle), the label of detect / count / point
instances (``gi_sdk.tasks.CLASS_NAME_TASKS``) must be one of them, spelt as the tokenizer
writes it (with or without a leading space): the label states become a trie over their token
ids, each of those ids its own token class.

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
from .tasks import CLASS_NAME_TASKS
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
    tokenizer: the ``tokenizers.Tokenizer`` that spells labels into token ids (needed only for
        grammars with a label vocabulary).
    """

    def __init__(self, classes: np.ndarray, eos_id: int, bos_id: int | None, tokenizer=None):
        self.classes = np.asarray(classes, np.uint8)
        self.classes.setflags(write=False)
        self.eos_id, self.bos_id = int(eos_id), bos_id
        self.tokenizer = tokenizer
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
        return cls(classes, eos_id, bos_id, tokenizer=vocab.tokenizer)

    @classmethod
    def from_tokenizer(cls, tokenizer, eos_id: int, bos_id: int | None = None) -> "GrammarVocab":
        from .token_decoder import TokenVocab

        return cls.from_token_vocab(TokenVocab.from_tokenizer(tokenizer), eos_id, bos_id)

    def grammar(self, name: str, labels=()) -> "TokenGrammar":
        """The compiled grammar ``name`` (one of ``MACHINES``) for this vocabulary, cached;
        ``labels``: the class names a labelled grammar's labels must be (empty: any words)."""
        labels = check_labels(labels)
        key = (name, labels) if labels and name in _LABELLED else (name, ())
        g = self._grammars.get(key)
        if g is None:
            if name not in MACHINES:
                raise ValueError(f"unknown grammar {name!r}; known: {sorted(MACHINES)}")
            if key[1]:
                machine, classes, names = self._closed_labels(MACHINES[name], labels)
                g = TokenGrammar(name, machine, self, classes, names, labels)
            else:
                g = TokenGrammar(name, MACHINES[name], self)
            self._grammars[key] = g
        return g

    def for_task(self, task, labels=()) -> "TokenGrammar | None":
        """The grammar of a ``gi_sdk.tasks.Task`` (None for a parse type no grammar covers);
        ``labels`` apply to the tasks whose labels are class names (``CLASS_NAME_TASKS``)."""
        name = grammar_name(task)
        if name is None:
            return None
        return self.grammar(name, labels if task.name in CLASS_NAME_TASKS else ())

    def label_ids(self, label: str) -> list[list[int]]:
        """The token spellings a label may be written in: as the tokenizer writes it after a tag
        (training targets: ``polyp<loc_..>``) and after a space."""
        if self.tokenizer is None:
            raise ValueError("a label vocabulary needs the tokenizer: build the GrammarVocab with "
                             "from_token_vocab or from_tokenizer")
        spellings = []
        for text in (label, " " + label):
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            bad = [i for i in ids if not 0 <= i < len(self.classes) or self.classes[i] not in (WORD, BLANK)]
            if bad or not ids:
                raise ValueError(f"label {label!r} spells into token(s) {bad or ids} that are not plain text")
            if ids not in spellings:
                spellings.append(ids)
        return spellings

    def _closed_labels(self, machine: dict, labels: tuple):
        """``machine`` with its open label states replaced by a trie over the labels' token ids.

        Returns (machine, classes, class names): every id that spells a label gets its own class
        (10, 11, ...), so the trie's moves can name single tokens; the machine's other classes
        keep their ids. Trie node k is state ``label<k>``; a node that ends a label moves on to
        the coordinates on a location token, as the open ``label`` state does.
        """
        spellings = [ids for label in labels for ids in self.label_ids(label)]
        token_class, classes = {}, self.classes.astype(np.int32)   # past 255 classes when labels are many
        names = list(CLASS_NAMES)
        for tok in dict.fromkeys(t for ids in spellings for t in ids):
            token_class[tok] = classes[tok] = len(names)
            names.append(f"label token {tok}")
        children: list[dict] = [{}]          # trie: node -> {class: child node}
        ends = set()
        for ids in spellings:
            node = 0
            for tok in ids:
                node = children[node].setdefault(token_class[tok], len(children))
                if node == len(children):
                    children.append({})
            ends.add(node)
        open_states = {"label", "label_blank"}
        after_label = machine["label"][LOCATION]
        out = {}
        for state, moves in machine.items():
            if state in open_states:
                continue
            kept = {c: t for c, t in moves.items() if t not in open_states}
            if len(kept) < len(moves):      # the open machine starts a label here: the trie's root
                kept.update({c: f"label{child}" for c, child in children[0].items()})
            out[state] = kept
        for node in range(1, len(children)):
            moves = {c: f"label{child}" for c, child in children[node].items()}
            if node in ends:
                moves[LOCATION] = after_label
            out[f"label{node}"] = moves
        return out, classes, tuple(names)


def check_labels(labels) -> tuple:
    """A label vocabulary as sorted distinct class names (ValueError for one that cannot be a
    label: not a string, empty, or with ``<`` or a line break, which no label grammar writes)."""
    if isinstance(labels, str):
        raise ValueError(f"labels must be a list of class names, got the string {labels!r}")
    out = set()
    for label in labels:
        if not isinstance(label, str) or not label.strip() or "<" in label or "\n" in label or "\r" in label:
            raise ValueError(f"label {label!r} cannot be a class name: give non-empty text without "
                             "'<' or a line break")
        out.add(label.strip())
    return tuple(sorted(out))


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

#: the grammars whose instances carry a label (a label vocabulary can close them)
_LABELLED = frozenset(name for name, machine in MACHINES.items() if "label" in machine)

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

    def __init__(self, name: str, machine: dict, vocab: GrammarVocab, classes=None, class_names=CLASS_NAMES,
                 labels=()):
        self.name, self.vocab, self.labels = name, vocab, tuple(labels)
        self.classes = vocab.classes if classes is None else classes   # (V,) the class of each token id
        self.class_names = tuple(class_names)
        first = machine["first"]
        start = dict(first)
        if vocab.bos_id is not None:
            start[BOS] = "first"
        states = [_START, *machine, _DONE]
        self.states = states
        index = {s: i for i, s in enumerate(states)}
        n, c = len(states), len(self.class_names)
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
        self.masks = rows[:, self.classes]           # (U, V) bool, one row per distinct class set
        self.masks.setflags(write=False)
        self.mask_of = mask_of.reshape(n, k_cap + 1).astype(np.int32)
        self._start, self._done, self._k_cap = index[_START], index[_DONE], k_cap

    def __repr__(self) -> str:
        labels = f", labels {list(self.labels)}" if self.labels else ""
        return f"TokenGrammar({self.name!r}{labels}, {len(self.states)} states, {len(self.masks)} masks)"

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
        classes = g.classes
        cls = int(classes[token]) if 0 <= token < len(classes) else OTHER
        k = min(max(self.left, 0), g._k_cap)
        if self.state == g._done or not g.fits[self.state, k, cls]:
            raise GrammarError(
                f"grammar {g.name!r}: token {token} ({g.class_names[cls]}) is not allowed in state "
                f"{g.states[self.state]!r} with {self.left} tokens left"
            )
        self.state = int(g.next[self.state, cls])
        self.left -= 1

    @property
    def done(self) -> bool:
        """True once EOS was taken."""
        return self.state == self.grammar._done
