"""gi_sdk: ask a vision-language model about live endoscopy video.

>>> from gi_sdk import Session
>>> session = Session("path/to/checkpoint", backend="torch")
>>> r = session.ask(frame, "Is there a polyp?")
>>> r.answer, r.boxes, r.confidence

Importing gi_sdk is light on purpose (no torch, transformers or peft): names are loaded on
first use, so a device that only runs models needs none of the training stack.
"""
from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first attribute access)
_LAZY = {
    "Session": "gi_sdk.session",
    "Result": "gi_sdk.result",
    "SyntheticEndoscope": "gi_sdk.synthetic",
    "available_backends": "gi_sdk.backends",
    "preprocess": "gi_sdk.preprocessing",
    "find_fov": "gi_sdk.fov",
    "polygons_to_mask": "gi_sdk.geometry",
    "box_iou": "gi_sdk.geometry",
    "mask_iou": "gi_sdk.geometry",
    "polygon_area": "gi_sdk.geometry",
    "decode_ids": "gi_sdk.token_decoder",
    "TokenVocab": "gi_sdk.token_decoder",
    "native_available": "gi_sdk.native",
    "builtin_bundle": "gi_sdk.bundle",
    "Stream": "gi_sdk.stream",
    "StreamFrame": "gi_sdk.stream",
    "IouTracker": "gi_sdk.tracker",
    "open_source": "gi_sdk.video_sources",
    "WebViewer": "gi_sdk.webview",
}
_SUBMODULES = {"codec", "errors", "synthetic", "tasks", "backends", "result", "session", "overlay",
               "stream", "tracker", "video_sources", "webview"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"gi_sdk.{name}")
    raise AttributeError(f"module 'gi_sdk' has no attribute {name!r}")


def __dir__():
    return __all__
