"""The id decoder's rules on tokens, in Python: the twin of ``gi_sdk._native.decode_tokens``.

``gi_sdk.token_decoder`` explains how transformers' text rules become these token rules; the
tests hold this module, the native decoder and ``parse_instances`` on decoded text equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .locations import NUM_BINS, dequantize_numpy

# token classes (the native decoder reads the same numbers)
TEXT, LOC, SEP, POLY, POLY_END, DROP, TAG, TAG_HIDDEN, HAZARD = range(9)
#: transformers' parse type -> code the decoders take
GRAMMAR_CODES = {"pure_text": 0, "description_with_bboxes": 1, "bboxes": 2, "phrase_grounding": 3,
                 "description_with_polygons": 4, "polygons": 5, "description_with_bboxes_or_polygons": 6,
                 "points": 7}


def decode_tokens_python(ids: np.ndarray, classes: np.ndarray, loc_begin: int, grammar: int,
                         width: float, height: float) -> tuple:
    """The Python twin of ``gi_sdk._native.decode_tokens``: same arguments, same arrays.

    Returns (exact, events (E, 2), labels (L, 3), boxes (N, 4), box_label (N,), polygon
    points (P, 2), ring offsets (R + 1,), instance ring offsets (I + 1,), instance_label (I,),
    points (Q, 2), point_event (Q,), distinct texts (U, 4), event_text (E,), label_text (L,)).
    Spans are [start, end) indices into ``ids``; a label is (start, end, tail index or -1);
    label -1 means "". Distinct texts are (start, end, tail, 1 label / 0 event), events first.
    A HAZARD token reads as text.
    """
    size = len(classes)
    stream = []  # (index, class, bin) of every token the parser sees
    for pos, i in enumerate(ids.tolist()):
        if loc_begin <= i < loc_begin + NUM_BINS:
            stream.append((pos, LOC, i - loc_begin))
        elif 0 <= i < size and classes[i] != DROP:
            stream.append((pos, int(classes[i]), 0))
    out = _Out(exact=all(c != HAZARD for _, c, _ in stream))
    _text_events(stream, out, grammar == 7)
    has_poly = any(c == POLY for _, c, _ in stream)
    if grammar in (1, 3) or (grammar == 6 and not has_poly):
        _boxes(stream, out, labelled=True)
    elif grammar == 2:
        _boxes(stream, out, labelled=False)
    elif grammar in (4, 6):
        _polygons(stream, out, labelled=True)
    elif grammar == 5:
        _polygons(stream, out, labelled=False)
    out.dedupe(ids.tolist())
    return out.arrays(width, height)


_MAX_DISTINCT = 256  # past this many distinct texts the native decoder stops searching


@dataclass
class _Out:
    exact: bool
    events: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    box_bins: list = field(default_factory=list)
    box_label: list = field(default_factory=list)
    ring_bins: list = field(default_factory=list)
    rings: list = field(default_factory=lambda: [0])
    instances: list = field(default_factory=lambda: [0])
    instance_label: list = field(default_factory=list)
    point_bins: list = field(default_factory=list)
    point_event: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    event_text: list = field(default_factory=list)
    label_text: list = field(default_factory=list)

    def arrays(self, width: float, height: float) -> tuple:
        def centres(bins, cols):
            b = np.asarray(bins, np.int32).reshape(-1, cols)
            return dequantize_numpy(b, width, height) if len(b) else np.zeros((0, cols), np.float32)

        def i32(v, cols=None):
            a = np.asarray(v, np.int32)
            return a.reshape(-1, cols) if cols else a.reshape(-1)

        return (self.exact, i32(self.events, 2), i32(self.labels, 3), centres(self.box_bins, 4), i32(self.box_label),
                centres(self.ring_bins, 2), i32(self.rings), i32(self.instances), i32(self.instance_label),
                centres(self.point_bins, 2), i32(self.point_event), i32(self.texts, 4), i32(self.event_text),
                i32(self.label_text))

    def dedupe(self, ids: list) -> None:
        """One entry per distinct (ids, tail token, kind) span, as the native decoder lists them."""
        def add(s, e, tail, label):
            key = (label, ids[tail] if tail >= 0 else -1, tuple(ids[s:e]))
            if key not in index or len(self.texts) > _MAX_DISTINCT:
                index.setdefault(key, len(self.texts))
                self.texts.append((s, e, tail, label))
                return len(self.texts) - 1
            return index[key]

        index = {}
        self.event_text = [add(s, e, -1, 0) for s, e in self.events]
        self.label_text = [add(s, e, t, 1) for s, e, t in self.labels]


def _text_events(stream, out: _Out, points: bool) -> None:
    # text between structure tokens; hidden tags vanish (they do not split a text event)
    current, label, run = None, -1, []

    def flush():
        for k in range(len(run) // 2):
            out.point_bins += run[2 * k:2 * k + 2]
            out.point_event.append(label)
        run.clear()

    for pos, c, b in stream:
        if c in (TEXT, TAG, HAZARD):
            if current is None:
                if points:
                    flush()
                current = [pos, pos + 1]
                out.events.append(current)
                label = len(out.events) - 1
            current[1] = pos + 1
        elif c == TAG_HIDDEN:
            continue
        else:
            current = None
            if c == LOC:
                run.append(b)
            elif points:
                flush()
    if points:
        flush()


def _segment(stream, a: int, b: int, search_from: int):
    """Where transformers' labelled match of the run stream[a:b] starts, or None.

    Returns (first text token, tail token or -1, first run token). ``[^<]+`` runs back over the
    text tokens before the run and, unless the token before them ends an instance already read
    (``search_from``), into that token after its ``<``. With nothing before it (the run opens
    the text), the match starts inside the run's first token and the run loses that token.
    """
    t = a
    while t - 1 >= search_from and stream[t - 1][1] in (TEXT, HAZARD):
        t -= 1
    tail = t - 1 if t - 1 >= search_from else -1
    if t < a or tail >= 0:
        return t, tail, a
    return (a + 1, a, a + 1) if b - a - 1 >= 4 else None


def _add_label(stream, out: _Out, t: int, tail: int, end_pos: int) -> int:
    out.labels.append((stream[t][0], end_pos, stream[tail][0] if tail >= 0 else -1))
    return len(out.labels) - 1


def _runs(stream, kinds):
    """(a, b) of each maximal run of tokens whose class is in ``kinds``."""
    q = 0
    while q < len(stream):
        if stream[q][1] not in kinds:
            q += 1
            continue
        a = q
        while q < len(stream) and stream[q][1] in kinds:
            q += 1
        yield a, q


def _boxes(stream, out: _Out, labelled: bool) -> None:
    search_from = 0
    for a, b in _runs(stream, (LOC,)):
        if b - a < 4:
            continue
        label = -1
        if labelled:
            seg = _segment(stream, a, b, search_from)
            if seg is None:
                continue
            search_from, a = b, seg[2]
            label = _add_label(stream, out, seg[0], seg[1], stream[a][0])
        for g in range((b - a) // 4):
            out.box_bins += [stream[a + 4 * g + k][2] for k in range(4)]
            out.box_label.append(label)


def _bodies(stream, a: int, b: int) -> list:
    """[start, end) of each polygon body of the run: between <poly> and the next </poly> when
    the run has both, else the whole run."""
    kinds = [stream[q][1] for q in range(a, b)]
    if not (POLY in kinds and POLY_END in kinds):
        return [(a, b)]
    bodies, q = [], a
    while True:
        p = next((k for k in range(q, b) if stream[k][1] == POLY), None)
        e = next((k for k in range(p + 1, b) if stream[k][1] == POLY_END), None) if p is not None else None
        if e is None:
            return bodies
        bodies.append((p + 1, e))
        q = e + 1


def _rings(stream, s: int, e: int) -> list:
    """Location runs of a body that end at <sep> or at the body's end (odd last bin dropped)."""
    rings, q = [], s
    while q < e:
        if stream[q][1] != LOC:
            q += 1
            continue
        u = q
        while q < e and stream[q][1] == LOC:
            q += 1
        if q == e or stream[q][1] == SEP:
            bins = [stream[k][2] for k in range(u, q)]
            rings.append(bins[:len(bins) // 2 * 2])
    return rings


def _polygons(stream, out: _Out, labelled: bool) -> None:
    search_from = 0
    for a, b in _runs(stream, (LOC, SEP, POLY, POLY_END)):
        if b - a < 4:
            continue
        if labelled:
            seg = _segment(stream, a, b, search_from)
            if seg is None:
                continue
            search_from, a = b, seg[2]
        # the phrase ends at the first <loc> or <poly> (unlabelled runs skip a leading <loc>)
        lead = a + 1 if not labelled and stream[a][1] == LOC else a
        stop = next((q for q in range(lead, b) if stream[q][1] in (LOC, POLY)), None)
        if labelled:
            if stop is None:
                continue
            label = _add_label(stream, out, seg[0], seg[1], stream[stop][0])
        else:
            if stop is None:
                continue
            out.labels.append((stream[lead][0], stream[stop][0], -1))
            label = len(out.labels) - 1
        for s, e in _bodies(stream, a, b):
            rings = _rings(stream, s, e)
            if not rings:
                continue
            for ring in rings:
                out.ring_bins += ring
                out.rings.append(out.rings[-1] + len(ring) // 2)
            out.instances.append(out.instances[-1] + len(rings))
            out.instance_label.append(label)
