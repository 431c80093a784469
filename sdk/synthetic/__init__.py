"""Synthetic colonoscopy video with exact ground truth, deterministic by seed.

numpy + OpenCV only. Frames look like colonoscopy (round field of view, mucosa with haustral
folds and vessels, lumen, wet highlights, polyps, instruments, burned-in text and Kvasir's
green box) and come with per-instance boxes and visible-pixel masks.

>>> from gi_sdk.synthetic import SyntheticEndoscope, write_dataset
>>> scope = SyntheticEndoscope(seed=0, width=640, height=480)
>>> frame, truth = scope.frame(0)            # BGR uint8, Truth
>>> scope.write_video("clip.mp4", 300)        # doctest: +SKIP
>>> write_dataset("out/", 50, seed=1)         # doctest: +SKIP

Modules: ``scene`` (per-seed sampling: segments, camera path, objects), ``tube`` (3D colon
geometry and light), ``mucosa`` (wall colour and vessels), ``polyps``, ``texture`` (one
segment's painted texture), ``instrument`` and ``overlay`` (per-frame drawing),
``endoscope`` (frames and truth), ``truth``, ``qa`` (VQA records), ``dataset`` (writers).
"""
from .dataset import write_dataset, write_video
from .endoscope import SyntheticEndoscope
from .qa import qa_records
from .truth import Truth

__all__ = ["SyntheticEndoscope", "Truth", "qa_records", "write_dataset", "write_video"]
