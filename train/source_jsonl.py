"""Source kind ``jsonl``: the ``dataset/{train,valid,test}/annotations.jsonl`` layout.

Each line is ``{"image", "prefix", "suffix"}``: the image file beside the annotations, the
prompt and the target. The prefix starts with a task token (``<OD>``, ``<MedVQA>``, ...);
the rest of it is the task's input, and the prompt the model gets is
``build_prompt(task, input)``, as at run time (so ``<OD>`` becomes Florence-2's expanded
prompt). params: ``splits`` (["train", "valid"]): which folders to read; gi_sdk re-splits
the union by image with ``val_split``.
"""
from __future__ import annotations

from pathlib import Path

from gi_sdk.errors import GiSdkError
from gi_sdk.tasks import get_task, build_prompt

from .examples import UNKNOWN_TASK, UNPARSEABLE, Example, SourceReport
from .source_files import ImageFiles, read_records


def _task_and_input(prefix: str):
    token, _, rest = prefix.strip().partition(">")
    task = get_task(token + ">")  # UnknownTaskError when the prefix names no task
    return task, rest.strip() or None


def prefix_suffix_examples(spec, report: SourceReport) -> list[Example]:
    """Examples from ``annotations.jsonl`` files of the prefix / suffix layout."""
    root = Path(spec.path)
    images, seen, examples = ImageFiles(), set(), []
    for split in spec.params.get("splits", ["train", "valid"]):
        folder = root / split
        if not (folder / "annotations.jsonl").is_file():
            continue
        for record in read_records(folder / "annotations.jsonl", report):
            report.records += 1
            image, prefix, suffix = record.get("image"), record.get("prefix"), record.get("suffix")
            if not (isinstance(image, str) and isinstance(prefix, str) and isinstance(suffix, str)):
                report.skip(UNPARSEABLE, str(record)[:80])
                continue
            try:
                task, text = _task_and_input(prefix)
                prompt = build_prompt(task, text)
            except GiSdkError as exc:
                report.skip(UNKNOWN_TASK, f"{prefix[:60]!r}: {exc}")
                continue
            checked = images.check(folder / image)
            if isinstance(checked, str):
                report.skip(checked, f"{split}/{image}")
                continue
            seen.add(f"{split}/{image}")
            examples += report.add([Example(str(folder / image), f"{split}/{image}", task.name, prompt,
                                            suffix.strip(), report.name)])
    report.images = len(seen)
    return examples
