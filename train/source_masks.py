"""Source kind ``kvasir-seg``: region masks -> ``<REFERRING_EXPRESSION_SEGMENTATION>``.

``path`` is a folder in the Kvasir-SEG layout: ``images/`` and ``masks/`` holding files of
the same names (a mask may have another image suffix, e.g. ``.png`` for a ``.jpg``); white
(> 127) is the region. params: ``phrase`` ("polyp"), the text the prompt refers to.
Each mask's polygons come from ``gi_sdk.codec.mask_to_polygons``: the runtime reads them
back with the same codec.
"""
from __future__ import annotations

from pathlib import Path

from gi_sdk.tasks import build_prompt

from .examples import CORRUPT_IMAGE, EMPTY_MASK, MISMATCHED_MASK, MISSING_MASK, Example, SourceReport
from .source_files import IMAGE_SUFFIXES, find_image, read_image
from .targets import segment_target


def _mask_for(masks: Path, image_path: Path) -> Path | None:
    # Kvasir-SEG uses the image's own name; other sets keep the stem and change the suffix
    same = masks / image_path.name
    if same.is_file():
        return same
    other = find_image(masks, image_path.stem)
    return other if other.is_file() else None


def region_examples(spec, report: SourceReport) -> list[Example]:
    """One segmentation example per image with a usable mask."""
    import cv2

    root = Path(spec.path)
    phrase = spec.params.get("phrase", "polyp")
    prompt = build_prompt("segment", phrase)
    examples = []
    for image_path in sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        report.records += 1
        mask_path = _mask_for(root / "masks", image_path)
        if mask_path is None:
            report.skip(MISSING_MASK, image_path.name)
            continue
        image = read_image(image_path)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            report.skip(CORRUPT_IMAGE, image_path.name)
            continue
        if mask is None:
            report.skip(MISSING_MASK, f"{mask_path.name} cannot be read")
            continue
        if mask.shape != image.shape[:2]:
            report.skip(MISMATCHED_MASK, f"{mask_path.name} is {mask.shape[::-1]}, image {image.shape[1::-1]}")
            continue
        target = segment_target(mask > 127)
        if target is None:
            report.skip(EMPTY_MASK, mask_path.name)
            continue
        report.images += 1
        examples += report.add([Example(str(image_path), image_path.stem, "segment", prompt, target, report.name)])
    return examples
