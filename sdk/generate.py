"""The generation loop shared by every backend: greedy decoding with a KV cache.

Per generated token it keeps the probability of the chosen token and the probability mass
of the top 5 tokens; the mean of the latter is the answer confidence of the Florence-2
seed paper (MediaEval Medico 2025).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

TOP_K_CONFIDENCE = 5


@dataclass
class Generation:
    """What one greedy decode produced (decoder start token excluded, EOS included if hit)."""

    token_ids: np.ndarray      # (T,) int64
    token_probs: np.ndarray    # (T,) float32, probability of each chosen token
    top_k_mass: np.ndarray     # (T,) float32, top-5 probability mass at each step
    finished: bool             # True when EOS ended it, False when the budget did
    first_token_ms: float = 0.0  # wall time of the first decode step (the prompt's latency floor)

    @property
    def confidence(self) -> float:
        """Mean top-5 probability mass over the generated tokens (0 when none)."""
        return float(self.top_k_mass.mean()) if len(self.top_k_mass) else 0.0


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z, dtype=np.float64)
    return e / e.sum()


def greedy(backend, state, *, start_id: int, eos_id: int, max_new_tokens: int,
           force_eos_at_budget: bool = True) -> Generation:
    """Greedy decode one sequence from an encoder ``state`` until EOS or the token budget.

    force_eos_at_budget: the last token the budget allows is EOS, as transformers does for a
    checkpoint whose generation config sets ``forced_eos_token_id`` (Florence-2's does), so
    the output ends cleanly and matches ``generate`` token for token.
    """
    ids, probs, mass = [], [], []
    token, cache = start_id, None
    finished = False
    first_token_ms = 0.0
    for step in range(max_new_tokens):
        started = time.perf_counter()
        logits, cache = backend.decode_step(state, np.array([token], np.int64), cache)
        if step == 0:
            first_token_ms = (time.perf_counter() - started) * 1e3
        p = _softmax(logits[0])
        last = step == max_new_tokens - 1
        token = eos_id if (last and force_eos_at_budget) else int(np.argmax(logits[0]))
        ids.append(token)
        probs.append(p[token])
        mass.append(np.partition(p, -TOP_K_CONFIDENCE)[-TOP_K_CONFIDENCE:].sum())
        if token == eos_id:
            finished = True
            break
    return Generation(
        token_ids=np.asarray(ids, np.int64),
        token_probs=np.asarray(probs, np.float32),
        top_k_mass=np.asarray(mass, np.float32),
        finished=finished,
        first_token_ms=first_token_ms,
    )
