"""Native pre/post-processing against its numpy twins and transformers' Florence-2 processor.

    python benchmarks/native.py [--quick] [--json out/native.json] [--baseline OTHER_NATIVE.so]

Preprocess: 1080p and 4K BGR frames -> 768x768 float32 CHW, by ``gi_sdk.preprocess`` (native,
one thread and all cores), its numpy twin, and the HF ``Florence2Processor`` image processor
(Pillow resize + numpy normalize; it uses one core). Decode: a 10-box ``<OD>`` output and a
3-polygon ``<REFERRING_EXPRESSION_SEGMENTATION>`` output, from token ids, by ``gi_sdk.decode_ids``
(the public call: ids -> ``Parsed`` with label text), the native decoder alone (raw arrays, no
text), its Python twin, the text parser ``parse_instances``, and HF ``post_process_generation``
- given the decoded text, and from the ids as a user runs it (``batch_decode`` first), which is
the like-for-like comparison with ``decode_ids``. ``--baseline`` times another build of
``gi_sdk._native`` (say the previous commit's .so, built aside) in the same run, its calls
alternating with the installed build's, for the one-thread preprocess rows.
Each figure is the median of N runs (the minimum is in the JSON). Prints a table with the
ratio of each row to the group's first (``gi_sdk.preprocess`` on one thread; ``decode_ids``),
then the issue's targets against this run's medians, and writes JSON. Pin it to one core
(``taskset -c 0``) for the one-core figures. ``main(argv)`` is what ``benchmarks/latency.py``
calls.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POLYPGEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "polypgen" / "images"


def timed(fn, repeat: int, warmup: int = 2) -> dict:
    """Median and minimum wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(runs), "min_ms": min(runs), "runs": repeat}


def timed_alternating(fns: dict, repeat: int, warmup: int = 2) -> dict:
    """``timed`` for several functions at once, called in turn: each sees the same machine
    state (a shared machine drifts between consecutive cases)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs = {label: [] for label in fns}
    for _ in range(repeat):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[label].append((time.perf_counter() - start) * 1e3)
    return {label: {"median_ms": statistics.median(r), "min_ms": min(r), "runs": repeat} for label, r in runs.items()}


def load_baseline(path: Path):
    """Another build of the extension (a .so of gi_sdk._native), imported as ``_native`` beside
    the installed one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_native", path)
    if spec is None or spec.loader is None:
        sys.exit(f"--baseline {path}: not an extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frames() -> dict:
    """A real 1080p PolypGen frame (synthetic stand-in when absent) and its 4K upscale."""
    import cv2

    path = POLYPGEN / "20_endocv2021_positive_782.jpg"
    if path.is_file():
        hd = cv2.resize(cv2.imread(str(path)), (1920, 1080))
    else:
        rng = np.random.default_rng(0)
        hd = cv2.resize(rng.integers(0, 256, (270, 480, 3), dtype=np.uint8), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    return {"1080p": hd, "4K": cv2.resize(hd, (3840, 2160), interpolation=cv2.INTER_CUBIC)}


def hf_processor(workdir: Path):
    """transformers' Florence2Processor of a tiny checkpoint (same image and text config as
    Florence-2), or None when torch / transformers are not installed."""
    try:
        from transformers import AutoProcessor

        from gi_sdk.train.tiny import build_tiny_florence2
    except ImportError:
        return None
    return AutoProcessor.from_pretrained(build_tiny_florence2(workdir / "tiny"))


def bench_preprocess(repeat: int, processor, baseline=None) -> list[dict]:
    import cv2

    import gi_sdk
    from gi_sdk.preprocessing import FLORENCE_MEAN, FLORENCE_STD, normalization, preprocess_numpy

    rows, cores = [], os.cpu_count() or 1
    scale, bias = normalization(FLORENCE_MEAN, FLORENCE_STD)
    for name, frame in frames().items():
        out = np.empty((3, 768, 768), np.float32)
        h, w = frame.shape[:2]
        group = f"preprocess {name} -> 768x768 f32"
        one = {f"{NATIVE_1} ({gi_sdk.native.native().resize_isa()})": lambda: gi_sdk.preprocess(frame, out=out, threads=1)}
        if baseline is not None:  # the same call gi_sdk.preprocess makes, on the other build
            one[f"baseline build, 1 thread ({baseline.__file__})"] = lambda: baseline.resize_normalize(
                frame, out, (0, 0, w, h), (2, 1, 0), scale.tolist(), bias.tolist(), 1)
        rows += [{"group": group, "case": label, "threads": 1, **t} for label, t in timed_alternating(one, repeat).items()]
        cases = [(f"gi_sdk native, {cores} threads", lambda: gi_sdk.preprocess(frame, out=out, threads=cores), cores),
                 ("numpy twin", lambda: preprocess_numpy(frame, (2, 1, 0), (0, 0, w, h), (768, 768), scale, bias, out), 1)]
        if processor is not None:
            image = processor.image_processor
            cases.append((HF_IMAGE,
                          lambda: image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), return_tensors="np"), 1))
        for label, fn, threads in cases:
            slow = label.startswith(("numpy", "HF"))
            rows.append({"group": group, "case": label, "threads": threads,
                         **timed(fn, max(3, repeat // 4) if slow else repeat)})
    return rows


DECODE_IDS = "gi_sdk.decode_ids (ids -> Parsed, labels decoded)"
HF_FROM_TEXT = "HF post_process_generation (text given)"
HF_FROM_IDS = "HF batch_decode + post_process_generation"
NATIVE_1 = "gi_sdk native, 1 thread"
HF_IMAGE = "HF Florence2Processor image path"


def decode_inputs(tokenizer):
    from gi_sdk.codec import encode_boxes, encode_polygons

    rng = np.random.default_rng(0)
    size = (1920, 1080)
    xy = rng.uniform(0, 1800, (10, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 120, (10, 2))], axis=1).astype(np.float32)
    od = "</s><s>" + encode_boxes(boxes, size, ["polyp"] * 10) + "</s>"
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    polygons = [np.stack([c[0] + r * np.cos(angles), c[1] + r * np.sin(angles)], 1)
                for c, r in zip(rng.uniform(300, 1500, (3, 2)), rng.uniform(50, 200, 3))]
    seg = "</s><s>" + encode_polygons(polygons, size) + "</s>"
    ids = lambda text: np.array(tokenizer.encode(text, add_special_tokens=False).ids, np.int64)  # noqa: E731
    return size, [("OD 10 boxes", "<OD>", "boxes", od, ids(od)),
                  ("segmentation 3 polygons", "<REFERRING_EXPRESSION_SEGMENTATION>", "polygons", seg, ids(seg))]


def bench_decode(repeat: int, processor, workdir: Path) -> list[dict]:
    from tokenizers import Tokenizer

    import gi_sdk.native
    from gi_sdk.codec import parse_instances
    from gi_sdk.token_decoder import GRAMMAR_CODES, TokenVocab, decode_ids, decode_tokens_python
    from gi_sdk.train.tiny import build_tokenizer

    tokenizer = Tokenizer.from_file(str(build_tokenizer(workdir / "tok") / "tokenizer.json"))
    vocab = TokenVocab.from_tokenizer(tokenizer)
    size, outputs = decode_inputs(tokenizer)
    mod = gi_sdk.native.native()
    rows = []
    for name, task, kind, text, ids in outputs:
        code = GRAMMAR_CODES["polygons" if kind == "polygons" else "description_with_bboxes"]
        group = f"decode {name} ({len(ids)} ids)"
        cases = [(DECODE_IDS, lambda: decode_ids(ids, kind, size, vocab)),
                 ("gi_sdk native decoder alone (raw arrays)",
                  lambda: mod.decode_tokens(ids, vocab.classes, vocab.loc_begin, code, *map(float, size))),
                 ("Python twin decoder (raw arrays)",
                  lambda: decode_tokens_python(ids, vocab.classes, vocab.loc_begin, code, *map(float, size))),
                 ("gi_sdk parse_instances (from text)", lambda: parse_instances(text, kind, size))]
        if processor is not None:
            cases += [(HF_FROM_TEXT, lambda: processor.post_process_generation(text, task=task, image_size=size)),
                      (HF_FROM_IDS,
                       lambda: processor.post_process_generation(
                           processor.batch_decode([ids], skip_special_tokens=False)[0], task=task, image_size=size))]
        for label, fn in cases:
            rows.append({"group": group, "case": label, "threads": 1, **timed(fn, repeat * 10, warmup=20)})
    return rows


def machine() -> dict:
    import cv2

    import gi_sdk.native

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mod = gi_sdk.native.native()
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": mod.resize_isa() if mod else None,
            "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
            "platform": platform.platform(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def table(rows: list[dict]) -> str:
    """Rows grouped; ratio = this row's median / the group's first row's (gi_sdk.preprocess on
    one thread, gi_sdk.decode_ids)."""
    lines, base = [], {}
    width = max(len(r["case"]) for r in rows) + 2
    for r in rows:
        if r["group"] not in base:
            base[r["group"]] = r["median_ms"]
            lines.append(f"\n{r['group']}\n  {'case':<{width}}{'median ms':>12}{'min ms':>10}{'x first':>10}")
        ratio = r["median_ms"] / base[r["group"]]
        lines.append(f"  {r['case']:<{width}}{r['median_ms']:>12.4f}{r['min_ms']:>10.4f}{ratio:>10.1f}")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets against this run's medians: preprocess 1080p on one thread <= 3 ms
    and >= 20x faster than the HF image processor; decode_ids >= 50x faster than HF
    post-processing (text given, and from the ids as a user runs it: batch_decode first)."""
    def median(group, case):
        found = [r["median_ms"] for r in rows if r["group"] == group and r["case"].startswith(case)]
        return found[0] if found else None

    def met(ok):
        return "met" if ok else "NOT met"

    lines = []
    group = next((r["group"] for r in rows if r["group"].startswith("preprocess 1080p")), None)
    native, hf = median(group, NATIVE_1), median(group, HF_IMAGE)
    if native is not None:
        line = f"preprocess 1080p, 1 thread: {native:.2f} ms (target <= 3 ms: {met(native <= 3)})"
        if hf is not None:
            line += f"; HF image processor / gi_sdk = {hf / native:.1f}x (target >= 20x: {met(hf / native >= 20)})"
        lines.append(line)
    for group in dict.fromkeys(r["group"] for r in rows if r["group"].startswith("decode")):
        ours, text, ids = median(group, DECODE_IDS), median(group, HF_FROM_TEXT), median(group, HF_FROM_IDS)
        if ours is None or text is None or ids is None:
            continue
        lines.append(f"{group}: decode_ids {ours * 1e3:.1f} us; HF / decode_ids = {text / ours:.0f}x with the text "
                     f"given, {ids / ours:.0f}x from the ids (target >= 50x: {met(min(text, ids) / ours >= 50)})")
    return lines


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test, not figures)")
    parser.add_argument("--repeat", type=int, default=30, help="runs per preprocess case (decode: 10x)")
    parser.add_argument("--baseline", type=Path, metavar="SO",
                        help="another build of gi_sdk._native to time beside the installed one (one-thread preprocess)")
    args = parser.parse_args(argv)

    import gi_sdk.native

    if gi_sdk.native.native() is None:
        sys.exit("gi_sdk._native is not built: run `pip install -e .` first")
    repeat = 3 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        processor = hf_processor(Path(tmp))
        baseline = load_baseline(args.baseline) if args.baseline else None
        rows = bench_preprocess(repeat, processor, baseline) + bench_decode(repeat, processor, Path(tmp))
    result = {"machine": machine(), "quick": args.quick, "results": rows, "targets": targets(rows)}
    print(table(rows))
    print("\ntargets (medians of this run):\n  " + "\n  ".join(result["targets"]))
    print(f"\nmachine: {result['machine']['cpu']}, {result['machine']['cores']} cores, isa {result['machine']['isa']}, "
          f"load average {result['machine']['load_average']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
