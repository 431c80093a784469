"""The torch backend's decode paths (``decode=``): a preallocated static KV cache, eager or
compiled with ``torch.compile``, gives the tokens of the eager dynamic-cache path, for one
prompt and for a batch of prompts whose rows end at different steps. ("cuda-graphs" is the
compiled path in mode "reduce-overhead", which captures CUDA graphs: it needs a GPU, and the
benchmark runs it there.)"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gi_sdk import Session  # noqa: E402
from gi_sdk.backends.torch_backend import ENCODER_BUCKET, StaticDecode  # noqa: E402
from gi_sdk.errors import ConfigError  # noqa: E402

CASES = [("detect", None), ("ask", "Is there a polyp in the upper left of the image?"), ("segment", "polyp")]


def _frame(seed, h=240, w=320):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def eager(tiny_checkpoint):
    return Session(tiny_checkpoint, backend="torch", constrained=False)


@pytest.fixture(scope="module", params=["static", "compiled"])
def static(request, tiny_checkpoint):
    return Session(tiny_checkpoint, backend="torch", constrained=False, backend_options={"decode": request.param})


def test_static_paths_give_the_eager_tokens(eager, static):
    assert static.backend.decode_mode in ("static", "compiled")
    for seed in range(3):
        frame = _frame(seed)
        for task, text in CASES:
            want = eager.run(frame, task, text, max_new_tokens=40)
            got = static.run(frame, task, text, max_new_tokens=40)
            assert got.token_ids.tolist() == want.token_ids.tolist(), (task, seed)
            np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
        # a batch of prompts of different lengths and budgets: rows end at different steps
        batch = static.run_many(frame, CASES)
        for (task, text), r in zip(CASES, batch):
            assert r.token_ids.tolist() == eager.run(frame, task, text).token_ids.tolist(), (task, seed)


def test_static_cache_is_sized_for_the_budget_and_padded_encoder(static):
    backend = static.backend
    features = backend.encode_image(np.zeros((1, 3, 768, 768), np.float32))
    ids = static._prompt_ids("<OD>")
    state = backend.encode_prompt(features, ids)
    assert state.hidden.shape[1] % ENCODER_BUCKET == 0 and state.hidden.shape[1] >= ids.shape[1]
    assert int(state.attention_mask.sum()) == ids.shape[1]       # the padding is masked
    cache = backend.start_decode(state, 100)
    assert isinstance(cache, StaticDecode) and cache.capacity == 128
    logits, cache = backend.decode_step(state, np.array([2]), cache)
    assert cache.steps == 1 and logits.shape[0] == 1


def test_precision_and_decode_options(tiny_checkpoint):
    s = Session(tiny_checkpoint, backend="torch", backend_options={"precision": "bf16"})
    assert s.backend.dtype == torch.bfloat16 and s.backend.precision == "bf16"
    assert s.detect(_frame(0), max_new_tokens=12).count >= 0   # runs end to end, parses
    with pytest.raises(ConfigError, match="cuda-graphs.*cuda"):
        Session(tiny_checkpoint, backend="torch", backend_options={"decode": "cuda-graphs"})
    with pytest.raises(ConfigError, match="precision"):
        Session(tiny_checkpoint, backend="torch", backend_options={"precision": "int4"})
    with pytest.raises(ConfigError, match="no option 'threads'.*precision"):
        Session(tiny_checkpoint, backend="torch", backend_options={"threads": 2})
