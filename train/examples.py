"""What sources produce (``Example``) and what they account for (``SourceReport``, ``DataReport``).

Every record a source reads ends as examples or as a counted skip with its reason, so a run
never loses data silently; the report goes into ``training_record.json``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from gi_sdk.errors import SourceError

#: Skip reasons, the words every source uses in the report.
MISSING_IMAGE = "missing image"
CORRUPT_IMAGE = "corrupt image"
MISSING_MASK = "missing mask"
EMPTY_MASK = "empty mask"
MISMATCHED_MASK = "mismatched mask"
MISMATCHED_SIZE = "mismatched image size"
MISMATCHED_COUNT = "count does not match the boxes or points"
UNPARSEABLE = "unparseable record"
UNKNOWN_TASK = "unknown task prefix"


@dataclass
class Example:
    """One training example: an image, the prompt the model gets and the text it must write.

    image: BGR uint8 (H, W, 3) array, or a path read with OpenCV when the batch is built.
    image_id: identity of the image; the train/validation split keeps each id on one side.
    task: task name from ``gi_sdk.tasks``; prompt: ``build_prompt(task, text)``;
    target: the answer text (location tokens from ``gi_sdk.codec``); source: the report name.
    """

    image: object
    image_id: str
    task: str
    prompt: str
    target: str
    source: str


@dataclass
class SourceReport:
    """What one source yielded and skipped, and why."""

    name: str
    kind: str
    records: int = 0
    examples: int = 0
    images: int = 0
    skipped: dict = field(default_factory=dict)      # reason -> count
    by_task: dict = field(default_factory=dict)      # task -> examples
    samples: list = field(default_factory=list)      # the first few skips, "reason: detail"
    filtered: dict = field(default_factory=dict)     # passed over by a source's own filter (not bad): reason -> count

    def skip(self, reason: str, detail: str = "") -> None:
        """Count one skipped record (keep the first few details to show the user)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.samples) < 10:
            self.samples.append(f"{reason}: {detail}" if detail else reason)

    def add(self, examples: list) -> list:
        """Count examples made from one good record; return them."""
        self.examples += len(examples)
        for ex in examples:
            self.by_task[ex.task] = self.by_task.get(ex.task, 0) + 1
        return examples

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def skip_share(self) -> float:
        """Skipped records as a share of the records read (0 when none were read)."""
        return self.n_skipped / self.records if self.records else 0.0

    def check(self, max_skip_share: float) -> None:
        """Raise SourceError when too many records were skipped, or none gave an example."""
        if self.records and self.skip_share > max_skip_share:
            raise SourceError(
                f"source {self.name!r} skipped {self.n_skipped} of {self.records} records "
                f"({self.skip_share:.0%}, the limit is max_skip_share={max_skip_share:.0%}): "
                f"{dict(self.skipped)}; first: {self.samples[:3]}. Fix the data or raise max_skip_share."
            )
        if self.examples == 0:
            raise SourceError(f"source {self.name!r} gave no examples ({self.records} records read, "
                              f"skipped: {dict(self.skipped)}); check its path and params")


@dataclass
class DataReport:
    """Per-source reports plus the split and the mixture that training saw."""

    sources: list = field(default_factory=list)
    train_images: int = 0
    val_images: int = 0
    train_examples: int = 0
    val_examples: int = 0
    train_by_task: dict = field(default_factory=dict)
    val_by_task: dict = field(default_factory=dict)

    def set_split(self, train: list, val: list) -> None:
        """Record the sizes of the split (``train`` after mixture weights)."""
        self.train_images = len({e.image_id for e in train})
        self.val_images = len({e.image_id for e in val})
        self.train_examples, self.val_examples = len(train), len(val)
        self.train_by_task = dict(Counter(e.task for e in train))
        self.val_by_task = dict(Counter(e.task for e in val))

    def to_json(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


def is_image(array) -> bool:
    """True for a non-empty (H, W, 3) uint8 array."""
    return isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == 3 \
        and array.shape[2] == 3 and array.size > 0
