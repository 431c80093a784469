"""``evaluate(model, specs)``: run a model over examples and score it; the ``gi-sdk eval`` report.

    gi-sdk eval MODEL --data synthetic --seed 1000 --n 200 --out report.json
    gi-sdk eval MODEL --data data.yaml --out report.json --limit 500
    gi-sdk eval --predictions answers.jsonl --out report.json

Examples come from ``gi_sdk.train.sources.load_sources`` (the very ``SourceSpec`` kinds of
training), each example's task runs on its image through one ``gi_sdk.Session``, and
``gi_sdk.train.scoring`` scores the answers against the targets. Examples of one image
run back to back, so the Session computes its vision features once for all its tasks.

The report (JSON): ``model`` (path, sha256 of its weights), ``data`` (the specs and the
data report: what each source yielded and skipped), ``tasks`` (a metric block per task),
``overall`` (totals and the headline figures), ``seconds`` and the settings used.
Synthetic scenes must come from seeds the model never trained on: when the model's
``training_record.json`` lists a synthetic seed the evaluation also uses, ``evaluate``
refuses (scores on training scenes say nothing about new ones).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gi_sdk import tasks as T
from gi_sdk.errors import GiSdkError, SourceError
from gi_sdk.result import Result

from . import ablations as A
from .config import SourceSpec
from .json_files import write_json, write_jsonl
from .scoring import Scored, score_all, truth_of
from .sources import load_sources

#: Defaults of the ``--data synthetic`` shorthand: seeds far from the ones recipes train on.
SYNTHETIC_EVAL_SEED = 1000
SYNTHETIC_EVAL_IMAGES = 200
#: Synthetic params copied from the model's training record, so scenes look like training's.
_SCENE_PARAMS = ("width", "height", "tasks", "qa_per_image")


# ------------------------------------------------------------------------------ data specs

def training_record(model_path) -> dict:
    """The model's ``training_record.json`` ({} when it has none)."""
    path = Path(model_path) / "training_record.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _trained_synthetic(model_path) -> list:
    """The synthetic sources the model was trained on, every stage's (``stages``) included."""
    config = training_record(model_path).get("config", {})
    sources = list(config.get("sources", []))
    for stage in config.get("stages") or ():
        sources += stage.get("sources", []) if isinstance(stage, dict) else []
    return [s for s in sources if isinstance(s, dict) and s.get("kind") == "synthetic"]


def synthetic_spec(model_path=None, seed: int = SYNTHETIC_EVAL_SEED,
                   n_images: int = SYNTHETIC_EVAL_IMAGES) -> SourceSpec:
    """A synthetic source of ``n_images`` scenes from ``seed``, drawn like the model's training
    scenes (width, height, tasks, questions per image from its training record, if any)."""
    params = {"seed": int(seed), "n_images": int(n_images)}
    trained = _trained_synthetic(model_path) if model_path else []
    if trained:
        params.update({k: v for k, v in trained[0].get("params", {}).items() if k in _SCENE_PARAMS})
    return SourceSpec("synthetic", params=params, name=f"synthetic-eval-seed{seed}")


def read_data_file(path) -> tuple[list, float]:
    """(SourceSpecs, max_skip_share) of a YAML / JSON file with a ``sources:`` list (a training
    recipe works too: its other keys are ignored)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such data file; give a YAML/JSON file with a 'sources:' list, "
                          "or --data synthetic")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise SourceError(f"{path}: expected a mapping with a non-empty 'sources:' list of "
                          "{kind, path, params} entries (as in a training recipe)")
    try:
        specs = [s if isinstance(s, SourceSpec) else SourceSpec(**s) for s in data["sources"]]
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{path}: bad source entry ({exc}); each is {{kind, path, params, name}}") from exc
    return specs, float(data.get("max_skip_share", 0.05))


def check_unseen(model_path, specs) -> None:
    """Refuse synthetic specs whose seed the model trained on (SourceError)."""
    seen = {int(s.get("params", {}).get("seed", 0)) for s in _trained_synthetic(model_path)}
    for spec in specs:
        seed = int(spec.params.get("seed", 0))
        if spec.kind == "synthetic" and seed in seen:
            raise SourceError(
                f"synthetic seed {seed} was used to train {model_path} (training_record.json); scores on "
                f"training scenes say nothing about new ones. Evaluate with another seed (e.g. --seed "
                f"{max(seen) + SYNTHETIC_EVAL_SEED})")


# ------------------------------------------------------------------------------------- model

def weights_sha256(model_path) -> str | None:
    """sha256 over the folder's weight files (``*.safetensors``, ``*.onnx``), in name order;
    None when it has none."""
    files = sorted(f for pattern in ("*.safetensors", "*.onnx") for f in Path(model_path).glob(pattern))
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def task_input(task: str, prompt: str) -> str | None:
    """The input text ``build_prompt(task, text)`` made ``prompt`` from (None for tasks without).

    >>> task_input("segment", "Locate polyp in the image with mask")
    'polyp'
    """
    spec = T.get_task(task)
    if not spec.needs_input:
        return None
    head, _, tail = spec.template.partition("{input}")
    if not (prompt.startswith(head) and prompt.endswith(tail) and len(prompt) > len(head) + len(tail)):
        raise ValueError(f"prompt {prompt!r} is not one of task {task!r} ({spec.template!r})")
    return prompt[len(head): len(prompt) - len(tail)]


def _read_image(image):
    if isinstance(image, np.ndarray):
        return image
    import cv2

    frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if frame is None:
        raise SourceError(f"{image}: cannot read the image")
    return frame


def _by_image(examples: list) -> list:
    """Example indices, the examples of one image next to each other (first-seen order)."""
    groups: dict = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.image_id, []).append(i)
    return [i for group in groups.values() for i in group]


def _predict(session, frame, example, text, max_new_tokens):
    try:
        return session.run(frame, example.task, text, max_new_tokens=max_new_tokens), None
    except GiSdkError as exc:  # one bad example fails that example, scored as an empty answer
        return Result.empty(example.task, (frame.shape[1], frame.shape[0])), f"{type(exc).__name__}: {exc}"


def sample_record(example, text, scored: Scored, seconds: float) -> dict:
    """One example's line in the samples file (and what the Medico writers read)."""
    p = scored.prediction
    return {"image_id": example.image_id, "source": example.source, "task": example.task, "input": text,
            "target": example.target, "raw": p.raw_text, "answer": p.answer, "explanation": p.explanation,
            "boxes": p.boxes.round(2).tolist(), "labels": p.labels, "scores": p.scores.round(4).tolist(),
            "count": p.count,
            "confidence": round(float(p.confidence), 4), "error": scored.error, "seconds": round(seconds, 4)}


def run_examples(session, examples: list, max_new_tokens: int | None = None, progress: bool = False) -> tuple:
    """(Scored list, sample records), both in the examples' order."""
    from tqdm.auto import tqdm

    scored, records = [None] * len(examples), [None] * len(examples)
    frame, frame_of, frame_error = None, object(), None
    for i in tqdm(_by_image(examples), desc="eval", unit="example", disable=not progress):
        ex = examples[i]
        start = time.perf_counter()
        if ex.image_id != frame_of:  # a new image: read it once for all its examples
            frame_of = ex.image_id
            try:
                frame, frame_error = _read_image(ex.image), None
            except SourceError as exc:
                frame, frame_error = None, str(exc)
        text = task_input(ex.task, ex.prompt)
        if frame is None:
            size, prediction, error = (0, 0), Result.empty(ex.task), frame_error
        else:
            size = (frame.shape[1], frame.shape[0])
            prediction, error = _predict(session, frame, ex, text, max_new_tokens)
        scored[i] = Scored(ex.task, text, prediction, truth_of(ex.task, ex.target, size), error)
        records[i] = sample_record(ex, text, scored[i], time.perf_counter() - start)
    return scored, records


def evaluate(model_path, specs, *, limit: int | None = None, max_new_tokens: int | None = None,
             backend: str = "auto", device: str = "cpu", max_skip_share: float = 0.05,
             out=None, samples_out=None, medico_dir=None, progress: bool = False,
             role_prefix: str | None = None, swapped_images: bool = False, nonsense: bool = False,
             constrained: bool = True) -> dict:
    """Evaluate the model at ``model_path`` on the examples of ``specs`` (SourceSpec list).

    limit: score only the first N examples. max_new_tokens: cap every task's token budget
    (default: each task's own). out: write the report JSON there. samples_out: write one
    JSON line per example (input, target, raw output, answer, boxes, error). medico_dir:
    also write the MediaEval Medico 2025 Task 1 / Task 2 files there (``gi_sdk.train.medico``).
    The seed papers' extras (``gi_sdk.train.ablations``): role_prefix asks every input behind
    an expert role; swapped_images adds an ``ablations.swapped_images`` block (the same examples
    answered on other images); nonsense adds ``ablations.nonsense`` (questions about things no
    frame shows). Every block carries its zero-case and parse-failure counts. constrained: hold
    outputs to the task grammars (``gi_sdk.grammar``, the Session default); False scores what
    the model writes on its own (plain greedy), where parse failures can occur.
    Returns the report dict.
    """
    from gi_sdk.session import Session

    start = time.perf_counter()
    specs = [s if isinstance(s, SourceSpec) else SourceSpec(**s) for s in specs]
    check_unseen(model_path, specs)
    # a bad model fails here, before the data is read
    session = Session(model_path, backend=backend, device=device, constrained=constrained)
    examples, data_report = load_sources(specs, max_skip_share)
    examples = examples[:limit] if limit else examples
    if role_prefix:
        examples = A.with_role(examples, role_prefix)
    scored, records = run_examples(session, examples, max_new_tokens, progress)
    report = {
        "model": {"path": str(model_path), "weights_sha256": weights_sha256(model_path),
                  "backend": session.backend_name, "device": device,
                  # the torch backend's precision and decode path (fp16 by default on CUDA)
                  **{k: getattr(session.backend, a) for k, a in (("precision", "precision"), ("decode", "decode_mode"))
                     if hasattr(session.backend, a)}},
        "data": {"sources": [asdict(s) for s in specs], "report": data_report.to_json(),
                 "examples_scored": len(examples), "limit": limit},
        "settings": {"max_new_tokens": max_new_tokens, "role_prefix": role_prefix,
                     "decoding": "greedy, task grammars" if constrained else "greedy, unconstrained"},
        **score_all(scored),
    }
    ablations = {}
    if swapped_images:
        swapped, _ = run_examples(session, A.swap_images(examples, _read_image), max_new_tokens, progress)
        ablations["swapped_images"] = score_all(swapped)
    if nonsense:
        ablations["nonsense"] = A.nonsense_check(session, examples, _read_image, max_new_tokens=max_new_tokens)
    if ablations:
        report["ablations"] = ablations
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["overall"]["ms_per_example"] = round(1e3 * sum(r["seconds"] for r in records) / max(len(records), 1), 1)
    if samples_out:
        write_jsonl(samples_out, records)
    if medico_dir:
        from .medico import write_from_samples

        report["medico"] = write_from_samples(medico_dir, records, report)
    if out:
        write_json(out, report)
    return report
