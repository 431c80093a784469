"""Reading the files sources are made of: record files (JSON Lines, JSON, parquet) and images.

Both report problems instead of raising, so a source can count a bad record or image as a
skip with its reason and go on.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from gi_sdk.errors import MissingDependencyError, SourceError

from .examples import CORRUPT_IMAGE, MISSING_IMAGE, UNPARSEABLE, SourceReport, is_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_records(path, report: SourceReport):
    """Yield the records (dicts) of a ``.jsonl``, ``.json`` (a list) or ``.parquet`` file.

    A line that is not a JSON object is counted in ``report`` as an unparseable record.
    A missing file raises SourceError (a wrong path is not a data problem to skip).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"source {report.name!r}: record file {path} does not exist")
    if path.suffix == ".parquet":
        # pyarrow is large and only parquet inputs need it, so it is not in the train extra
        if importlib.util.find_spec("pyarrow") is None:
            raise MissingDependencyError(f"reading {path} needs pyarrow: pip install pyarrow "
                                         "(or convert the records to JSON Lines)")
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
        return
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data if isinstance(data, list) else data.get("data", [])
        for row in rows:
            if isinstance(row, dict):
                yield row
            else:
                report.records += 1
                report.skip(UNPARSEABLE, f"{path}: {str(row)[:60]}")
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                row = exc
            if isinstance(row, dict):
                yield row
            else:
                report.records += 1
                report.skip(UNPARSEABLE, f"{path}:{n}: {line.strip()[:60]}")


class ImageFiles:
    """Checks image files once each and remembers the answer (many records share an image).

    ``check(path)`` -> (height, width) or a skip reason string. The pixels are not kept: the
    collator reads them again when the batch is built, so memory stays flat on big sets.
    """

    def __init__(self):
        self._seen: dict = {}

    def check(self, path) -> tuple | str:
        key = str(path)
        if key not in self._seen:
            self._seen[key] = self._check(Path(path))
        return self._seen[key]

    @staticmethod
    def _check(path: Path) -> tuple | str:
        if not path.is_file():
            return MISSING_IMAGE
        image = read_image(path)
        if image is None:
            return CORRUPT_IMAGE
        return image.shape[:2]


def read_image(path) -> np.ndarray | None:
    """BGR uint8 (H, W, 3) from an image file, or None when it cannot be decoded."""
    import cv2

    # np.fromfile + imdecode also reads paths OpenCV's imread cannot (non-ASCII on Windows)
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return image if image is not None and is_image(image) else None


def find_image(folder: Path, stem: str) -> Path:
    """``folder/stem`` as given if it has a suffix and exists, else the first ``stem.<ext>``.

    Returns a path even when nothing exists (the check then reports a missing image).
    """
    direct = folder / stem
    if direct.suffix.lower() in IMAGE_SUFFIXES:
        return direct
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{stem}.jpg"
