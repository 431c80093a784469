"""The bundle reader, precision choices, engine checks and report metrics: no model needed.

Bundles here are hand-made folders (bytes standing in for ONNX files) with a real manifest,
so every refusal is checked without exporting anything; a loader that got past the checks
would reach the backend, which these tests forbid.
"""
import json
import shutil

import numpy as np
import pytest

from gi_sdk.bundle import FORMAT_VERSION, MANIFEST, PARTS, Bundle, builtin_bundle, sha256_file
from gi_sdk.checkpoint import Checkpoint
from gi_sdk.errors import BackendUnavailableError, BundleError, ExportError, ModelLoadError
from gi_sdk.result import Result


def _write_bundle(folder, **overrides):
    """A minimal well-formed bundle: four stand-in parts, a tokenizer and a manifest."""
    from gi_sdk.export.manifest import write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(PARTS):
        (folder / f"{part}.onnx").write_bytes(bytes([i]) * 64)
    (folder / "tokenizer.json").write_text("{}")
    manifest = {
        "family": "florence2",
        "preprocessing": {"image_size": [128, 128], "image_mean": [0.5] * 3, "image_std": [0.25] * 3},
        "tokenizer": {"file": "tokenizer.json", "image_seq_length": 17, "image_token_id": 9, "bos_token_id": 0,
                      "eos_token_id": 2, "pad_token_id": 1, "decoder_start_token_id": 2},
        "generation": {"forced_eos_token_id": 2},
        "parts": {part: {"file": f"{part}.onnx", "precision": "fp32"} for part in PARTS},
        **overrides,
    }
    write_manifest(folder, manifest)
    return folder


@pytest.fixture
def bundle(tmp_path):
    return _write_bundle(tmp_path / "bundle")


@pytest.fixture
def no_model_code(monkeypatch):
    """Fail the test if a backend is ever constructed: refusals must come first."""
    from gi_sdk.backends import onnxruntime_backend

    def forbidden(*args, **kwargs):
        raise AssertionError("the backend was constructed for a bundle that should have been refused")

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "__init__", forbidden)


def _edit_manifest(folder, change):
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


# ------------------------------------------------------------------ reading a good bundle
def test_good_bundle_is_described_from_its_manifest(bundle):
    ck = Checkpoint.open(bundle)
    assert ck.bundle is not None and ck.family.name == "florence2"
    assert ck.image_size == (128, 128) and ck.image_seq_length == 17 and ck.image_token_id == 9
    assert ck.generation_config["forced_eos_token_id"] == 2
    assert ck.bundle.part_path("vision_encoder") == bundle / "vision_encoder.onnx"
    assert ck.bundle.precision == dict.fromkeys(PARTS, "fp32")
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    # every file but the manifest is listed with its real hash
    assert set(manifest["files"]) == {p.name for p in bundle.iterdir()} - {MANIFEST}
    assert all(manifest["files"][n]["sha256"] == sha256_file(bundle / n) for n in manifest["files"])


def test_the_tracker_start_score_travels_in_the_manifest(tmp_path):
    """A start score is the model's (how sure its sure detections are): the manifest carries it,
    ``gi-sdk info`` shows it, and a stream's default tracker takes it; a bundle without one gets
    ``IouTracker``'s default."""
    from types import SimpleNamespace

    from gi_sdk import IouTracker
    from gi_sdk.stream import Stream

    carried = _write_bundle(tmp_path / "carried", tracking={"start_score": 0.9})
    plain = _write_bundle(tmp_path / "plain")
    assert Checkpoint.open(carried).track_start_score == 0.9 and Checkpoint.open(plain).track_start_score is None
    assert "instance score 0.9" in Bundle.open(carried).summary()
    for folder, expected in ((carried, 0.9), (plain, IouTracker().start_score)):
        session = SimpleNamespace(checkpoint=Checkpoint.open(folder))
        stream = Stream(session, iter([]), task="detect")   # no frame is read: only the set-up
        try:
            assert stream.tracker.start_score == expected
        finally:
            stream.close()
    mine = IouTracker(start_score=0.5)   # one passed in is used as it is
    stream = Stream(SimpleNamespace(checkpoint=Checkpoint.open(carried)), iter([]), task="detect", tracker=mine)
    assert stream.tracker is mine
    stream.close()


@pytest.mark.parametrize("score", [1.5, -0.2, "high", True])
def test_a_bad_tracker_start_score_is_refused(tmp_path, score, no_model_code):
    folder = _write_bundle(tmp_path / "b", tracking={"start_score": score})
    with pytest.raises(BundleError, match="start_score.*manifest|manifest.*start_score"):
        Checkpoint.open(folder)


def test_export_refuses_a_start_score_outside_0_1(tmp_path):
    from gi_sdk.export import export_bundle

    with pytest.raises(ExportError, match="track_start_score"):
        export_bundle(tmp_path / "missing", tmp_path / "b", track_start_score=1.2)
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ refusals, before any model code
def _changed_byte(folder):
    path = folder / "decoder_model_merged.onnx"
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))


def _outside(folder):
    (folder.parent / "evil.onnx").write_bytes(b"x")
    _edit_manifest(folder, lambda m: m["files"].update({"../evil.onnx": {"sha256": sha256_file(folder.parent / "evil.onnx")}}))


def _pickle(folder):
    (folder / "weights.pkl").write_bytes(b"\x80\x04N.")
    _edit_manifest(folder, lambda m: m["files"].update({"weights.pkl": {"sha256": sha256_file(folder / "weights.pkl")}}))


@pytest.mark.parametrize("tamper,names", [
    (_changed_byte, "decoder_model_merged.onnx"),                            # one flipped bit in a weight file
    (lambda f: (f / "encoder_model.onnx").unlink(), "encoder_model.onnx"),   # a file lost in copying
    (lambda f: _edit_manifest(f, lambda m: m.update(format_version=99)), "format version 99"),  # a newer writer
    (lambda f: _edit_manifest(f, lambda m: m.pop("format_version")), "format version None"),   # not ours at all
    (_outside, "../evil.onnx"),                                               # a path escaping the bundle
    (lambda f: _edit_manifest(f, lambda m: m["files"].update({"/etc/passwd.json": {"sha256": "0"}})),
     "/etc/passwd.json"),                                                    # an absolute path
    (_pickle, "weights.pkl"),                                                # code (a pickle) smuggled in
    (lambda f: (f / MANIFEST).write_text("{broken"), "manifest"),            # a corrupt manifest
    (lambda f: (f / MANIFEST).unlink(), "no manifest.json"),                 # a manifest lost
    (lambda f: _edit_manifest(f, lambda m: m["parts"]["vision_encoder"].update(file="other.onnx")),
     "vision_encoder"),                                                      # a part naming no listed file
])
def test_damaged_bundle_is_refused_naming_the_file(bundle, tamper, names, no_model_code):
    from gi_sdk import Session

    tamper(bundle)
    with pytest.raises(BundleError, match="bundle|manifest") as info:
        Bundle.open(bundle)
    assert names in str(info.value)
    if (bundle / MANIFEST).exists():  # Session refuses the same way (without a manifest it is no bundle)
        with pytest.raises(BundleError):
            Session(bundle)


def test_missing_manifest_folder_is_not_taken_for_a_bundle(bundle):
    (bundle / MANIFEST).unlink()
    with pytest.raises(ModelLoadError, match="config.json"):  # read as a checkpoint folder, which it is not
        Checkpoint.open(bundle)


# ------------------------------------------------------------------ backends per model kind
def test_backend_choice_follows_the_model_kind():
    from gi_sdk.backends import available_backends, resolve_backend

    assert resolve_backend("auto", "bundle") == "onnxruntime"
    assert "onnxruntime" not in available_backends("checkpoint")
    with pytest.raises(BackendUnavailableError, match="onnxruntime") as refused:
        resolve_backend("torch", "bundle")     # torch cannot run ONNX parts: say which backend can
    assert "gi-sdk recover" in str(refused.value)   # ... and how to get the checkpoint torch runs
    with pytest.raises(BackendUnavailableError, match="torch"):
        resolve_backend("onnxruntime", "checkpoint")


# ------------------------------------------------------------------ TensorRT engines
def test_engine_for_another_gpu_or_tensorrt_is_refused(tmp_path):
    engine = {"name": "vision_encoder", "file": "engines/vision_encoder.plan", "gpu": "NVIDIA H100",
              "compute_capability": "9.0", "tensorrt_version": "10.3.0"}
    folder = tmp_path / "b"
    (folder / "engines").mkdir(parents=True)
    (folder / "engines" / "vision_encoder.plan").write_bytes(b"plan")
    b = Bundle.open(_write_bundle(folder, tensorrt={"engines": [engine]}))
    assert b.engine("vision_encoder", "NVIDIA H100", "9.0", "10.3.0") == folder / "engines/vision_encoder.plan"
    for other in [("NVIDIA A100", "8.0", "10.3.0"), ("NVIDIA H100", "9.0", "10.4.0")]:
        with pytest.raises(BundleError, match="Rebuild"):
            b.engine("vision_encoder", *other)
    with pytest.raises(BundleError, match="no TensorRT engine"):
        b.engine("decoder_model", "NVIDIA H100", "9.0", "10.3.0")


def test_tensorrt_build_refuses_clearly_without_tensorrt():
    import importlib.util

    from gi_sdk.errors import MissingDependencyError

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; the refusal is for machines without it")
    from gi_sdk.export.tensorrt import check_can_build

    with pytest.raises(MissingDependencyError, match=r"gi-sdk\[gpu\]"):
        check_can_build()


# ------------------------------------------------------------------ the built-in model
def test_builtin_bundle_says_it_is_not_built_until_it_is(tmp_path, monkeypatch):
    import gi_sdk
    import gi_sdk.bundle

    monkeypatch.setattr(gi_sdk.bundle, "BUILTIN_DIR", tmp_path / "synthetic-demo")
    with pytest.raises(ModelLoadError, match="not built yet"):
        gi_sdk.builtin_bundle()
    _write_bundle(tmp_path / "synthetic-demo")
    assert builtin_bundle() == tmp_path / "synthetic-demo"


# ------------------------------------------------------------------ precision choices
@pytest.mark.parametrize("spec,expected", [
    ("fp32", dict.fromkeys(PARTS, "fp32")),
    ("int8", {"vision_encoder": "fp32", "embed_tokens": "int8", "encoder_model": "int8", "decoder_model_merged": "int8"}),
    ("int8-static", {"vision_encoder": "int8-static", "embed_tokens": "int8", "encoder_model": "int8",
                     "decoder_model_merged": "int8"}),
    # per part; parts left out stay fp32
    ("vision_encoder=int8-static, decoder_model_merged=fp16",
     {"vision_encoder": "int8-static", "embed_tokens": "fp32", "encoder_model": "fp32", "decoder_model_merged": "fp16"}),
    ({"encoder_model": "int8"}, {"vision_encoder": "fp32", "embed_tokens": "fp32", "encoder_model": "int8",
                                 "decoder_model_merged": "fp32"}),
    # dynamic int8 of the vision encoder's MatMuls (its convolutions stay fp32)
    ("vision_encoder=int8", {"vision_encoder": "int8", "embed_tokens": "fp32", "encoder_model": "fp32",
                             "decoder_model_merged": "fp32"}),
])
def test_precision_presets_and_per_part_choices(spec, expected):
    from gi_sdk.export.quantize import parse_precision

    assert parse_precision(spec) == expected


@pytest.mark.parametrize("spec,why", [
    ("int4", "unknown preset"),
    ("vision_encoder=int4", "no such precision"),
    ("decoder_model_merged=int8-static", "static QDQ needs calibration prompts, not offered for text parts"),
    ("lm_head=int8", "not a part"),
])
def test_unusable_precision_is_refused(spec, why):
    from gi_sdk.export.quantize import parse_precision

    with pytest.raises(ExportError):
        parse_precision(spec)


# ------------------------------------------------------------------ report metrics (pure)
def _r(task, boxes=(), polygons=(), tokens=(5, 6), text="a", count=None, size=(100, 80)):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes) if not polygons else len(polygons)
    if polygons:
        boxes = np.array([[*np.min(p, 0), *np.max(p, 0)] for p in polygons], np.float32)
    return Result(task=task, boxes=boxes, labels=["polyp"] * n, points=np.zeros((n, 2), np.float32),
                  polygons=[[np.asarray(p, np.float32)] for p in polygons], count=count, raw_text=text,
                  token_ids=np.asarray(tokens, np.int64), image_size=size)


SQUARE = [[10, 10], [50, 10], [50, 50], [10, 50]]


@pytest.mark.parametrize("ref,cand,key,expected", [
    (_r("detect", [[0, 0, 10, 10]]), _r("detect", [[0, 0, 10, 10]]), "box_iou", 1.0),          # same box
    (_r("detect", [[0, 0, 10, 10]]), _r("detect", [[5, 0, 15, 10]]), "box_iou", 1 / 3),        # half shifted
    (_r("detect", [[3, 3, 3, 9]]), _r("detect", [[3, 3, 3, 9]]), "box_iou", 1.0),              # degenerate, equal
    (_r("detect", [[0, 0, 10, 10]]), _r("detect"), "box_iou", 0.0),                            # box lost
    (_r("detect", [[0, 0, 10, 10]]), _r("detect", [[0, 0, 10, 10], [50, 50, 60, 60]]), "box_iou", 0.5),  # extra box
    (_r("detect"), _r("detect"), "box_iou", 1.0),                                              # both found none
    (_r("segment", polygons=[SQUARE]), _r("segment", polygons=[SQUARE]), "mask_iou", 1.0),
    (_r("segment", polygons=[SQUARE]), _r("segment"), "mask_iou", 0.0),
    (_r("ask", tokens=(1, 2, 3, 4)), _r("ask", tokens=(1, 2, 9)), "token_agreement", 0.5),      # 2 of 4 positions
    (_r("ask", text="two"), _r("ask", text="two"), "answer_exact_match", 1.0),
    (_r("ask", text="two"), _r("ask", text="three"), "answer_exact_match", 0.0),
    (_r("count", count=2), _r("count", count=3), "count_agreement", 0.0),
])
def test_agreement_metrics(ref, cand, key, expected):
    from gi_sdk.export.report import agreement

    assert agreement([ref], [cand])[key] == pytest.approx(expected, abs=1e-3)


def test_localization_verdict():
    from gi_sdk.export.report import LOCALIZATION_MIN_IOU, hurts_localization

    assert hurts_localization({"box_iou": LOCALIZATION_MIN_IOU - 0.01, "mask_iou": None})
    assert hurts_localization({"box_iou": 1.0, "mask_iou": 0.5})
    assert not hurts_localization({"box_iou": LOCALIZATION_MIN_IOU, "mask_iou": None})


def test_copied_bundle_still_opens(bundle, tmp_path):
    # the manifest holds relative names only: a bundle moves as a folder
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(bundle, moved)
    assert Bundle.open(moved).path == moved


# ------------------------------------------------------------------ the command line
def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gi_sdk.cli", *args], capture_output=True, text=True)


def test_info_prints_a_bundle_readably_and_refuses_a_damaged_one(bundle):
    proc = _cli("info", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert "format      version 1" in proc.stdout and "vision_encoder.onnx" in proc.stdout
    assert json.loads(_cli("info", str(bundle), "--json").stdout)["format_version"] == FORMAT_VERSION
    _changed_byte(bundle)
    proc = _cli("info", str(bundle))
    assert proc.returncode == 2 and "decoder_model_merged.onnx" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,says", [
    (["--precision", "int3"], "precision"),   # refused before any work
    ([], "does not exist"),                    # no such checkpoint
])
def test_export_errors_are_clear(tmp_path, args, says):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    proc = _cli("export", str(tmp_path / "missing"), "--out", str(tmp_path / "b"), *args)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()


def test_the_shipped_builtin_model_is_a_sound_bundle_that_answers():
    """What `Session()` and `make demo` load: a bundle whose every file matches its hash, that
    says how it was trained (both stages), and answers on a synthetic frame."""
    from gi_sdk import Session
    from gi_sdk.synthetic import SyntheticEndoscope

    bundle = Bundle.open(builtin_bundle())
    files = {p.name for p in bundle.path.iterdir()}
    assert files <= set(bundle.manifest["files"]) | {MANIFEST}   # nothing unlisted, so nothing unhashed
    assert not any(f.endswith((".pkl", ".pt", ".bin", ".py")) for f in files)
    record = json.loads((bundle.path / "training_record.json").read_text())
    import yaml

    from gi_sdk.train.builtin import RECIPE

    recipe = yaml.safe_load(RECIPE.read_text())   # the shipped model is the recipe's, every round
    assert [s["name"] for s in record["stages"]] == [s["name"] for s in recipe["stages"]]
    # ... trained with the recipe's settings, field for field (so `make builtin-model` rebuilds
    # it), all but where a round ran: its base and output folders, and whether it resumed
    from gi_sdk.train.config import TrainConfig

    where = {"base", "output_dir", "stages", "resume_from_checkpoint"}
    planned = TrainConfig.from_dict({**recipe, "base": "b", "output_dir": "o"})
    for i, stage in enumerate(record["stages"]):
        want = planned.stage_config(i).to_dict()
        got = TrainConfig.from_dict(stage["config"]).to_dict()
        assert {k: v for k, v in got.items() if k not in where} == {k: v for k, v in want.items() if k not in where}, \
            stage["name"]
    assert record["vision_pretrain"]["projector"]["token_cosine_after"] < 0.1
    session = Session()
    assert session.backend_name == "onnxruntime"
    assert session.labels == ("instrument", "polyp") == tuple(record["labels"])   # its training data's class names
    # its tracker start score, chosen for it on synthetic videos (gi_sdk.train.track_start)
    chosen = json.loads((bundle.path / "track_start.json").read_text())
    assert session.checkpoint.track_start_score == chosen["start_score"] == bundle.manifest["tracking"]["start_score"]
    assert chosen["seeds"] == list(range(8, 16)) and chosen["n_frames"] == 300
    frame, _ = SyntheticEndoscope(seed=1000, width=455, height=256).frame(0)
    r = session.detect(frame)
    assert r.task == "detect" and not r.parse_failed and len(r.boxes) == len(r.labels)
    assert set(r.labels) <= {"instrument", "polyp"}


def test_the_shipped_model_and_its_tracker_count_the_demo_videos_polyps():
    """`make demo`'s video (synthetic seed 0, 1280x720, 300 frames) shows 2 polyps: the built-in
    model with the default tracker counts 2, run offline on every second frame (a live stream
    takes about that many; which frames varies, so the live count is not the test)."""
    from gi_sdk import IouTracker, Session
    from gi_sdk.synthetic import SyntheticEndoscope

    session = Session()
    tracker = IouTracker(start_score=session.checkpoint.track_start_score)   # what stream() uses
    truth = set()
    for i, (frame, t) in enumerate(SyntheticEndoscope(seed=0, width=1280, height=720).frames(300)):
        truth |= {(t.segment, tid) for tid, label in zip(t.track_ids, t.labels) if label == "polyp"}
        if i % 2 == 0:
            r = session.detect(frame)
            tracker.update(r.boxes, r.labels, r.scores)
    assert len(truth) == 2
    assert tracker.seen.get("polyp", 0) == len(truth)


def test_recover_refuses_what_is_no_bundle_and_writes_nothing(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    for source in (tmp_path / "missing", tmp_path):   # no such folder; a folder without a manifest
        proc = _cli("recover", str(source), "--out", str(tmp_path / "ck"))
        assert proc.returncode == 2 and "no manifest.json" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "ck").exists()
