"""Data sources: each kind turns its records into ``Example``s and accounts for what it skipped.

``SOURCE_KINDS`` maps a kind name (``SourceSpec.kind``) to a function
``(spec, report) -> list[Example]``; adding a kind is adding a row.

>>> from gi_sdk.train.config import SourceSpec
>>> examples, report = load_sources([SourceSpec("synthetic", params={"n_images": 4})])  # doctest: +SKIP
"""
from __future__ import annotations

from gi_sdk.errors import SourceError

from .examples import DataReport, SourceReport
from .source_jsonl import prefix_suffix_examples
from .source_masks import region_examples
from .source_points import point_examples
from .source_synthetic import synthetic_examples
from .source_vqa import explanation_examples, kvasir_vqa_examples

SOURCE_KINDS = {
    "synthetic": synthetic_examples,          # gi_sdk.synthetic scenes, every task
    "kvasir-vqa-x1": kvasir_vqa_examples,     # <MedVQA> question / answer records
    "explanations": explanation_examples,     # <MedVQA_EXPLAIN> answer + explanation records
    "kvasir-seg": region_examples,            # images/ + masks/ -> <REFERRING_EXPRESSION_SEGMENTATION>
    "points": point_examples,                 # MedMultiPoints fields -> <MedPOINT> / <MedCOUNT> / <OD>
    "jsonl": prefix_suffix_examples,          # dataset/{train,valid}/annotations.jsonl
}


def load_sources(specs, max_skip_share: float = 0.05):
    """Read every source; return (examples, DataReport).

    Raises SourceError when a kind is unknown, a path is missing, or a source skipped more
    than ``max_skip_share`` of its records (the report in the message says why).
    """
    report, examples = DataReport(), []
    for spec in specs:
        make = SOURCE_KINDS.get(spec.kind)
        if make is None:
            raise SourceError(f"unknown source kind {spec.kind!r}; known: {', '.join(SOURCE_KINDS)}")
        if spec.kind != "synthetic" and not spec.path:
            raise SourceError(f"source {spec.label!r} ({spec.kind}) needs a path")
        source = SourceReport(spec.label, spec.kind)
        report.sources.append(source)
        examples += make(spec, source)
        source.check(max_skip_share)
    return examples, report
