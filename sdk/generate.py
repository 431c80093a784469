"""The generation loop shared by every backend: greedy decoding with a KV cache.

Per generated token it keeps the probability of the chosen token and the probability mass
of the top 5 tokens; the mean of the latter is the answer confidence of the Florence-2
seed paper (MediaEval Medico 2025). Both come from the model's own (unmasked) distribution,
also when a grammar (``gi_sdk.grammar``) restricts which token is chosen.

``greedy_batch`` decodes several prompts of one frame as one batch (one decoder call per
step for all of them); ``greedy`` is its one-sequence case. A sequence of the batch that has
ended keeps feeding EOS until the longest one ends (its outputs are ignored): the decoder's
rows are independent, so every row gets the tokens it would get alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

TOP_K_CONFIDENCE = 5
#: Bins either side of a chosen location token whose probability counts as "that place"
#: (``Generation.token_scores``): 12 of 1000 bins = 1.2 % of the frame's side. A model taught
#: locations softly (``gi_sdk.train.locations``, sigma 6 bins for the built-in one) spreads a
#: sure coordinate over its neighbours, so the chosen bin alone never gets more than ~0.07.
LOCATION_WINDOW = 12


@dataclass
class Generation:
    """What one greedy decode produced (decoder start token excluded, EOS included if hit)."""

    token_ids: np.ndarray      # (T,) int64
    token_probs: np.ndarray    # (T,) float32, probability of each chosen token
    top_k_mass: np.ndarray     # (T,) float32, top-5 probability mass at each step
    finished: bool             # True when EOS ended it, False when the budget did
    first_token_ms: float = 0.0  # wall time of the first decode step (the prompt's latency floor)
    # (T,) float32 what instance scores average (gi_sdk.scores): for a location token, the
    # probability of the bins within LOCATION_WINDOW of it (how sure the model is of the place);
    # for any other token, its probability. None: token_probs.
    token_scores: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        """Mean top-5 probability mass over the generated tokens (0 when none)."""
        return float(self.top_k_mass.mean()) if len(self.top_k_mass) else 0.0


def _probabilities(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Softmax pieces of (B, V) float32 logits: (unnormalised float32 e, float64 row sums s,
    top-5 mass (B,)); the probability of id t in row b is ``e[b, t] / s[b]``. Only what the loop
    reads is normalised: with a 51k vocabulary a whole float64 softmax made the loop cost
    0.45 ms a token instead of 0.20 (``benchmarks/grammar.py``), more than a GPU decode step."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    s = e.sum(axis=-1, dtype=np.float64)
    top = np.partition(e, -TOP_K_CONFIDENCE, axis=-1)[:, -TOP_K_CONFIDENCE:].sum(axis=-1, dtype=np.float64) / s
    return e, s, top


def _constrained_argmax(logits: np.ndarray, mask: np.ndarray) -> int:
    """Index of the largest logit among the allowed ids (``mask`` may be narrower than the logits)."""
    width = min(len(mask), len(logits))
    best = int(np.argmax(np.where(mask[:width], logits[:width], -np.inf)))
    if not mask[best]:  # every allowed logit is -inf or NaN: take the first allowed id
        best = int(np.flatnonzero(mask[:width])[0])
    return best


def greedy(backend, state, *, start_id: int, eos_id: int, max_new_tokens: int,
           force_eos_at_budget: bool = True, grammar=None, locations: tuple | None = None) -> Generation:
    """Greedy decode one sequence from an encoder ``state`` until EOS or the token budget.

    force_eos_at_budget: the last token the budget allows is EOS, as transformers does for a
        checkpoint whose generation config sets ``forced_eos_token_id`` (Florence-2's does), so
        the output ends cleanly and matches ``generate`` token for token.
    grammar: None (plain greedy, the tokens of transformers' ``generate``) or an object with
        ``start(max_new_tokens)`` returning a cursor (``allowed()`` / ``advance(token)``, the
        protocol of ``gi_sdk.grammar``): each step takes the most likely token it allows, and
        the grammar closes the output within the budget.
    locations: (first location token id, number of bins), to fill ``Generation.token_scores``.
    """
    return greedy_batch(backend, state, start_id=start_id, eos_id=eos_id, max_new_tokens=[max_new_tokens],
                        force_eos_at_budget=force_eos_at_budget, grammars=[grammar], locations=locations)[0]


def greedy_batch(backend, state, *, start_id: int, eos_id: int, max_new_tokens, force_eos_at_budget: bool = True,
                 grammars=None, locations: tuple | None = None) -> list[Generation]:
    """Greedy decode the B sequences of a batched encoder ``state`` together; one Generation each.

    max_new_tokens: B budgets (or one for all). grammars: B grammars or Nones (or None: no
    grammar). Row b gets the tokens ``greedy`` would give it alone. locations: as ``greedy``.
    """
    budgets = np.atleast_1d(np.asarray(max_new_tokens, np.int64))
    n = len(grammars) if grammars is not None else len(budgets)
    budgets = np.broadcast_to(budgets, (n,))
    cursors = [g.start(int(b)) if g is not None else None
               for g, b in zip(grammars if grammars is not None else [None] * n, budgets)]
    ids, probs, mass, scores = ([[] for _ in range(n)] for _ in range(4))
    loc_lo, loc_hi = (locations[0], locations[0] + locations[1]) if locations else (0, 0)
    done = budgets <= 0
    finished = np.zeros(n, bool)
    tokens = np.full(n, start_id, np.int64)
    # a backend with a preallocated cache (torch's static paths) sizes it for the longest budget
    start = getattr(backend, "start_decode", None)
    cache = start(state, int(budgets.max(initial=1))) if start is not None else None
    first_token_ms = 0.0
    for step in range(int(budgets.max(initial=0))):
        if done.all():
            break
        started = time.perf_counter()
        logits, cache = backend.decode_step(state, tokens, cache)
        if step == 0:
            first_token_ms = (time.perf_counter() - started) * 1e3
        logits = np.asarray(logits, np.float32)
        e, s, top = _probabilities(logits)
        chosen = np.argmax(logits, axis=-1)
        for b in np.flatnonzero(~done).tolist():
            cursor = cursors[b]
            if cursor is not None:
                token = _constrained_argmax(logits[b], cursor.allowed())
                cursor.advance(token)
            elif step == budgets[b] - 1 and force_eos_at_budget:
                token = eos_id
            else:
                token = int(chosen[b])
            ids[b].append(token)
            probs[b].append(e[b, token] / s[b])
            if loc_lo <= token < loc_hi:
                near = e[b, max(loc_lo, token - LOCATION_WINDOW):min(loc_hi, token + LOCATION_WINDOW + 1)]
                scores[b].append(near.sum(dtype=np.float64) / s[b])
            else:
                scores[b].append(probs[b][-1])
            mass[b].append(top[b])
            if token == eos_id:
                finished[b] = done[b] = True
            elif step == budgets[b] - 1:
                done[b] = True
            tokens[b] = token
        tokens[done] = eos_id
    return [Generation(token_ids=np.asarray(ids[b], np.int64), token_probs=np.asarray(probs[b], np.float32),
                       top_k_mass=np.asarray(mass[b], np.float32), finished=bool(finished[b]),
                       first_token_ms=first_token_ms,
                       token_scores=np.asarray(scores[b], np.float32) if locations else None) for b in range(n)]
