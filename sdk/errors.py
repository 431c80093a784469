"""Every error a user of gi_sdk can cause, one class each.

All derive from :class:`GiSdkError`, so ``except gi_sdk.errors.GiSdkError`` catches them all.
Each message says what was wrong and what to do. A bad frame fails only the call it was
passed to: the Session that raised it keeps working.
"""


class GiSdkError(Exception):
    """Base class of every gi_sdk error."""


class InvalidFrameError(GiSdkError, ValueError):
    """A frame is not an HxWx3 (or HxWx4) uint8 array."""


class ModelLoadError(GiSdkError):
    """A path given as a model is missing, or is not a checkpoint or bundle gi_sdk can load."""


class BundleError(ModelLoadError):
    """A model bundle is malformed: bad manifest, unknown format version, hash mismatch."""


class ExportError(GiSdkError):
    """An export that cannot be done, or whose result failed verification; no bundle was written."""


class UnknownTaskError(GiSdkError, KeyError):
    """A task name that the task registry does not know."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PromptError(GiSdkError, ValueError):
    """A question or task input that cannot be used (empty, too long, wrong type)."""


class BackendUnavailableError(GiSdkError):
    """A backend was asked for that this machine cannot run; the message names the pip extra."""


class MissingDependencyError(GiSdkError, ImportError):
    """An optional dependency (torch, transformers, peft, ...) is not installed."""


class SourceError(GiSdkError):
    """A video source cannot be opened or read."""


class ConfigError(GiSdkError, ValueError):
    """A pipeline configuration (``gi-sdk demo`` YAML or flags) that cannot be used."""


class GrammarError(GiSdkError):
    """Constrained decoding (``gi_sdk.grammar``, ``gi_sdk.json_grammar``): a token was chosen
    that the output's grammar does not allow there, or a grammar cannot be built."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise MissingDependencyError naming the pip extra.

    >>> torch = require("torch", "torch")
    """
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"{module} is not installed; this feature needs it. Install it with: "
            f'pip install "gi-sdk[{extra}]"'
        )
    return importlib.import_module(module)
