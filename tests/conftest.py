"""Shared fixtures: tiny Florence-2 checkpoints built on the fly (never downloaded)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """A folder with a Florence-2-style tokenizer (tokenizer.json + configs)."""
    from gi_sdk.train.tiny import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random-weight native Florence2ForConditionalGeneration checkpoint folder (~2.5 MB)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gi_sdk.train.tiny import build_tiny_florence2

    return build_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


@pytest.fixture(scope="session")
def hf_processor(tiny_checkpoint):
    """transformers' own Florence2Processor for the tiny checkpoint (the reference we match)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_checkpoint)


@pytest.fixture(params=["native", "twin"])
def impl(request, monkeypatch):
    """Run a test on the compiled extension, then on the numpy/Python twins."""
    import gi_sdk.native

    if request.param == "twin":
        monkeypatch.setattr(gi_sdk.native, "native", lambda: None)
    elif gi_sdk.native.native() is None:
        pytest.skip("gi_sdk._native is not built")
    return request.param


@pytest.fixture(scope="session")
def terminal_line(request):
    """A function that writes a summary line to the terminal, shown without ``-s`` too."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None or capture is None:
            print(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)

    return write


@pytest.fixture(scope="session")
def latency_bench():
    """benchmarks/latency.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_latency",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
