"""Export end to end on a tiny random Florence-2 (128 px): ONNX parts, verification,
bundle, quantized variants with their report, LoRA adapters merged first.

Random weights make meaningless words, but every number goes through the real path, and
the bundle must answer token for token what the torch model and transformers' ``generate``
answer. Both libraries run on one thread here: the test machine's cores are shared, and
multi-threaded kernels that wait on each other there run ten times slower.
"""
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from gi_sdk import Session  # noqa: E402
from gi_sdk.bundle import MANIFEST, PARTS, Bundle, sha256_file  # noqa: E402
from gi_sdk.errors import ExportError  # noqa: E402
from gi_sdk.preprocessing import preprocess  # noqa: E402
from gi_sdk.tasks import build_prompt  # noqa: E402

pytestmark = pytest.mark.slow

#: Small checks: 1 synthetic + 1 real frame (PolypGen, when present) x 4 tasks, short budgets.
CHECKS = dict(verify_synthetic=1, verify_real=1, verify_tokens=12, report_synthetic=1, report_real=1,
              report_tokens=16, calibration_frames=4, latency_repeats=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    mp = pytest.MonkeyPatch()
    mp.setenv("GI_SDK_ORT_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    mp.undo()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from gi_sdk.train.tiny import build_tiny_florence2

    folder = build_tiny_florence2(tmp_path_factory.mktemp("ckpt") / "tiny", image_size=128)
    # what training writes beside a merged model; its class names travel into the bundle
    (folder / "training_record.json").write_text(json.dumps({"labels": ["polyp", "instrument"]}))
    return folder


@pytest.fixture(scope="module")
def adapter(checkpoint, tmp_path_factory):
    """A LoRA adapter on the checkpoint with random (non-zero) B matrices, and the model
    peft merges from it: the reference an exported adapter must match."""
    peft = pytest.importorskip("peft")
    from transformers import Florence2ForConditionalGeneration

    model = Florence2ForConditionalGeneration.from_pretrained(checkpoint).eval()
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, which would make the merge a no-op
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    root = tmp_path_factory.mktemp("adapter")
    lora.save_pretrained(root / "adapter")
    merged = lora.merge_and_unload().eval()
    merged.save_pretrained(root / "merged")  # the same merge as a checkpoint folder, for Session(torch)
    for name in ("tokenizer.json", "preprocessor_config.json", "processor_config.json", "generation_config.json"):
        shutil.copyfile(checkpoint / name, root / "merged" / name)
    return root / "adapter", merged, root / "merged"


@pytest.fixture(scope="module")
def adapter_bundle(adapter, tmp_path_factory):
    from gi_sdk.export import ExportChecks, export_bundle

    lines = []
    out = export_bundle(adapter[0], tmp_path_factory.mktemp("bundles") / "fp32", checks=ExportChecks(**CHECKS),
                        log=lines.append)
    return out, lines


@pytest.fixture(scope="module")
def calibration_video(tmp_path_factory):
    from gi_sdk.synthetic import SyntheticEndoscope

    path = tmp_path_factory.mktemp("video") / "calib.mp4"
    SyntheticEndoscope(seed=5, width=160, height=120).write_video(path, 8)
    return path


MIXED = "vision_encoder=int8-static,embed_tokens=fp16,encoder_model=int8,decoder_model_merged=int8"


@pytest.fixture(scope="module")
def mixed_bundle(checkpoint, calibration_video, tmp_path_factory):
    from gi_sdk.export import ExportChecks, export_bundle

    # one held-out frame: the report runs it on fp32, on each quantized part alone and on all
    checks = ExportChecks(**{**CHECKS, "report_real": 0, "report_tokens": 12})
    return export_bundle(checkpoint, tmp_path_factory.mktemp("bundles") / "mixed", precision=MIXED,
                         calibration=calibration_video, checks=checks, log=None)


def _frames():
    from gi_sdk.export.frames import folder_frames, real_frames_dir, synthetic_frames

    real = real_frames_dir()
    return synthetic_frames(1, seed=3, size=(320, 240)) + (folder_frames(real, 1) if real else [])


# ------------------------------------------------------------------ fp32: same tokens as torch and generate
@pytest.mark.parametrize("task,text", [("detect", None), ("segment", "polyp"), ("ask", "Is there a polyp?")])
def test_bundle_answers_as_the_checkpoint_and_generate(adapter, adapter_bundle, task, text):
    """The exported adapter is peft's merged model: Session(bundle) on ONNX Runtime gives the
    tokens of Session(merged checkpoint) on torch and of transformers' generate."""
    merged_model = adapter[1]
    bundle = Session(adapter_bundle[0], constrained=False)  # no grammar: generate's own tokens
    torch_session = Session(adapter[2], backend="torch", constrained=False)
    assert bundle.backend_name == "onnxruntime"
    for name, frame in _frames():
        r = bundle.run(frame, task, text, max_new_tokens=20)
        assert r.token_ids.tolist() == torch_session.run(frame, task, text, max_new_tokens=20).token_ids.tolist()
        ids = bundle._prompt_ids(build_prompt(task, text))
        pixels = preprocess(frame, size=(128, 128))[None]
        with torch.inference_mode():
            out = merged_model.generate(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(pixels),
                                        max_new_tokens=20, do_sample=False, num_beams=1)
        assert r.token_ids.tolist() == out[0, 1:].tolist(), name


def test_adapter_is_merged_first_and_the_bundle_says_so(adapter, adapter_bundle):
    out, lines = adapter_bundle
    assert any("LoRA adapter" in line and "merged" in line for line in lines)
    prov = Bundle.open(out).manifest["provenance"]
    assert prov["merged_adapter"]["path"] == str(adapter[0].resolve())
    assert prov["merged_adapter"]["sha256"] and prov["source_checkpoint"]["sha256"]


def test_manifest_describes_what_was_exported_and_checked(checkpoint, adapter_bundle):
    import onnx

    out = adapter_bundle[0]
    m = json.loads((out / MANIFEST).read_text())
    assert m["family"] == "florence2" and m["opset"] >= 17
    assert m["preprocessing"]["image_size"] == [128, 128]
    assert m["tokenizer"]["image_seq_length"] == 17 and m["tasks"]["segment"]["token"] == "<REFERRING_EXPRESSION_SEGMENTATION>"
    assert m["generation"]["strategy"] == "greedy" and m["generation"]["forced_eos_token_id"] == 2
    assert {p: e["precision"] for p, e in m["parts"].items()} == dict.fromkeys(PARTS, "fp32")
    for name, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(out / name)
    v = m["verification"]
    assert v["passed"] and v["cases"] == v["identical_tokens"] >= 4 and v["max_abs_logit_diff"] < 1e-3
    assert v["frames"]["synthetic"] == 1
    assert m["provenance"]["export_git_commit"] and m["provenance"]["exported_with"]["onnxruntime"]
    for part in PARTS:
        model = onnx.load(str(out / m["parts"][part]["file"]))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        batch = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param == "batch_size", part   # dynamic batch axis
    assert not list(out.glob(".*")) and not list(out.parent.glob(".fp32.*"))  # no staging left behind


# ------------------------------------------------------------------ the decoder's KV cache
def test_cross_attention_cache_of_the_first_step_is_used_at_every_later_step(adapter_bundle):
    session = Session(adapter_bundle[0])
    backend = session.backend
    ck = session.checkpoint
    frame = _frames()[0][1]
    pixels = preprocess(frame, size=ck.image_size)[None]
    state = backend.encode_prompt(backend.encode_image(pixels), session._prompt_ids(build_prompt("detect")))
    token = np.array([ck.decoder_start_token_id], np.int64)
    logits, cache = backend.decode_step(state, token, None)
    first_cross = cache.cross_attention
    for _ in range(5):
        token = np.array([int(logits[0].argmax())], np.int64)
        previous = cache
        logits, cache = backend.decode_step(state, token, previous)
        # the very arrays of the first step are carried, never recomputed or replaced
        assert cache.cross_attention is first_cross
        assert cache.self_attention[0][0].shape()[2] == previous.self_attention[0][0].shape()[2] + 1
    # later steps read the cache, not the encoder states: zeroed states change nothing...
    blind = type(state)(hidden=np.zeros_like(state.hidden), attention_mask=state.attention_mask)
    same, _ = backend.decode_step(blind, token, previous)
    np.testing.assert_array_equal(same, logits)
    # ...and the cache is really read: a changed cross-attention cache changes the logits
    # (noise, not a constant: a constant added to every key leaves the softmax as it is)
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    noisy = [k.numpy() + rng.standard_normal(k.shape()).astype(np.float32) for k, _ in previous.cross_attention]
    shifted = type(cache)(self_attention=previous.self_attention,
                          cross_attention=[(ort.OrtValue.ortvalue_from_numpy(k), v)
                                           for k, (_, v) in zip(noisy, previous.cross_attention)])
    changed, _ = backend.decode_step(state, token, shifted)
    assert np.abs(changed - logits).max() > 1e-3
    # the graph's own later-step outputs pass the first step's cache through unchanged
    decoder = backend.sessions["decoder_model_merged"]
    feeds = {"encoder_attention_mask": state.attention_mask, "encoder_hidden_states": state.hidden,
             "inputs_embeds": backend.embed(token[:, None]), "use_cache_branch": np.array([True])}
    for i, ((k, v), (ck_, cv)) in enumerate(zip(previous.self_attention, previous.cross_attention)):
        feeds.update({f"past_key_values.{i}.decoder.key": k.numpy(), f"past_key_values.{i}.decoder.value": v.numpy(),
                      f"past_key_values.{i}.encoder.key": ck_.numpy(), f"past_key_values.{i}.encoder.value": cv.numpy()})
    out = dict(zip([o.name for o in decoder.get_outputs()], decoder.run(None, feeds)))
    np.testing.assert_array_equal(out["present.0.encoder.key"], first_cross[0][0].numpy())


def test_later_decoder_steps_run_the_branch_lifted_out_with_the_same_tokens(adapter_bundle, monkeypatch):
    """Steps after the first run the merged decoder's later-step branch as its own session
    (no ``If``, no passed-through cross-attention outputs, weights shared with the merged
    session); the tokens are those of the merged graph run for every step, which is what the
    backend falls back to without the ``onnx`` package."""
    import gi_sdk.backends.decoder_steps as steps

    lifted = Session(adapter_bundle[0], constrained=False)
    session, reads, present = lifted.backend._later
    assert "use_cache_branch" not in reads and {o.name for o in session.get_outputs()} == {"logits", *present}
    assert present and all(".decoder." in name for name in present)
    monkeypatch.setattr(steps, "later_step_graph", lambda path: None)
    merged = Session(adapter_bundle[0], constrained=False)
    assert merged.backend._later is None
    for name, frame in _frames():
        for task, text in (("detect", None), ("segment", "polyp"), ("ask", "Is there a polyp?")):
            a = lifted.run(frame, task, text, max_new_tokens=20)
            b = merged.run(frame, task, text, max_new_tokens=20)
            assert len(a.token_ids) > 1 and a.token_ids.tolist() == b.token_ids.tolist(), (name, task)
            assert a.confidence == pytest.approx(b.confidence, abs=1e-6)


def test_a_plain_token_embedding_is_looked_up_in_numpy_bit_for_bit(adapter_bundle, mixed_bundle, monkeypatch):
    """An fp32 ``embed_tokens`` part is read once into a numpy table: no embedding session, the
    part's own embeddings bit for bit, and the tokens, confidences and batched decodes of the
    session path; a part that is not a plain lookup (fp16 here) keeps its session."""
    import onnxruntime as ort

    import gi_sdk.backends.onnxruntime_backend as ort_backend

    fast = Session(adapter_bundle[0], constrained=False)
    assert "embed_tokens" not in fast.backend.sessions and fast.backend.decodes_batches
    part = ort.InferenceSession(str(adapter_bundle[0] / "embed_tokens.onnx"), providers=["CPUExecutionProvider"])
    ids = np.arange(fast.backend._embedding.shape[0], dtype=np.int64).reshape(1, -1)
    np.testing.assert_array_equal(fast.backend.embed(ids), part.run(None, {"input_ids": ids})[0])
    monkeypatch.setattr(ort_backend, "embedding_table", lambda path: None)
    slow = Session(adapter_bundle[0], constrained=False)
    assert "embed_tokens" in slow.backend.sessions and slow.backend._embedding is None
    for name, frame in _frames():
        for task, text in (("detect", None), ("ask", "Is there a polyp?")):
            a, b = fast.run(frame, task, text, max_new_tokens=20), slow.run(frame, task, text, max_new_tokens=20)
            assert a.token_ids.tolist() == b.token_ids.tolist() and a.confidence == b.confidence, (name, task)
        both = ["detect", ("ask", "Is there a polyp?")]
        assert ([r.token_ids.tolist() for r in fast.run_many(frame, both, max_new_tokens=20)]
                == [r.token_ids.tolist() for r in slow.run_many(frame, both, max_new_tokens=20)])
    monkeypatch.undo()
    assert "embed_tokens" in Session(mixed_bundle, constrained=False).backend.sessions   # fp16: not a plain lookup


def _embedding_graph(tmp_path, scale=None, axis=0, table=None):
    """An embed_tokens-like ONNX file: Gather(weight, input_ids) [* scale]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32) if table is None else table
    looked_up = "looked_up" if scale is not None else "inputs_embeds"
    nodes = [helper.make_node("Gather", ["weight", "input_ids"], [looked_up], axis=axis)]
    if scale is not None:
        nodes += [helper.make_node("Constant", [], ["scale"], value=numpy_helper.from_array(np.asarray(scale))),
                  helper.make_node("Mul", ["looked_up", "scale"], ["inputs_embeds"])]
    graph = helper.make_graph(nodes, "embed", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(table, "weight")])
    path = tmp_path / f"embed_{len(list(tmp_path.iterdir()))}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_embedding_table_takes_only_a_plain_lookup_and_scales_as_onnxruntime_does(tmp_path):
    """BART's embed_scale (sqrt(d_model) with scale_embedding) comes out as onnxruntime's Mul
    computes it; a lookup along another axis, a non-scalar factor or an fp16 table is not a
    plain lookup (None: the backend runs the part)."""
    import onnxruntime as ort

    from gi_sdk.backends.embedding_table import embedding_table

    ids = np.array([[0, 7, 49, 3], [5, 5, 1, 2]], np.int64)
    for scale in (None, np.float32(np.sqrt(192.0))):
        path = _embedding_graph(tmp_path, scale)
        table = embedding_table(path)
        expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]
        np.testing.assert_array_equal(table[ids], expected)
    assert not np.array_equal(embedding_table(_embedding_graph(tmp_path, np.float32(2.5))),
                              embedding_table(_embedding_graph(tmp_path)))
    assert embedding_table(_embedding_graph(tmp_path, axis=1)) is None
    assert embedding_table(_embedding_graph(tmp_path, np.ones(8, np.float32))) is None
    assert embedding_table(_embedding_graph(tmp_path, table=np.ones((50, 8), np.float16))) is None


def test_parts_take_other_batch_sizes_and_padded_prompts(adapter, adapter_bundle):
    """Dynamic axes for real: batch 2 with a padded prompt, against the torch model."""
    import onnxruntime as ort

    model = adapter[1]
    folder = adapter_bundle[0]
    run = {p: ort.InferenceSession(str(folder / f"{p}.onnx"), providers=["CPUExecutionProvider"]) for p in PARTS}
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 1000, (2, 9)).astype(np.int64)
    mask = np.ones((2, 9), np.int64)
    mask[1, 6:] = 0  # the second prompt is shorter, padded
    embeds = run["embed_tokens"].run(None, {"input_ids": ids})[0]
    hidden = run["encoder_model"].run(None, {"inputs_embeds": embeds, "attention_mask": mask})[0]
    with torch.inference_mode():
        ref = model.get_encoder()(inputs_embeds=torch.from_numpy(embeds), attention_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(hidden[:, :6], ref.last_hidden_state.numpy()[:, :6], atol=1e-4)
    pixels = rng.standard_normal((2, 3, 128, 128)).astype(np.float32)
    feats = run["vision_encoder"].run(None, {"pixel_values": pixels})[0]
    with torch.inference_mode():
        ref_feats = model.get_image_features(torch.from_numpy(pixels)).pooler_output.numpy()
    np.testing.assert_allclose(feats, ref_feats, atol=1e-4)



def test_backend_runs_one_frame_on_a_batch_one_graph_and_batches_on_the_exported_one(adapter_bundle):
    """The onnxruntime backend pins the vision encoder's batch axis to 1 (shape arithmetic folded
    away); a batch of frames loads the dynamic graph and gives each frame's own features."""
    backend = Session(adapter_bundle[0], backend="onnxruntime").backend
    assert backend.sessions["vision_encoder"].get_inputs()[0].shape[0] == 1
    from gi_sdk.export.frames import synthetic_frames

    frames = [f for _, f in synthetic_frames(2, seed=5, size=(320, 240))]
    pixels = np.stack([preprocess(f, size=backend.checkpoint.image_size) for f in frames])
    one_by_one = np.concatenate([backend.encode_image(p[None]) for p in pixels])
    assert backend._vision_batch is None  # not loaded until a batch comes
    batched = backend.encode_image(pixels)
    assert backend._vision_batch.get_inputs()[0].shape[0] == "batch_size"
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 1e-3  # two frames, two different answers

# ------------------------------------------------------------------ a failed verification writes nothing
def test_failed_verification_writes_no_bundle(checkpoint, tmp_path, monkeypatch):
    """A broken export (vision weights damaged after tracing) is caught by verification."""
    import onnx
    from onnx import numpy_helper

    import gi_sdk.export.writer as writer
    from gi_sdk.export import ExportChecks, export_bundle

    real_export = writer.export_parts

    def broken_export(model, folder, image_size, graphs):
        paths = real_export(model, folder, image_size, graphs)
        vision = onnx.load(str(paths["vision_encoder"]))
        biggest = max(vision.graph.initializer, key=lambda t: np.prod(t.dims))
        biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) * 3.0, biggest.name))
        onnx.save(vision, str(paths["vision_encoder"]))
        return paths

    monkeypatch.setattr(writer, "export_parts", broken_export)
    out = tmp_path / "never"
    checks = ExportChecks(**{**CHECKS, "verify_real": 0, "verify_tokens": 6})
    with pytest.raises(ExportError, match="failed verification") as info:
        export_bundle(checkpoint, out, checks=checks, log=None)
    assert "differ" in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no bundle, no staging folder


def test_quantized_export_without_report_frames_is_refused_and_writes_nothing(checkpoint, tmp_path):
    """A quantized part must be measured against fp32 before it ships: no held-out frame, no bundle."""
    from gi_sdk.export import ExportChecks, export_bundle

    out = tmp_path / "never"
    checks = ExportChecks(**{**CHECKS, "verify_real": 0, "verify_tokens": 6, "report_synthetic": 0, "report_real": 0})
    with pytest.raises(ExportError, match="held-out frames"):
        export_bundle(checkpoint, out, precision="int8", checks=checks, log=None)
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ quantized variants
def test_mixed_precision_bundle_loads_and_reports(checkpoint, mixed_bundle):
    m = Bundle.open(mixed_bundle).manifest
    assert m["labels"] == ["polyp", "instrument"] and m["provenance"]["training_record"] == "training_record.json"
    assert "labels      polyp, instrument" in Bundle.open(mixed_bundle).summary()
    assert Session(mixed_bundle).labels == ("instrument", "polyp")   # the grammar's label vocabulary
    want = dict(item.split("=") for item in MIXED.split(","))
    assert {p: e["precision"] for p, e in m["parts"].items()} == want
    assert m["parts"]["vision_encoder"]["file"] == "vision_encoder_int8_static.onnx"
    assert m["parts"]["embed_tokens"]["file"] == "embed_tokens_fp16.onnx"
    assert sorted(p.name for p in mixed_bundle.glob("*.onnx")) == sorted(e["file"] for e in m["parts"].values())
    report = json.loads((mixed_bundle / "quantization_report.json").read_text())
    assert (mixed_bundle / "quantization_report.md").read_text().startswith("# Quantization report")
    assert {"quantization_report.json", "quantization_report.md"} <= set(m["files"])
    assert "calib.mp4" in report["calibration"]
    names = [v["name"] for v in report["variants"]]
    # the reference, each quantized part alone, then all together
    assert names[0] == "fp32" and names[-1] == MIXED and len(names) == 2 + len(want)
    by_name = {v["name"]: v for v in report["variants"]}
    for v in report["variants"]:
        assert set(v["latency_ms"]) == set(report["latency_columns"]) and all(t > 0 for t in v["latency_ms"].values())
        if v["name"] != "fp32":
            acc = v["accuracy"]
            assert acc["cases"] == len(report["held_out"]["frames"]) * 4
            assert all(0.0 <= acc[k] <= 1.0 for k in ("token_agreement", "answer_exact_match", "box_iou",
                                                      "count_agreement"))
    # int8 weights are smaller than fp32 ones: the decoder by about 4x, the fp16 embedding by 2x
    fp32_files = by_name["fp32"]["files"]
    final = by_name[MIXED]["files"]
    assert final["decoder_model_merged"]["bytes"] < 0.6 * fp32_files["decoder_model_merged"]["bytes"]
    assert final["embed_tokens"]["bytes"] < 0.6 * fp32_files["embed_tokens"]["bytes"]
    assert report["choice"]["precision"] == want and report["choice"]["why"]
    # the numbers come from a run: the same held-out cases on torch (which verification showed
    # gives fp32 ONNX's tokens) and on this bundle agree exactly as the report says
    from gi_sdk.export.report import agreement, run_cases

    frames = _held_out_frames(report)
    budget = report["held_out"]["max_new_tokens"]
    ours = agreement(run_cases(Session(checkpoint, backend="torch"), frames, max_new_tokens=budget),
                     run_cases(Session(mixed_bundle), frames, max_new_tokens=budget))
    assert ours == by_name[MIXED]["accuracy"]


def _held_out_frames(report):
    """The report's held-out frames, rebuilt from their names."""
    from gi_sdk.export.frames import HELD_OUT_SEED, folder_frames, real_frames_dir, synthetic_frames

    names = report["held_out"]["frames"]
    real = real_frames_dir()
    pool = synthetic_frames(1, HELD_OUT_SEED) + (folder_frames(real) if real else [])
    frames = [f for f in pool if f[0] in names]
    assert [f[0] for f in frames] == names
    return frames


def test_fp16_merged_decoder_runs_close_to_fp32(checkpoint, tmp_path):
    """fp16 conversion of the two decoder graphs, merged again under the If, stays close to fp32."""
    import onnxruntime as ort
    from transformers import Florence2ForConditionalGeneration

    from gi_sdk.export.parts import export_parts
    from gi_sdk.export.quantize import make_variant

    model = Florence2ForConditionalGeneration.from_pretrained(checkpoint).eval()
    paths = export_parts(model, tmp_path / "parts", (128, 128), tmp_path / "graphs")
    fp16 = make_variant("decoder_model_merged", paths["decoder_model_merged"], "fp16", decoder_graphs=tmp_path / "graphs")
    rng = np.random.default_rng(1)
    feeds = {"encoder_attention_mask": np.ones((1, 20), np.int64),
             "encoder_hidden_states": rng.standard_normal((1, 20, 64)).astype(np.float32),
             "inputs_embeds": rng.standard_normal((1, 1, 64)).astype(np.float32),
             "use_cache_branch": np.array([False])}
    for i in range(2):
        for kind in ("decoder", "encoder"):
            for kv in ("key", "value"):
                feeds[f"past_key_values.{i}.{kind}.{kv}"] = np.zeros((1, 4, 0, 16), np.float32)
    ref, half = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
                 for p in (paths["decoder_model_merged"], fp16))
    assert fp16.stat().st_size < 0.6 * paths["decoder_model_merged"].stat().st_size
    scale = np.abs(ref).max()
    assert np.abs(half - ref).max() < 0.02 * scale


# ------------------------------------------------------------------ bundle -> checkpoint
RECOVER_FRAMES = (1, 0)   # one synthetic frame x four tasks: the comparison's path, kept short


def test_an_fp32_bundle_gives_back_its_checkpoint_bit_for_bit(checkpoint, adapter, adapter_bundle, tmp_path):
    """`gi-sdk recover`: every weight of the merged model comes back exactly from the ONNX
    parts, and the folder loads as an ordinary checkpoint (transformers' model and processor,
    gi_sdk's torch backend) that answers with the bundle's tokens."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from gi_sdk.export.recover import RECORD, checkpoint_from_bundle

    lines = []
    out = checkpoint_from_bundle(adapter_bundle[0], tmp_path / "ck", verify_frames=RECOVER_FRAMES, log=lines.append)
    recovered = Florence2ForConditionalGeneration.from_pretrained(out).eval().state_dict()
    original = adapter[1].state_dict()
    assert set(recovered) == set(original)
    unequal = [k for k in original if not torch.equal(recovered[k], original[k])]
    assert not unequal, unequal[:5]
    record = json.loads((out / RECORD).read_text())
    assert record["weights"] == "exact" and record["comparison_with_bundle"]["passed"]
    assert record["comparison_with_bundle"]["cases"] == 4
    (name, frame), = _frames()[:1]
    from PIL import Image

    image = Image.fromarray(frame[..., ::-1].copy())   # the HF processor: same ids and pixels as the original's
    ours, theirs = (AutoProcessor.from_pretrained(f)(text=build_prompt("segment", "polyp"), images=image,
                                                      return_tensors="pt") for f in (out, checkpoint))
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    ours = Session(out, backend="torch", constrained=False).run(frame, "detect", max_new_tokens=12)
    theirs = Session(adapter_bundle[0], constrained=False).run(frame, "detect", max_new_tokens=12)
    assert ours.token_ids.tolist() == theirs.token_ids.tolist()
    assert "4 of 4 cases" in lines[-1] and "exact weights" in lines[-1]


def test_a_quantized_bundle_gives_back_its_weights_dequantized(checkpoint, mixed_bundle, tmp_path):
    """int8 dynamic (text parts), int8 QDQ per channel (vision) and fp16 (embedding) weights
    come back within their quantization step of the original; fp32 values exactly."""
    from transformers import Florence2ForConditionalGeneration

    from gi_sdk.export.recover import RECORD, checkpoint_from_bundle

    out = checkpoint_from_bundle(mixed_bundle, tmp_path / "ck", verify_frames=RECOVER_FRAMES, log=None)
    recovered = Florence2ForConditionalGeneration.from_pretrained(out).state_dict()
    original = Florence2ForConditionalGeneration.from_pretrained(checkpoint).state_dict()
    worst = {}
    for key, want in original.items():
        got = recovered[key]
        assert got.shape == want.shape and got.dtype == want.dtype, key
        worst[key] = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    # an int8 step is at most 2/255 of a tensor's range (per tensor or per channel)
    assert max(worst.values()) < 2 / 255 + 1e-6, max(worst, key=worst.get)
    quantized = [k for k, w in worst.items() if w > 0]
    assert any("vision_tower" in k for k in quantized) and any("decoder.layers" in k for k in quantized)
    assert any(k.endswith("shared.weight") for k in quantized)          # the fp16 embedding
    record = json.loads((out / RECORD).read_text())
    assert record["weights"].startswith("quantized parts dequantized")
    assert record["part_precisions"] == dict(item.split("=") for item in MIXED.split(","))


def test_dynamic_int8_vision_encoder_quantizes_its_matrix_products_and_comes_back(checkpoint, tmp_path):
    """vision_encoder=int8 (what ``auto`` tries first for the vision tower): MatMulInteger for
    the matrix products, the convolutions left fp32 (no ConvInteger); the bundle runs, stays
    near fp32, and its weights come back within an int8 step."""
    import onnx
    from transformers import Florence2ForConditionalGeneration

    from gi_sdk.export import ExportChecks, export_bundle
    from gi_sdk.export.quantize import AUTO_CANDIDATES
    from gi_sdk.export.recover import checkpoint_from_bundle

    assert AUTO_CANDIDATES["vision_encoder"] == "int8"
    checks = ExportChecks(**{**CHECKS, "report_real": 0, "report_tokens": 12})
    out = export_bundle(checkpoint, tmp_path / "vision-int8", precision="vision_encoder=int8", checks=checks, log=None)
    part = Bundle.open(out).manifest["parts"]["vision_encoder"]
    assert part == {"file": "vision_encoder_int8.onnx", "precision": "int8"}
    ops = {n.op_type for n in onnx.load(str(out / part["file"])).graph.node}
    assert "MatMulInteger" in ops and "Conv" in ops and "ConvInteger" not in ops
    report = json.loads((out / "quantization_report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["fp32", "vision_encoder=int8"]
    assert report["variants"][1]["accuracy"]["cases"] == 4
    frame = _frames()[0][1]
    assert Session(out).detect(frame, max_new_tokens=12).raw_text is not None

    back = checkpoint_from_bundle(out, tmp_path / "ck", verify_frames=RECOVER_FRAMES, log=None)
    recovered = Florence2ForConditionalGeneration.from_pretrained(back).state_dict()
    original = Florence2ForConditionalGeneration.from_pretrained(checkpoint).state_dict()
    moved = {k: float((recovered[k] - w).abs().max() / w.abs().max().clamp_min(1e-12)) for k, w in original.items()}
    assert max(moved.values()) < 2 / 255 + 1e-6, max(moved, key=moved.get)
    quantized = [k for k, w in moved.items() if w > 0]
    # the vision encoder part holds the tower and the projector (an image_projection MatMul)
    assert quantized and [k for k in quantized if not k.startswith(("model.vision_tower.", "model.multi_modal_projector."))] == []
    assert not any("conv" in k and "vision_tower" in k and k.endswith(".weight") for k in quantized)


def test_recovery_refuses_a_folder_that_is_not_empty(adapter_bundle, tmp_path):
    from gi_sdk.export.recover import checkpoint_from_bundle

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        checkpoint_from_bundle(adapter_bundle[0], tmp_path / "ck", log=None)
    assert (tmp_path / "ck" / "keep.txt").read_text() == "mine"
