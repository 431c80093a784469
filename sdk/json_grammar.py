"""Constrained decoding of JSON answers: every token a decoder-only VLM writes keeps its
answer a fenced json block of the task's schema (``gi_sdk.json_tasks.answer_schema``).

Built on llguidance (the constrained-decoding engine of guidance, also used by vLLM and
llama.cpp): it compiles a Lark grammar with an embedded JSON schema against the model's own
``tokenizer.json`` and computes, per step, the bitmask of the tokens that keep the output
valid. It runs on CPU from a 3 MB wheel with no torch dependency. (xgrammar would do the same
job but pulls in triton, ~290 MB, on every Linux install; lm-format-enforcer walks the
vocabulary in Python.) The answer is held to the layout training writes: ``json.dumps``
separators (``", "``, ``": "``), the properties in the schema's order, no free whitespace, so
a model cannot wander off into blanks.

The cursor protocol is the one ``gi_sdk.generate.greedy`` uses for Florence-2's grammars:

    cursor = grammar.start(max_new_tokens)
    mask = cursor.allowed()          # bool numpy (V,): tokens allowed now
    cursor.advance(token_id)         # the token chosen

**The budget.** llguidance knows the grammar, not the token budget. So the cursor does: in the
last ``closing_reserve`` tokens of the budget it narrows the allowed tokens to the closing ones
(pieces made only of ``]``, ``}``, ``"``, the fence's backticks and line break, and the end
tokens) whenever the grammar allows any of them, and leaves the grammar's own choice where it
allows none (the rest of a number, a required key: short, mostly forced runs). An answer that
has started a list item near the end of its budget is therefore closed after it instead of
cut. This is a strong bias, not a proof (Florence-2's ``gi_sdk.grammar`` can count exactly
how many tokens a close needs; a JSON schema's shortest close depends on where in a string or
number the answer stands): an answer that still runs out is marked ``parse_failed`` by
``gi_sdk.json_tasks.build_json_result``, never raised.
"""
from __future__ import annotations

import json

import numpy as np

from .errors import GrammarError, require
from .json_tasks import answer_schema

#: Characters of the pieces that close a JSON answer (strings, arrays, objects, the fence).
_CLOSING_CHARS = frozenset(']}"`\n')
#: Tokens of the budget kept for closing (at most a quarter of the budget).
CLOSING_RESERVE = 48

#: The layout ``json.dumps`` writes, which is what training targets use.
_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def lark_grammar(kind: str, image_size=None) -> str:
    """The Lark grammar of a ``kind`` answer: an optional leading space (chat templates that end
    the prompt with ``Assistant:`` often get one), the json fence, the JSON value, the fence.
    Coordinates stay inside ``image_size`` (width, height) when given.
    """
    schema = dict(answer_schema(kind, image_size), **{"x-guidance": _LAYOUT})
    return ('start: " "? "```" ("json" | "JSON") "\\n" answer "\\n```"\n'
            f"answer: %json {json.dumps(schema)}\n")


class JsonGrammar:
    """The grammar of one answer kind (and frame size) over one tokenizer (build once,
    ``start`` per answer; compiling takes about a millisecond).

    tokenizer_json: the model's ``tokenizer.json`` text (``tokenizers.Tokenizer.to_str()``), or
    an ``llguidance.LLTokenizer`` made from it (share one between grammars: it is the costly part).
    eos_ids: the ids that end an answer (end of turn, EOS); allowed once the fence is closed.
    vocab_size: the width of the model's logits when it is larger than the tokenizer's
    vocabulary (padding rows are never allowed).
    """

    def __init__(self, tokenizer_json, eos_ids, kind: str, vocab_size: int | None = None, image_size=None):
        self._llg = llg = require("llguidance", "torch")
        eos_ids = [int(i) for i in eos_ids]
        self.tokenizer = tokenizer_json if isinstance(tokenizer_json, llg.LLTokenizer) else \
            llg.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=eos_ids)
        self.grammar = lark_grammar(kind, image_size)
        error = llg.LLMatcher.validate_grammar(self.grammar, self.tokenizer)
        if error:
            raise GrammarError(f"cannot build the JSON grammar of {kind!r} answers: {error}")
        self.kind, self.eos_ids = kind, eos_ids
        self.closing = self._closing_tokens()

    def _closing_tokens(self) -> np.ndarray:
        """Bool (V,): the pieces made only of closing characters, and the end tokens."""
        tok = self.tokenizer
        closing = np.zeros(self.vocab_size, bool)
        for i in range(tok.vocab_size):
            text = tok.decode_str([i])
            closing[i] = bool(text) and set(text) <= _CLOSING_CHARS
        closing[[i for i in self.eos_ids if i < self.vocab_size]] = True
        return closing

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def start(self, max_new_tokens: int | None = None) -> "JsonCursor":
        """A fresh cursor at the start of an answer; with ``max_new_tokens`` it steers to a close
        in the budget's last tokens (module doc)."""
        reserve = 0 if max_new_tokens is None else min(CLOSING_RESERVE, int(max_new_tokens) // 4)
        return JsonCursor(self._llg.LLMatcher(self.tokenizer, self.grammar, log_level=0), self.vocab_size,
                          self.closing, None if max_new_tokens is None else int(max_new_tokens) - reserve)


class JsonCursor:
    """Where one answer stands in its grammar."""

    def __init__(self, matcher, vocab_size: int, closing: np.ndarray | None = None, close_after: int | None = None):
        import llguidance.numpy as llg_numpy

        self._matcher, self._fill = matcher, llg_numpy.fill_next_token_bitmask
        self._bits = llg_numpy.allocate_token_bitmask(1, vocab_size)
        self._vocab = vocab_size
        self._closing, self._close_after, self._taken = closing, close_after, 0

    def allowed(self) -> np.ndarray:
        """Bool (V,): the tokens that keep the answer valid (only EOS once it is complete)."""
        self._fill(self._matcher, self._bits)
        mask = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self._vocab].astype(bool)
        if not mask.any():
            raise GrammarError(f"the JSON grammar allows no token ({self._matcher.get_error()})")
        if self._close_after is not None and self._taken >= self._close_after:
            narrowed = mask & self._closing
            if narrowed.any():
                return narrowed
        return mask

    def advance(self, token_id: int) -> None:
        """Take the chosen token; GrammarError if the grammar does not allow it."""
        if not self._matcher.consume_token(int(token_id)):
            raise GrammarError(f"token {token_id} is not allowed here ({self._matcher.get_error()})")
        self._taken += 1

    @property
    def complete(self) -> bool:
        """True once the answer is a whole fenced json block."""
        return self._matcher.is_accepting()
