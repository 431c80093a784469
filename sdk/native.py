"""Access to the compiled extension ``gi_sdk._native``, with a warned fallback.

Every native function has a numpy twin in gi_sdk; callers ask ``native()`` (at call time,
through this module, so tests can swap it) and use the twin when it returns None. If the
extension failed to build, one warning says so (once per process) and everything keeps
working, only slower. ``native_available()`` says which is in use.
"""
from __future__ import annotations

import functools
import importlib
import warnings


class NativeExtensionWarning(RuntimeWarning):
    """The compiled extension is missing: gi_sdk runs its numpy twins instead."""


@functools.lru_cache(maxsize=1)
def native():
    """The ``gi_sdk._native`` module, or None (after one warning) when it is not built."""
    try:
        return importlib.import_module("gi_sdk._native")
    except ImportError as exc:  # only a missing/broken build lands here, never a logic error
        warnings.warn(
            f"gi_sdk._native is not available ({exc}); using the numpy implementations. "
            "Rebuild with `pip install -e .` (needs a C++17 compiler and pybind11).",
            NativeExtensionWarning,
            stacklevel=2,
        )
        return None


def native_available() -> bool:
    """True when gi_sdk runs its compiled extension, False when it runs the numpy twins.

    >>> import gi_sdk
    >>> gi_sdk.native_available()  # doctest: +SKIP
    True
    """
    return native() is not None
