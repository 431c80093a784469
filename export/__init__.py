"""gi_sdk.export: merged checkpoint -> model bundle (ONNX, TensorRT). Needs `pip install "gi-sdk[export]"`.

>>> from gi_sdk.export import export_bundle                          # doctest: +SKIP
>>> export_bundle("runs/merged", "bundles/polyp", precision="int8")    # doctest: +SKIP

Modules: ``parts`` (the four ONNX parts traced from transformers' Florence-2),
``merge_decoder`` (first-step and later-step decoder graphs under one ``If``), ``verify``
(ONNX Runtime against torch through gi_sdk.Session), ``quantize`` (fp16 / int8 variants with
ONNX Runtime's tools), ``report`` (what a variant costs in accuracy, gains in size and
speed), ``frames`` (verification, calibration and held-out frames), ``manifest`` (what the
bundle says about itself), ``source`` (LoRA adapters merged first), ``tensorrt`` (engines),
``writer`` (``export_bundle``: all of it, written only when verified), ``recover``
(``checkpoint_from_bundle``: a bundle's weights back as a checkpoint).
torch / transformers / onnx are imported by the functions that need them.
"""


def export_bundle(checkpoint, out, precision="fp32", calibration=None, tensorrt: bool = False, **options):
    """Export a checkpoint to a verified bundle (see ``gi_sdk.export.writer.export_bundle``)."""
    from .writer import export_bundle as _export_bundle

    return _export_bundle(checkpoint, out, precision=precision, calibration=calibration, tensorrt=tensorrt, **options)


def __getattr__(name):
    if name == "ExportChecks":
        from .writer import ExportChecks

        return ExportChecks
    raise AttributeError(f"module 'gi_sdk.export' has no attribute {name!r}")


__all__ = ["ExportChecks", "export_bundle"]
