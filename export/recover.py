"""A model bundle -> a merged checkpoint with its weights: ``checkpoint_from_bundle``.

Why: a bundle is what ships (the built-in model ships as nothing else), but ``transformers``,
gi_sdk's torch backend (fp16 and CUDA graphs on a GPU) and further fine-tuning take a
checkpoint. Every weight of a Florence-2 model is in its bundle's four ONNX parts; this puts
them back into ``Florence2ForConditionalGeneration`` and saves an ordinary checkpoint folder.

How: no ONNX-to-torch converter knows Florence-2, and the exporter renames weights (a Linear
layer's weight becomes a transposed ``onnx::MatMul_N`` initializer). So the same model shape
is built with every parameter filled with distinct random values and traced with the same
exporter (``gi_sdk.export.parts``); each initializer of that trace is matched by value to the
parameter(s) it holds (transposed or not; several for tied weights). The exporter names the
initializers of one model shape the same way every time (same torch and transformers), so
the bundle's initializer of that name holds the parameter's exported value. Distinct values
matter: the exporter merges initializers with equal contents, as fresh zero biases are.
Quantized parts give back their dequantized weights (scale x (q - zero point)), which is what
int8 kernels multiply with; fp16 parts are widened to fp32. Every parameter must be found,
and the recovered model is then run against the bundle (``gi_sdk.export.verify``): tokens
identical where every part is fp32, agreement reported where a part is quantized.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from gi_sdk.bundle import PARTS, Bundle
from gi_sdk.errors import ExportError, require

from .parts import export_parts
from .verify import compare_sessions, summarize, verification_frames
from .writer import _say

#: Written into the recovered checkpoint: where it came from and how it compared.
RECORD = "recovered_from_bundle.json"


def _nodes(graph):
    """Every node of ``graph``, those of its subgraphs (the decoder's ``If`` branches) too."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                yield from _nodes(attr.g)


class _Part:
    """One ONNX part's weights: its initializers, the nodes that hand a weight on (Identity,
    DequantizeLinear) and which node reads which input."""

    def __init__(self, onnx, path: Path):
        from onnx import numpy_helper

        graph = onnx.load(str(path)).graph
        self.arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.inputs, self.reader, self.producer, self.axis = {}, {}, {}, {}
        for node in _nodes(graph):
            if node.op_type in ("Identity", "DequantizeLinear"):
                self.producer[node.output[0]] = node
            if node.op_type == "DequantizeLinear":   # int8-static: per channel along this axis
                self.axis[node.input[0]] = next((a.i for a in node.attribute if a.name == "axis"), 1)
            self.inputs[node.name] = list(node.input)
            for slot, name in enumerate(node.input):
                self.reader.setdefault(name, (node.name, slot))

    def _value(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The float32 value of ``name``: an initializer, an int8 dynamic weight
        (``name_quantized`` x ``name_scale``), or what an Identity (``torch.onnx`` hands out
        one of several equal initializers under the others' names) or a DequantizeLinear
        (int8-static weights) of initializers gives. None: none of these."""
        if name in self.arrays:
            return np.asarray(self.arrays[name], np.float32)
        q = f"{name}_quantized"
        if q in self.arrays and f"{name}_scale" in self.arrays:   # int8 dynamic: per output column
            return _dequantize(self.arrays[q], self.arrays[f"{name}_scale"],
                               self.arrays.get(f"{name}_zero_point"), axis=self.axis.get(q, -1))
        node = self.producer.get(name)
        if node is None or depth > 8:
            return None
        if node.op_type == "Identity":
            return self._value(node.input[0], depth + 1)
        if all(i in self.arrays for i in node.input if i):
            zero = self.arrays[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            return _dequantize(self.arrays[node.input[0]], self.arrays[node.input[1]], zero,
                               self.axis[node.input[0]])
        return None

    def weight(self, name: str, reader: tuple | None) -> np.ndarray | None:
        """The float32 value of weight ``name``, or else of the weight that the node reading
        ``name`` in the traced graph (``reader``: node name, input slot) reads here (the
        decoder merge keeps one of several equal weights under one name)."""
        value = self._value(name)
        if value is None and reader is not None and reader[0] in self.inputs:
            inputs = self.inputs[reader[0]]
            if reader[1] < len(inputs):
                value = self._value(inputs[reader[1]])
        return value


def _dequantize(q, scale, zero, axis: int) -> np.ndarray:
    """scale x (q - zero point), per tensor or per channel along ``axis``."""
    value = np.asarray(q).astype(np.float32)
    scale = np.asarray(scale, np.float32)
    zero = np.zeros_like(scale) if zero is None else np.asarray(zero).astype(np.float32)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * value.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (value - zero) * scale


def _fingerprint_model(transformers, torch, config: dict, seed: int):
    """The bundle's model shape with every parameter distinct random values."""
    torch.manual_seed(seed)
    model = transformers.Florence2ForConditionalGeneration(
        transformers.Florence2Config.from_dict(config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def _where_each_parameter_went(onnx, model, traced: dict) -> dict:
    """{part: {initializer name: ([(parameter name, transposed), ...], (reading node, slot))}}."""
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    found = {}
    for part, path in traced.items():
        graph = _Part(onnx, path)
        places = {}
        for name, value in graph.arrays.items():
            hits = [(k, False) for k, v in state.items() if v.shape == value.shape and np.array_equal(v, value)]
            hits += [(k, True) for k, v in state.items()
                     if v.ndim == 2 and v.shape[::-1] == value.shape and np.array_equal(v.T, value)]
            if hits:
                places[name] = (hits, graph.reader.get(name))
        found[part] = places
    return found


def checkpoint_from_bundle(bundle, out, verify_frames: tuple = (2, 1), log=print) -> Path:
    """Write the merged checkpoint a Florence-2 ``bundle`` runs into the new folder ``out``.

    The folder loads with ``transformers`` (``Florence2ForConditionalGeneration`` and
    ``AutoProcessor``), ``gi_sdk.Session(out, backend="torch")`` and ``gi-sdk train`` /
    ``export``. Its ``recovered_from_bundle.json`` names the bundle, each part's precision and
    the comparison of the two on ``verify_frames`` = (synthetic, real) frames x four tasks.

    Raises ExportError (nothing left at ``out``) when the bundle is not Florence-2, when a
    parameter cannot be found in it (a bundle exported with other torch / transformers
    versions may name its weights otherwise), or when an all-fp32 bundle and the recovered
    model disagree.
    """
    torch = require("torch", "export")
    transformers = require("transformers", "export")
    onnx = require("onnx", "export")
    from gi_sdk.session import Session
    from gi_sdk.train.tiny import write_processor_files, write_tokenizer_config

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder; choose a new checkpoint folder")
    b = Bundle.open(bundle)   # hashes checked before anything is read
    m = b.manifest
    if m.get("family") != "florence2":
        raise ExportError(f"{b.path} holds a {m.get('family')!r} model; only Florence-2 bundles can be recovered")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        work = Path(work)
        _say(log, f"tracing the {b.path.name} model shape to find where each weight went")
        probe = _fingerprint_model(transformers, torch, m["model"], seed=0)
        traced = export_parts(probe, work / "trace", tuple(m["preprocessing"]["image_size"]), work / "graphs")
        places = _where_each_parameter_went(onnx, probe, traced)

        model = probe   # its values are all replaced below; a parameter left over is an error
        state = model.state_dict()
        filled = set()
        for part in PARTS:
            graph = _Part(onnx, b.part_path(part))
            for name, (targets, reader) in places[part].items():
                value = graph.weight(name, reader)
                if value is None:
                    raise ExportError(f"{b.path}: part {part!r} has no weight {name!r} where this torch / "
                                      f"transformers export puts one (bundle made with {m.get('provenance', {}).get('exported_with')}); "
                                      "recover it with the versions that exported it")
                for key, transposed in targets:
                    state[key].copy_(torch.from_numpy(np.array(value.T if transposed else value, np.float32)))
                    filled.add(key)
        missing = sorted(set(state) - filled)
        if missing:
            raise ExportError(f"{b.path}: no part of the bundle holds {', '.join(missing[:5])}"
                              f"{' ...' if len(missing) > 5 else ''}; cannot recover the checkpoint")
        model.load_state_dict(state)

        staging = work / "checkpoint"
        gen = m.get("generation") or {}
        model.generation_config = transformers.GenerationConfig(
            decoder_start_token_id=gen.get("decoder_start_token_id"), eos_token_id=gen.get("eos_token_id"),
            forced_eos_token_id=gen.get("forced_eos_token_id"), bos_token_id=m["tokenizer"].get("bos_token_id"),
            pad_token_id=m["tokenizer"].get("pad_token_id"), num_beams=1, do_sample=False,
            max_new_tokens=gen.get("max_new_tokens"), no_repeat_ngram_size=gen.get("no_repeat_ngram_size", 0))
        model.save_pretrained(staging)
        _copy_tokenizer(b, staging, m, write_tokenizer_config)
        pre = m["preprocessing"]
        write_processor_files(staging, tuple(pre["image_size"]), m["tokenizer"]["image_seq_length"],
                              pre["image_mean"], pre["image_std"], m.get("banned_grounding_phrases") or ())
        if (b.path / "training_record.json").is_file():   # labels and how it was trained
            shutil.copyfile(b.path / "training_record.json", staging / "training_record.json")

        _say(log, "comparing the recovered checkpoint with the bundle")
        precisions = {part: entry.get("precision") for part, entry in m["parts"].items()}
        frames, frames_info = verification_frames(*verify_frames)
        results = compare_sessions(Session(staging, backend="torch"), Session(b.path, backend="onnxruntime"),
                                   frames, max_new_tokens=32)
        check = summarize(results, frames_info, 32)
        check["candidate"] = f"onnxruntime on the bundle ({', '.join(f'{k} {v}' for k, v in precisions.items())})"
        all_fp32 = all(p == "fp32" for p in precisions.values())
        if all_fp32 and not check["passed"]:
            raise ExportError(f"the checkpoint recovered from {b.path} does not answer as the bundle does: "
                              f"{'; '.join(check['problems'][:3])}")
        record = {"bundle": str(b.path), "manifest_sha256": _manifest_digest(b.path),
                  "part_precisions": precisions,
                  "weights": "exact" if all_fp32 else "quantized parts dequantized (scale x (q - zero point))",
                  "comparison_with_bundle": check}
        (staging / RECORD).write_text(json.dumps(record, indent=2))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    _say(log, f"wrote checkpoint {out}: {check['identical_tokens']} of {check['cases']} cases answer with the "
              f"bundle's tokens ({'exact weights' if all_fp32 else 'quantized parts dequantized'})")
    return out


def _copy_tokenizer(b: Bundle, staging: Path, m: dict, write_tokenizer_config) -> None:
    from tokenizers import Tokenizer

    shutil.copyfile(b.path / m["tokenizer"]["file"], staging / "tokenizer.json")
    tok = Tokenizer.from_file(str(staging / "tokenizer.json"))
    image = m["tokenizer"]["image_token"]
    extra = [t.content for _, t in sorted(tok.get_added_tokens_decoder().items())
             if t.special and t.content not in ("<s>", "<pad>", "</s>", "<unk>", "<mask>", image)]
    write_tokenizer_config(staging, extra)


def _manifest_digest(path: Path) -> str:
    from gi_sdk.bundle import sha256_file

    return sha256_file(path / "manifest.json")
