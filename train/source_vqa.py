"""Source kinds ``kvasir-vqa-x1`` (``<MedVQA>``) and ``explanations`` (``<MedVQA_EXPLAIN>``).

Both read records from a local ``.jsonl`` / ``.json`` / ``.parquet`` file (``path``) and
images from a local folder keyed by ``img_id`` (``params.images``; default: ``images/``
beside the record file). Nothing is downloaded.

kvasir-vqa-x1 records: ``img_id``, ``question``, ``answer`` (other Kvasir-VQA-x1 fields such
as ``complexity`` and ``question_class`` are ignored).
explanations records: ``img_id``, ``question``, ``answer`` and ``explanation`` (or Medico
2025's ``textual_explanation``); the target is answer + EXPLANATION_SEPARATOR + explanation,
the form ``Session.explain`` splits back.
"""
from __future__ import annotations

from pathlib import Path

from gi_sdk.errors import PromptError
from gi_sdk.tasks import EXPLANATION_SEPARATOR, build_prompt

from .examples import UNPARSEABLE, Example, SourceReport
from .source_files import ImageFiles, find_image, read_records


def _text(record: dict, *keys) -> str | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _image_folder(spec) -> Path:
    folder = spec.params.get("images")
    return Path(folder) if folder else Path(spec.path).parent / "images"


def _qa_examples(spec, report: SourceReport, task: str, target_of) -> list[Example]:
    folder, images, seen = _image_folder(spec), ImageFiles(), set()
    examples = []
    for record in read_records(spec.path, report):
        report.records += 1
        img_id, question = _text(record, "img_id", "image_id"), _text(record, "question")
        target = target_of(record)
        if not (img_id and question and target):
            report.skip(UNPARSEABLE, f"needs img_id, question and answer: {str(record)[:80]}")
            continue
        path = find_image(folder, img_id)
        checked = images.check(path)
        if isinstance(checked, str):
            report.skip(checked, str(path))
            continue
        try:
            prompt = build_prompt(task, question)
        except PromptError as exc:  # e.g. a question longer than the encoder can take
            report.skip(UNPARSEABLE, str(exc))
            continue
        seen.add(img_id)
        examples += report.add([Example(str(path), img_id, task, prompt, target, report.name)])
    report.images = len(seen)
    return examples


def kvasir_vqa_examples(spec, report: SourceReport) -> list[Example]:
    """``<MedVQA>`` examples from Kvasir-VQA-x1 records."""
    return _qa_examples(spec, report, "ask", lambda r: _text(r, "answer"))


def _explained(record: dict) -> str | None:
    answer, why = _text(record, "answer"), _text(record, "explanation", "textual_explanation")
    return f"{answer}{EXPLANATION_SEPARATOR}{why}" if answer and why else None


def explanation_examples(spec, report: SourceReport) -> list[Example]:
    """``<MedVQA_EXPLAIN>`` examples from question / answer / explanation records."""
    return _qa_examples(spec, report, "explain", _explained)
