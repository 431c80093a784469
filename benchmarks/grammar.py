"""What grammar-constrained decoding costs per generated token (``gi_sdk.grammar``).

    python benchmarks/grammar.py                 # table on stdout
    python benchmarks/grammar.py --json out/grammar.json

The generation loop ``gi_sdk.generate.greedy`` runs on a stand-in backend that returns
precomputed random logits instantly, once without a grammar and once with each task grammar;
the difference per token is the grammar's whole cost (mask lookup, masked argmax, advance).
Two vocabularies: the tiny test tokenizer (~2.4k ids) and one of Florence-2's size (51,289 ids:
50,265 byte-level BPE pieces + 1,024 added tokens, 1,000 of them locations; the classes are laid
out as Florence-2's are, the grammar only reads classes). Per-token figures are the fastest of
``--repeats`` runs of ``--tokens`` tokens (as ``timeit`` advises: slower runs measure the
other jobs on the machine, not the code).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gi_sdk.generate import greedy
from gi_sdk.grammar import BLANK, BOS, EOS, LOCATION, NEWLINE, OTHER, POLY_CLOSE, POLY_OPEN, SEPARATOR, WORD
from gi_sdk.grammar import GrammarVocab

GRAMMARS = ("labelled_boxes", "boxes", "polygons", "labelled_points", "answer")


class LogitReplay:
    """A backend whose decode step returns the next of a fixed set of logit rows, no model."""

    def __init__(self, rows: np.ndarray):
        self.rows, self.i = rows, 0

    def decode_step(self, state, tokens, cache=None):
        row = self.rows[self.i % len(self.rows)]
        self.i += 1
        return row[None], None


def florence_sized_vocab(seed: int = 0) -> GrammarVocab:
    """51,289 ids with Florence-2's layout: <s> <pad> </s> <unk>, BPE text, then added tokens."""
    rng = np.random.default_rng(seed)
    classes = rng.choice([WORD, BLANK, NEWLINE], size=51289, p=[0.97, 0.02, 0.01]).astype(np.uint8)
    classes[[0, 1, 2, 3]] = [BOS, OTHER, EOS, OTHER]
    classes[50265:51289] = OTHER                     # task and tag tokens
    classes[50269:51269] = LOCATION                  # <loc_0> .. <loc_999>
    classes[[51270, 51271, 51272]] = [SEPARATOR, POLY_OPEN, POLY_CLOSE]
    return GrammarVocab(classes, eos_id=2, bos_id=0)


def tiny_vocab() -> GrammarVocab:
    from tokenizers import Tokenizer

    from gi_sdk.train.tiny import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = Tokenizer.from_file(str(build_tokenizer(Path(tmp)) / "tokenizer.json"))
    return GrammarVocab.from_tokenizer(tok, eos_id=2, bos_id=0)


def per_token_ms(vocab: GrammarVocab, grammar, tokens: int, repeats: int, seed: int = 0) -> float:
    """Milliseconds per generated token of ``greedy`` on replayed logits (the fastest run)."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((64, len(vocab.classes))).astype(np.float32)
    rows[:, vocab.eos_id] = -1e4  # plain greedy must not stop early either
    runs = []
    for _ in range(repeats):
        backend, generated, start = LogitReplay(rows), 0, time.perf_counter()
        while generated < tokens:
            gen = greedy(backend, None, start_id=vocab.eos_id, eos_id=vocab.eos_id, max_new_tokens=tokens - generated,
                         force_eos_at_budget=False, grammar=grammar)
            generated += len(gen.token_ids)
        runs.append((time.perf_counter() - start) * 1e3 / generated)
    return float(np.min(runs))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=400, help="tokens per timed run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    rows = []
    for name, vocab in (("tiny", tiny_vocab()), ("florence2 (51,289)", florence_sized_vocab())):
        plain = per_token_ms(vocab, None, args.tokens, args.repeats)
        for g in GRAMMARS:
            with_grammar = per_token_ms(vocab, vocab.grammar(g), args.tokens, args.repeats)
            rows.append({"vocab": name, "vocab_size": len(vocab.classes), "grammar": g, "plain_ms_per_token": plain,
                         "grammar_ms_per_token": with_grammar, "overhead_ms_per_token": with_grammar - plain,
                         "masks": len(vocab.grammar(g).masks)})
    print(f"{'vocab':<20} {'grammar':<16} {'plain loop':>11} {'with grammar':>13} {'overhead':>10}  (ms/token)")
    for r in rows:
        print(f"{r['vocab']:<20} {r['grammar']:<16} {r['plain_ms_per_token']:>11.4f} "
              f"{r['grammar_ms_per_token']:>13.4f} {r['overhead_ms_per_token']:>10.4f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"tokens": args.tokens, "repeats": args.repeats, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
