"""Reading a model bundle: a folder that describes itself in ``manifest.json``.

A bundle (written by ``gi_sdk.export.export_bundle``) holds the ONNX parts of a model, its
tokenizer and a manifest: format version, family, preprocessing, tokenizer ids, task
prompts, generation defaults, every file with its sha256, the precision of each part,
provenance and the verification run at export time (DESIGN.md section 5).

``Bundle.open(path)`` checks all of it before any model code runs: the format version, that
every listed file lies inside the bundle, is data (ONNX, JSON, TensorRT plans, safetensors,
text; never pickles or code) and has the listed hash. Anything wrong raises ``BundleError``
naming the file.

>>> bundle = Bundle.open("path/to/bundle")
>>> bundle.part_path("vision_encoder"), bundle.precision
(PosixPath('path/to/bundle/vision_encoder_int8.onnx'), {'vision_encoder': 'int8-static', ...})
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import BundleError, ModelLoadError

#: The manifest layout this gi_sdk writes and reads.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: The ONNX parts of a Florence-2 bundle, in the order a frame goes through them.
PARTS = ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged")
#: File types a bundle may hold: weights and descriptions only, never code or pickles.
DATA_SUFFIXES = (".onnx", ".onnx.data", ".json", ".plan", ".safetensors", ".md", ".txt", ".cache")

BUILTIN_DIR = Path(__file__).resolve().parent / "models" / "synthetic-demo"


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: Path, name: str) -> Path:
    """The file ``name`` of the manifest, refused unless it is a relative path inside ``root``."""
    pure = PurePosixPath(name)
    if (not name or pure.is_absolute() or "\\" in name or ".." in pure.parts
            or not (root / name).resolve().is_relative_to(root.resolve())):
        raise BundleError(f"{root / MANIFEST}: file entry {name!r} points outside the bundle; "
                          "a bundle lists only files inside its own folder. Re-export it.")
    if not name.endswith(DATA_SUFFIXES):
        raise BundleError(f"{root / MANIFEST}: file {name!r} is not a data file a bundle may hold "
                          f"({', '.join(DATA_SUFFIXES)}); bundles never contain code or pickles")
    return root / name


@dataclass(frozen=True)
class Bundle:
    """A checked model bundle folder.

    path: the bundle folder.
    manifest: the parsed ``manifest.json``.
    """

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path, check_hashes: bool = True) -> "Bundle":
        """Read and check the bundle at ``path``; raise BundleError for anything wrong.

        check_hashes: compare every file with its sha256 (a few seconds for a base-size
            model); only tools that rewrite a bundle they just wrote turn it off.
        """
        root = Path(path).expanduser()
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(f"{root} has no {MANIFEST}; it is not a gi_sdk model bundle "
                              "(export one with: gi-sdk export CHECKPOINT --out BUNDLE)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path}: cannot read the manifest ({exc}); re-export the bundle") from exc
        if not isinstance(manifest, dict):
            raise BundleError(f"{manifest_path}: the manifest is not a JSON object; re-export the bundle")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{manifest_path}: bundle format version {version!r}; this gi_sdk reads version "
                              f"{FORMAT_VERSION}. Re-export the bundle with this gi_sdk, or install the gi_sdk "
                              "that wrote it")
        files = manifest.get("files")
        parts = manifest.get("parts")
        if not isinstance(files, dict) or not isinstance(parts, dict):
            raise BundleError(f"{manifest_path}: the manifest has no 'files' or 'parts' table; re-export the bundle")
        for name, entry in files.items():
            file = _inside(root, name)
            if not file.is_file():
                raise BundleError(f"{root}: file {name} listed in the manifest is missing; copy the whole bundle")
            expected = entry.get("sha256") if isinstance(entry, dict) else None
            if check_hashes and sha256_file(file) != expected:
                raise BundleError(f"{file}: sha256 differs from the manifest's; the file is damaged or was "
                                  "changed after export. Copy the bundle again or re-export it")
        for part in PARTS:
            name = (parts.get(part) or {}).get("file")
            if name not in files:
                raise BundleError(f"{manifest_path}: part {part!r} names no listed file ({name!r}); re-export the bundle")
        tokenizer = (manifest.get("tokenizer") or {}).get("file")
        if tokenizer not in files:
            raise BundleError(f"{manifest_path}: tokenizer file {tokenizer!r} is not listed; re-export the bundle")
        return cls(path=root, manifest=manifest)

    def part_path(self, part: str) -> Path:
        """The ONNX file that runs ``part`` (one of ``PARTS``)."""
        return self.path / self.manifest["parts"][part]["file"]

    def engine(self, name: str, gpu: str, compute_capability: str, tensorrt_version: str) -> Path:
        """The TensorRT engine ``name`` (``engines/<name>.plan``), refused with BundleError
        unless it was built for this GPU (name and compute capability) and TensorRT version:
        TensorRT engines do not move between GPUs or TensorRT releases."""
        entries = {e.get("name"): e for e in (self.manifest.get("tensorrt") or {}).get("engines", [])}
        entry = entries.get(name)
        if entry is None:
            raise BundleError(f"{self.path}: the bundle has no TensorRT engine {name!r} (it has "
                              f"{', '.join(sorted(entries)) or 'none'}); export with --tensorrt on the target GPU")
        built = (entry.get("gpu"), entry.get("compute_capability"), entry.get("tensorrt_version"))
        if built != (gpu, compute_capability, tensorrt_version):
            raise BundleError(
                f"{self.path / entry['file']}: engine built for {built[0]} (compute capability {built[1]}) with "
                f"TensorRT {built[2]}; this machine has {gpu} ({compute_capability}) with TensorRT "
                f"{tensorrt_version}. Rebuild the engines here (gi-sdk export CHECKPOINT --tensorrt) or use "
                "the ONNX parts (backend 'onnxruntime')")
        return self.path / entry["file"]

    @property
    def precision(self) -> dict:
        """Precision of each part: ``{"vision_encoder": "fp32", ...}``."""
        return {part: entry.get("precision") for part, entry in self.manifest["parts"].items()}

    def summary(self) -> str:
        """The manifest as readable text (``gi-sdk info BUNDLE``)."""
        m = self.manifest
        pre, tok, gen = m.get("preprocessing", {}), m.get("tokenizer", {}), m.get("generation", {})
        prov, ver = m.get("provenance", {}), m.get("verification", {})
        lines = [
            f"bundle      {self.path}",
            f"format      version {m['format_version']}, family {m.get('family')}, opset {m.get('opset')}",
            f"image       {pre.get('image_size')} {pre.get('resample')}, mean {pre.get('image_mean')}, "
            f"std {pre.get('image_std')}",
            f"tokenizer   {tok.get('file')} ({tok.get('vocab_size')} tokens), image token id "
            f"{tok.get('image_token_id')} x {tok.get('image_seq_length')}",
            f"generation  {gen}",
            "parts:",
        ]
        for part in PARTS:
            entry = m["parts"][part]
            size = m["files"][entry["file"]].get("bytes", 0)
            lines.append(f"  {part:22s} {entry['file']:38s} {entry.get('precision', '?'):12s} {size / 1e6:8.2f} MB")
        lines.append(f"tasks       {', '.join(sorted(m.get('tasks', {})))}")
        lines.append(f"labels      {', '.join(m.get('labels') or []) or 'any words (no label vocabulary)'}")
        if (m.get("tracking") or {}).get("start_score") is not None:
            lines.append(f"tracking    a detection starts a track from instance score {m['tracking']['start_score']}")
        source = prov.get("source_checkpoint", {})
        lines.append(f"source      {source.get('path')} (sha256 {str(source.get('sha256'))[:16]}...)")
        if prov.get("merged_adapter"):
            lines.append(f"adapter     merged from {prov['merged_adapter'].get('path')}")
        lines.append(f"commits     export {prov.get('export_git_commit')}, training {prov.get('training_git_commit')}")
        if ver:
            tol = ver.get("logit_tolerance") or {}
            lines.append(f"verified    {'passed' if ver.get('passed') else 'FAILED'} against {ver.get('reference')}: "
                         f"tokens identical in {ver.get('identical_tokens')}/{ver.get('cases')} cases, max |logit diff| "
                         f"{ver.get('max_abs_logit_diff', 0):.2g} (allowed {tol.get('atol')} + {tol.get('rtol')} x |logit|)")
        quant = m.get("quantization") or {}
        if quant.get("report"):
            lines.append(f"quantized   {quant.get('requested')}: {quant.get('choice', {}).get('why')}")
            lines.append(f"report      {quant['report']}, {quant.get('report_markdown')} "
                         "(sizes, CPU latency, accuracy against fp32)")
        for engine in m.get("tensorrt", {}).get("engines", []):
            lines.append(f"tensorrt    {engine.get('file')} ({engine.get('precision')}, {engine.get('gpu')}, "
                         f"TensorRT {engine.get('tensorrt_version')})")
        lines.append(f"files       {len(m['files'])}, {sum(e.get('bytes', 0) for e in m['files'].values()) / 1e6:.2f} MB")
        return "\n".join(lines)


def is_bundle(path) -> bool:
    """Whether ``path`` is a folder with a bundle manifest (not checked: use ``Bundle.open``)."""
    return (Path(path).expanduser() / MANIFEST).is_file()


def builtin_bundle() -> Path:
    """The folder of the built-in model shipped inside the package (``gi_sdk/models/synthetic-demo``).

    Raises ModelLoadError while the package ships none (a source checkout before
    ``make builtin-model`` has run).

    >>> Session(builtin_bundle())           # what Session() without a path loads
    """
    if is_bundle(BUILTIN_DIR) or (BUILTIN_DIR / "config.json").is_file():
        return BUILTIN_DIR
    raise ModelLoadError(
        f"the built-in model is not built yet ({BUILTIN_DIR} holds none). Build it with "
        "`make builtin-model` (python -m gi_sdk.train.builtin), or pass a model path"
    )
