"""The latency benchmark's cached models follow the weights they stand for: a recovered
checkpoint is recovered again when its bundle changed, an fp32 export is exported again when its
checkpoint was retrained under the same name (else a new model would be timed as the old one)."""
import json

from gi_sdk.bundle import sha256_file


def test_fp32_export_cache_follows_the_checkpoint_weights(tmp_path, latency_bench):
    latency = latency_bench
    checkpoint, bundle = tmp_path / "ckpt", tmp_path / "bundle"
    checkpoint.mkdir()
    bundle.mkdir()
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(b"round 1 weights")
    manifest = {"provenance": {"source_checkpoint": {"files": {"model.safetensors": sha256_file(weights)}}}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert latency._exported_from(bundle, checkpoint)
    weights.write_bytes(b"round 2 weights")          # retrained under the same name
    assert not latency._exported_from(bundle, checkpoint)
    (bundle / "manifest.json").write_text("{}")      # a manifest without provenance
    assert not latency._exported_from(bundle, checkpoint)


def test_recovered_checkpoint_cache_follows_the_bundle(tmp_path, latency_bench):
    latency = latency_bench
    checkpoint, bundle = tmp_path / "ckpt", tmp_path / "bundle"
    checkpoint.mkdir()
    bundle.mkdir()
    (bundle / "manifest.json").write_text('{"model": "round 1"}')
    record = {"manifest_sha256": sha256_file(bundle / "manifest.json")}
    (checkpoint / "recovered_from_bundle.json").write_text(json.dumps(record))
    assert latency._recovered_from(checkpoint, bundle)
    (bundle / "manifest.json").write_text('{"model": "round 2"}')
    assert not latency._recovered_from(checkpoint, bundle)
