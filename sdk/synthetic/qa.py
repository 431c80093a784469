"""Question/answer records from a frame's truth, in the Kvasir-VQA-x1 schema.

Each record is ``{img_id, question, answer, complexity, question_class, original}``:
``question_class`` lists the atomic classes it covers (``polyp_presence``, ``polyp_count``,
``polyp_location``, ``polyp_color``, ``polyp_size``, ``instrument_presence``,
``text_presence``, ``box_artifact_presence``), ``complexity`` is how many (1-3), and
``original`` holds the atomic {question, answer} pairs a merged record was built from.
Answers are short sentences stated from the truth, so they are right by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .truth import SIZE_WORDS, Truth

NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
TOOL_NAMES = {"forceps": "a biopsy forceps", "snare": "a snare"}

# classes that only make sense when at least one polyp is visible
NEEDS_POLYP = {"polyp_location", "polyp_color", "polyp_size"}
# atomic classes merged into multi-part questions, by complexity
PAIRS = [("polyp_presence", "polyp_location"), ("polyp_count", "polyp_location"),
         ("polyp_count", "polyp_color"), ("polyp_presence", "polyp_size"),
         ("polyp_location", "polyp_color"), ("polyp_presence", "instrument_presence"),
         ("text_presence", "box_artifact_presence"), ("polyp_count", "instrument_presence"),
         ("instrument_presence", "text_presence")]
TRIPLES = [("polyp_presence", "polyp_count", "polyp_location"),
           ("polyp_count", "polyp_location", "polyp_size"),
           ("polyp_count", "polyp_location", "polyp_color"),
           ("polyp_presence", "polyp_color", "instrument_presence"),
           ("polyp_presence", "instrument_presence", "text_presence"),
           ("text_presence", "box_artifact_presence", "instrument_presence")]


def number(n: int) -> str:
    """'no', 'one', 'two', ... for small counts, digits beyond ten."""
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def _join(words: list) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


@dataclass
class Atom:
    """One atomic question and its answer, plus the pieces used to merge it with others."""

    cls: str
    question: str
    answer: str
    clause: str                 # the question as a lower-case clause, for merging
    follow: str                 # the answer as a sentence after another polyp answer ("they ...")
    where: str = ""             # polyp locations ("the upper-left and the center"), if any
    pron: str = ""              # the clause after another polyp clause ("where are they")

    @property
    def about_polyps(self) -> bool:
        """True for the polyp_* classes, whose follow-ups can say "it" or "they"."""
        return self.cls.startswith("polyp_")


def _polyp_atoms(truth: Truth, rng) -> dict:
    idx = [k for k, lab in enumerate(truth.labels) if lab == "polyp"]
    n = len(idx)
    regions = truth.regions()
    where = [f"the {regions[k]}" for k in idx]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    atoms = {}
    if n == 0:
        atoms["polyp_presence"] = Atom("polyp_presence", pick(["Is there a polyp in the image?",
                                       "Are any polyps visible?", "Does this image show a polyp?"]),
                                       "No, there are no polyps in this image.", "is there a polyp",
                                       "No, there are no polyps in this image.")
        atoms["polyp_count"] = Atom("polyp_count", pick(["How many polyps are visible?",
                                    "How many polyps can be seen in the image?"]),
                                    "There are no polyps visible.", "how many polyps are visible",
                                    "There are no polyps visible.")
        return atoms
    noun = "polyp" if n == 1 else "polyps"
    be = "is" if n == 1 else "are"
    it = "it" if n == 1 else "they"
    places = _join(where)
    atoms["polyp_presence"] = Atom(
        "polyp_presence", pick(["Is there a polyp in the image?", "Are any polyps visible?",
                                "Does this image show a polyp?"]),
        f"Yes, there {be} {number(n)} {noun} visible.", "is there a polyp",
        f"Yes, there {be} {number(n)} {noun}.", places)
    atoms["polyp_count"] = Atom(
        "polyp_count", pick(["How many polyps are visible?", "How many polyps can be seen in the image?"]),
        f"There {be} {number(n)} {noun} visible.", "how many polyps are visible",
        f"There {be} {number(n)} {noun}.", places)
    atoms["polyp_location"] = Atom(
        "polyp_location", pick([f"Where {be} the {noun} located?", f"Where in the image {be} the {noun}?"]),
        f"The {noun} {be} in {places} of the image.", f"where {be} the {noun}",
        f"{it.capitalize()} {be} in {places}.", places, f"where {be} {it}")
    colours = [truth.colours[k] for k in idx]
    if n == 1:
        col = f"The polyp appears {colours[0]}."
        col_follow = f"It appears {colours[0]}."
    elif len(set(colours)) == 1:
        col = f"The polyps all appear {colours[0]}."
        col_follow = f"They all appear {colours[0]}."
    else:
        col = f"The polyps appear {_join(colours)}."
        col_follow = f"They appear {_join(colours)}."
    atoms["polyp_color"] = Atom("polyp_color", pick([f"What color {be} the {noun}?",
                                f"What is the color of the {noun}?"]), col, f"what color {be} the {noun}",
                                col_follow, places, f"what color {be} {it}")
    order = {"small": 0, "medium": 1, "large": 2}
    biggest = max((truth.size_classes[k] for k in idx), key=order.get)
    if n == 1:
        size, size_follow = f"The polyp is {SIZE_WORDS[biggest]}.", f"It is {SIZE_WORDS[biggest]}."
    else:
        size = f"The largest polyp is {SIZE_WORDS[biggest]}."
        size_follow = f"The largest is {SIZE_WORDS[biggest]}."
    atoms["polyp_size"] = Atom("polyp_size", pick([f"How large {be} the {noun}?", f"What size {be} the {noun}?"]),
                               size, f"how large {be} the {noun}", size_follow, places,
                               f"how large {be} {it}")
    return atoms


def atoms_for(truth: Truth, rng: np.random.Generator) -> dict:
    """Every atomic question that applies to ``truth``, by class name."""
    atoms = _polyp_atoms(truth, rng)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    tools = [truth.kinds[k] for k, lab in enumerate(truth.labels) if lab == "instrument"]
    if tools:
        a = (f"Yes, {TOOL_NAMES.get(tools[0], 'an instrument')} is visible." if len(tools) == 1
             else f"Yes, {number(len(tools))} instruments are visible.")
    else:
        a = "No, no instrument is visible."
    atoms["instrument_presence"] = Atom(
        "instrument_presence", pick(["Is there an instrument in the image?", "Are any instruments visible?",
                                     "Is a tool visible in the view?"]), a, "is there an instrument", a)
    a = ("Yes, there is on-screen text in the image." if truth.text_overlay
         else "No, there is no text in the image.")
    atoms["text_presence"] = Atom("text_presence", pick(["Is there text in the image?",
                                  "Does the image contain any text?"]), a, "is there any text", a)
    a = ("Yes, there is a green box in the lower-left corner." if truth.box_artifact
         else "No, there is no green box in the image.")
    atoms["box_artifact_presence"] = Atom(
        "box_artifact_presence", pick(["Is there a green box in the image?", "Is there a green box artifact?"]),
        a, "is there a green box", a)
    return atoms


def merge(parts: list) -> tuple[str, str]:
    """One natural question and answer from 2-3 atoms."""
    classes = [p.cls for p in parts]
    clauses, items, named = [], [], False
    for p in parts:
        # the first polyp part names the polyps; later ones refer back with "it"/"they"
        again = named and p.about_polyps
        clauses.append((p.pron or p.clause) if again else p.clause)
        items.append((p.cls, p.follow if again else p.answer))
        named |= p.about_polyps
    if classes[:2] == ["polyp_presence", "polyp_count"]:
        # "is there a polyp" + "how many" read as one clause, and one answer states both
        clauses = ["are there any polyps, how many" if len(parts) > 2 else "are there any polyps, and how many"]
        clauses += [p.pron or p.clause for p in parts[2:]]
        items = [(classes[0], parts[0].follow)] + items[2:]
    if parts[0].where and "polyp_location" in classes and items[0][0] in ("polyp_presence", "polyp_count"):
        # "Yes, there are two polyps, in the upper-left and the center."
        items[0] = (items[0][0], parts[0].follow[:-1] + ", in " + parts[0].where + ".")
        items = [it for it in items if it[0] != "polyp_location"]
    if len(clauses) == 1:
        question = clauses[0]
    else:
        question = ", ".join(clauses[:-1]) + " and " + clauses[-1]
    return question[0].upper() + question[1:] + "?", " ".join(a for _, a in items)


def qa_records(img_id: str, truth: Truth, rng: np.random.Generator, n_single: int = 5,
               n_pairs: int = 2, n_triples: int = 1) -> list[dict]:
    """Question/answer records for one image, built from its truth (pure: no pixels)."""
    atoms = atoms_for(truth, rng)
    has_polyp = truth.count("polyp") > 0
    usable = lambda combo: all(c in atoms for c in combo)  # noqa: E731
    records = []
    names = list(atoms)
    rng.shuffle(names)
    first = ["polyp_presence"] + [c for c in names if c != "polyp_presence"]
    for cls in first[:n_single]:
        a = atoms[cls]
        records.append(_record(img_id, a.question, a.answer, [a]))
    for pool, count in ((PAIRS, n_pairs), (TRIPLES, n_triples)):
        combos = [c for c in pool if usable(c) and (has_polyp or not NEEDS_POLYP & set(c))]
        for j in rng.permutation(len(combos))[:count]:
            parts = [atoms[c] for c in combos[j]]
            q, a = merge(parts)
            records.append(_record(img_id, q, a, parts))
    return records


def _record(img_id, question, answer, parts) -> dict:
    return {"img_id": img_id, "question": question, "answer": answer, "complexity": len(parts),
            "question_class": [p.cls for p in parts],
            "original": [{"question": p.question, "answer": p.answer} for p in parts]}
