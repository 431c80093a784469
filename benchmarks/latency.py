"""Latency of a whole `ask` and of each stage: gi_sdk's backends against the code a user would
otherwise write (transformers ``generate`` + the HF processor and post-processor).

    python benchmarks/latency.py                      # built-in model + Florence-2-base shape
    python benchmarks/latency.py --quick              # < 2 min on a 2-core CPU (CI smoke test)
    python benchmarks/latency.py --models path/to/bundle_or_checkpoint --device cuda
    python benchmarks/latency.py --json out/latency.json --csv out/latency.csv --png out/latency.png

Models: ``builtin`` (what ``Session()`` loads), ``base`` (a Florence-2-base-shaped checkpoint,
0.23B parameters, random weights, made on the fly and cached in .cache/models), ``tiny`` (the
test model), or any bundle / checkpoint folder. Runtimes, side by side in one run:
``transformers`` (the baseline) and every gi_sdk backend that can load the model, each
precision a bundle carries; ``torch:MODE`` runs the torch backend with ``decode=MODE``
(``eager``, ``static``, ``compiled``, ``cuda-graphs``; plain ``torch``: its default for the
device, fp16 + CUDA graphs on a GPU). Each (model, runtime, precision) runs in its own child processes, one
after the other, in interleaved rounds (``--rounds``, default 3: the runtimes take turns, so a
change in the host's load falls on all of them; the samples are pooled, and ``speedup_by_round``
in the JSON gives each round's own ratio: their spread shows how much the load moved the pooled
one, and the report flags a pooled figure the load moved, ``load_moved_speedup`` in the JSON),
so its peak memory is its own; the frame (``--frame``, default 1920x1080:
endoscope video is 1080p), question and token budget are the same for all, and the JSON says whether each runtime produced the baseline's tokens.

Stages (milliseconds): preprocess, vision, prompt encode, first token (frame in -> first
token out), per token (each later token), decode (ids -> Result), whole ask; ``3 tasks`` (detect + segment + ask on one frame with ``Session.run_many``: the
vision tower once, the three prompts decoded as one batch) and ``3 tasks one by one`` (three
``Session.run`` calls on that frame, the vision tower once) next to one task; and, where ``Session.stream`` exists, the pass-through and marker delays of a stream of
synthetic frames (>= 1000 in a full run). For each: n, p50 / p90 / p99 / p99.9 / max, stddev;
fps; peak memory (RSS; CUDA allocator peak on a GPU). On CUDA every timed stage is
synchronized. It also runs ``benchmarks/native.py`` (pre/post-processing alone).
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / ".cache" / "models"
QUESTION = "How many polyps are there?"
TASK = "ask"
STAGES = ("preprocess", "vision", "encode", "first_token", "per_token", "decode", "ask")


# ---------------------------------------------------------------------------------- statistics

def summarize(samples_ms) -> dict:
    """n, percentiles, max and stddev of a list of milliseconds."""
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99, p999 = np.percentile(a, [50, 90, 99, 99.9])
    return {"n": int(a.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "p999_ms": float(p999), "max_ms": float(a.max()), "std_ms": float(a.std())}


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resident_memory_mb() -> float:
    """Resident memory of this process now, in MiB (Linux /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_memory_mb()


# ---------------------------------------------------------------------------------- inputs

#: Size of the asked frame: endoscope video is 1080p (FORMATS.md "real-time requirements").
FRAME_SIZE = (1920, 1080)


def test_frame(size=FRAME_SIZE) -> np.ndarray:
    """A synthetic endoscope frame (BGR) of ``size`` (width, height) with polyps in view."""
    from gi_sdk.synthetic import SyntheticEndoscope

    scope = SyntheticEndoscope(seed=11, width=size[0], height=size[1])
    for i in range(0, 3000, 37):
        frame, truth = scope.frame(i)
        if "polyp" in truth.labels:
            return frame
    return frame


def new_frame(frame: np.ndarray, mark: int) -> np.ndarray:
    """A copy of ``frame`` whose model input differs from that of the marks next to ``mark``: its
    top-left 8x8 pixels get a grey level of their own. A Session reuses the vision features while
    the model input is unchanged (a one-pixel change of a 1080p frame does not survive the
    resize), so every timed call brings a new one."""
    out = frame.copy()
    out[:8, :8] = (mark * 37) % 256
    return out


def resolve_model(name: str) -> Path:
    """A model name of the command line -> a folder (building the random ones on first use)."""
    if name == "builtin":
        from gi_sdk.bundle import builtin_bundle

        return Path(builtin_bundle())
    if name in ("base", "tiny"):
        from gi_sdk.train.tiny import build_tiny_florence2

        path = CACHE / f"bench-{name}"
        if not (path / "config.json").is_file():
            build_tiny_florence2(path, shape=name)
        return path
    path = Path(name)
    if not path.is_dir():
        raise SystemExit(f"model {name!r}: not 'builtin', 'base', 'tiny' or a folder")
    return path


def source_checkpoint(model: Path) -> Path | None:
    """The merged checkpoint transformers can load for ``model`` (itself, or a bundle's source
    when that is still on disk); None when there is none."""
    if (model / "config.json").is_file() and (model / "model.safetensors").is_file():
        return model
    manifest = model / "manifest.json"
    if manifest.is_file():
        prov = json.loads(manifest.read_text()).get("provenance", {})
        for key in ("source_checkpoint", "checkpoint", "source"):
            value = prov.get(key)
            if isinstance(value, dict):
                value = value.get("path")
            if isinstance(value, str) and (Path(value) / "model.safetensors").is_file():
                return Path(value)
    return None


def checkpoint_of(model: Path, name: str) -> Path | None:
    """The checkpoint transformers and the torch backend run for ``model``: its source when
    that is on disk, else the one ``gi-sdk recover`` writes from the bundle's own weights
    (once, cached under .cache/models; a quantized part comes back dequantized, which is what
    its int8 kernels multiply with, so the baseline runs the bundle's model)."""
    found = source_checkpoint(model)
    if found is not None or not (model / "manifest.json").is_file():
        return found
    out = CACHE / f"bench-{name}-checkpoint"
    if not (out / "model.safetensors").is_file() or not _recovered_from(out, model):
        print(f"  {name}: its source checkpoint is not on disk; recovering it from the bundle into {out} (once) ...",
              file=sys.stderr, flush=True)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        in_fresh_process(_recover, model, out)
    return out


def _recovered_from(checkpoint: Path, bundle: Path) -> bool:
    """Whether ``checkpoint`` was recovered from this very bundle (its manifest's sha256, which
    covers every file's): a cached checkpoint of a model since replaced is recovered again."""
    from gi_sdk.bundle import sha256_file

    try:
        record = json.loads((checkpoint / "recovered_from_bundle.json").read_text())
    except (OSError, ValueError):
        return False
    return record.get("manifest_sha256") == sha256_file(bundle / "manifest.json")


def in_fresh_process(fn, *args) -> None:
    """Run ``fn(*args)`` in a new interpreter: work with torch here would otherwise raise this
    process's peak memory, which the timed children inherit (Linux keeps ru_maxrss across exec)."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=fn, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{fn.__name__}{args} failed (exit code {child.exitcode})")


def _recover(model: Path, out: Path) -> None:
    from gi_sdk.export.recover import checkpoint_from_bundle

    checkpoint_from_bundle(model, out, log=None)


def _export_fp32(model: Path, out: Path) -> None:
    from gi_sdk.export import export_bundle
    from gi_sdk.export.writer import ExportChecks

    checks = ExportChecks(verify_synthetic=1, verify_real=1, report_synthetic=0, report_real=0, latency_repeats=1)
    export_bundle(model, out, precision="fp32", checks=checks, log=None)


def model_for(runtime: str, model: Path, name: str) -> Path | None:
    """The folder ``runtime`` loads for ``model``: the model itself when it is the kind the
    backend runs; else its checkpoint (for torch) or an fp32 bundle exported from it once and
    cached under .cache/models (for onnxruntime); None when neither can be had."""
    from gi_sdk.backends import BACKENDS

    is_bundle = (model / "manifest.json").is_file()
    wants = BACKENDS[runtime].runs
    if (wants == "bundle") == is_bundle:
        return model
    if wants == "checkpoint":
        return checkpoint_of(model, name)
    out = CACHE / f"bench-{name}-bundle-fp32"
    if not (out / "manifest.json").is_file() or not _exported_from(out, model):
        print(f"  exporting {name} to {out} (once) ...", file=sys.stderr, flush=True)
        in_fresh_process(_export_fp32, model, out)
    return out


def _exported_from(bundle: Path, checkpoint: Path) -> bool:
    """Whether the cached ``bundle`` was exported from these very weights (the manifest's
    provenance sha256 of the checkpoint's model.safetensors): a checkpoint trained again under
    the same name is exported again instead of timed as the old weights."""
    from gi_sdk.bundle import sha256_file

    try:
        files = json.loads((bundle / "manifest.json").read_text())["provenance"]["source_checkpoint"]["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    weights = checkpoint / "model.safetensors"
    return weights.is_file() and files.get("model.safetensors") == sha256_file(weights)


def precisions(model: Path, device: str = "cpu") -> list[str]:
    """The precision label of ``model``: a bundle's part precisions ("fp32", or e.g.
    "int8+fp32" when parts differ), else what the torch backend runs a checkpoint in (fp16 on
    a GPU, fp32 on a CPU)."""
    manifest = model / "manifest.json"
    if manifest.is_file():
        parts = json.loads(manifest.read_text()).get("parts", {})
        found = sorted({str(p.get("precision")) for p in parts.values()}) or ["fp32"]
        return ["+".join(found)]
    return ["fp16" if device.startswith("cuda") else "fp32"]


# ---------------------------------------------------------------------------------- workers

class Clock:
    """perf_counter milliseconds, synchronizing CUDA first when it is in use."""

    def __init__(self, device: str):
        self.sync = None
        if device.startswith("cuda"):
            import torch

            self.sync = torch.cuda.synchronize

    def now(self) -> float:
        if self.sync:
            self.sync()
        return time.perf_counter() * 1e3


def run_transformers(spec: dict) -> dict:
    """The baseline: HF processor -> generate -> batch_decode -> post_process_generation."""
    import cv2
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from gi_sdk.tasks import build_prompt, get_task

    device, clock = spec["device"], Clock(spec["device"])
    processor = AutoProcessor.from_pretrained(spec["checkpoint"])
    model = Florence2ForConditionalGeneration.from_pretrained(spec["checkpoint"]).to(device).eval()
    frame = test_frame(tuple(spec["frame_size"]))
    prompt, task_token = build_prompt(TASK, QUESTION), get_task(TASK).token
    budget = spec["max_new_tokens"]

    def encode(shown):
        image = Image.fromarray(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB))
        return processor(text=prompt, images=image, return_tensors="pt").to(device)

    def generate(inputs, n):
        with torch.inference_mode():
            return model.generate(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                                  max_new_tokens=n, num_beams=1, do_sample=False)

    def decode(ids):
        text = processor.batch_decode(ids, skip_special_tokens=False)[0]
        return processor.post_process_generation(text, task=task_token, image_size=(frame.shape[1], frame.shape[0]))

    times = {s: [] for s in ("preprocess", "first_token", "one_token_generate", "generate", "decode", "ask")}
    tokens = None
    for i in range(spec["warmup"] + spec["runs"]):
        shown = new_frame(frame, 3 * i)   # the frames the gi_sdk runtimes are asked about
        t0 = clock.now()
        inputs = encode(shown)
        t1 = clock.now()
        ids = generate(inputs, budget)
        t2 = clock.now()
        decode(ids)
        t3 = clock.now()
        generate(inputs, 1)
        t4 = clock.now()
        if i >= spec["warmup"]:
            times["preprocess"].append(t1 - t0)
            times["generate"].append(t2 - t1)
            times["decode"].append(t3 - t2)
            times["ask"].append(t3 - t0)
            times["first_token"].append(t1 - t0 + t4 - t3)   # processor + a one-token generate
            times["one_token_generate"].append(t4 - t3)
        tokens = ids[0, 1:].tolist()  # drop the decoder start token
    n_tokens = max(len(tokens), 1)
    per_token = [max(g - f, 0.0) / max(n_tokens - 1, 1) for g, f in zip(times["generate"], times["one_token_generate"])]
    stages = {"preprocess": times["preprocess"], "first_token": times["first_token"], "per_token": per_token,
              "decode": times["decode"], "ask": times["ask"]}
    return {"stages": stages, "tokens": tokens}


def run_session(spec: dict) -> dict:
    """A gi_sdk backend: Session timings per stage, three tasks on one frame, streaming."""
    from gi_sdk import Session

    # no grammar: the same greedy tokens as the baseline, so the timings compare like with like
    backend, _, decode = spec["runtime"].partition(":")
    options = {"decode": decode} if decode else {}
    if backend == "torch":
        options["precision"] = spec["precision"]
    session = Session(spec["model"], backend=backend, device=spec["device"], constrained=False,
                      backend_options=options)
    frame = test_frame(tuple(spec["frame_size"]))
    budget = spec["max_new_tokens"]
    times = {s: [] for s in STAGES}
    three, one, one_by_one = [], [], []
    tokens = None
    clock = Clock(spec["device"])
    for i in range(spec["warmup"] + spec["runs"]):
        fresh = new_frame(frame, 3 * i)  # new pixels: the vision tower must run again
        r = session.run(fresh, TASK, QUESTION, max_new_tokens=budget)
        t = r.timings
        n = max(len(r.token_ids), 1)
        step = t.get("first_token", t["generate"] / n)   # the first decode step alone
        ttft = t["preprocess"] + t["vision"] + t["encode"] + step
        if i >= spec["warmup"]:
            for stage, value in (("preprocess", t["preprocess"]), ("vision", t["vision"]), ("encode", t["encode"]),
                                 ("first_token", ttft), ("per_token", (t["generate"] - step) / max(n - 1, 1)),
                                 ("decode", t["decode"]), ("ask", t["total"])):
                times[stage].append(value)
        tokens = [int(x) for x in r.token_ids]
        if i % 2 and i >= spec["warmup"]:
            continue   # warm-up runs every shape once (torch's compiled decode builds a graph per shape)
        other = new_frame(frame, 3 * i + 1)
        t0 = clock.now()
        session.run(other, "detect", max_new_tokens=budget)
        t1 = clock.now()
        session.run(other, "segment", "polyp", max_new_tokens=budget)
        session.run(other, TASK, QUESTION, max_new_tokens=budget)
        t2 = clock.now()
        batch = new_frame(frame, 3 * i + 2)
        t3 = clock.now()
        session.run_many(batch, ["detect", ("segment", "polyp"), (TASK, QUESTION)], max_new_tokens=budget)
        t4 = clock.now()
        if i < spec["warmup"]:
            continue
        one.append(t1 - t0)
        one_by_one.append(t2 - t0)
        three.append(t4 - t3)
    out = {"stages": times, "tokens": tokens, "three_tasks": three, "three_tasks_one_by_one": one_by_one,
           "one_task": one}
    if spec["stream_frames"] and hasattr(session, "stream"):
        out.update(run_stream(session, spec["stream_frames"]))
    return out


def run_stream(session, n_frames: int) -> dict:
    """Pass-through and marker delays of a synthetic stream; resident memory half-way and at
    the end (the first half is warm-up: on the built-in model memory rises for ~1000 frames as
    the allocators fill, then stays flat to 10,000, README "Performance")."""
    from gi_sdk.synthetic import SyntheticEndoscope

    passthrough, marker, rss = [], [], []
    start = time.perf_counter()
    frames = 0
    stream = session.stream(SyntheticEndoscope(seed=5, width=1280, height=720), task="detect")
    try:
        for item in stream:
            frames += 1
            passthrough.append(item.passthrough_ms)
            if item.marker_ms is not None:
                marker.append(item.marker_ms)
            if frames in (max(n_frames // 2, 1), n_frames):
                rss.append(resident_memory_mb())
            if frames >= n_frames:
                break
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    seconds = time.perf_counter() - start
    return {"passthrough": passthrough, "marker": marker, "stream_fps": frames / seconds,
            "stream_memory_growth_mb": rss[-1] - rss[0] if len(rss) == 2 else None}


def worker(spec: dict) -> None:
    """Child process: time one (model, runtime, precision); print one JSON line."""
    import gi_sdk

    out = run_transformers(spec) if spec["runtime"] == "transformers" else run_session(spec)
    out["peak_memory_mb"] = peak_memory_mb()
    if spec["device"].startswith("cuda"):
        import torch

        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["native"] = gi_sdk.native_available()
    print("RESULT " + json.dumps(out))


def in_child(spec: dict, timeout: float) -> dict | None:
    """Run ``worker(spec)`` in a fresh interpreter; None (and a note) when it fails."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    print(f"  skipped {spec['runtime']} on {spec['model_name']}: {' | '.join(tail)}", file=sys.stderr)
    return None


def pooled(total: dict | None, out: dict) -> dict:
    """The samples of one more round of a runtime added to those of the rounds before."""
    if total is None:
        return out
    for stage, samples in out["stages"].items():
        total["stages"][stage] += samples
    for key in ("three_tasks", "one_task", "three_tasks_one_by_one"):
        total[key] = (total.get(key) or []) + (out.get(key) or [])
    for key in ("peak_memory_mb", "cuda_peak_mb"):
        if out.get(key) is not None:
            total[key] = max(total.get(key) or 0.0, out[key])
    if out["tokens"] != total["tokens"]:
        total["tokens_vary_between_rounds"] = True
    for key, value in out.items():   # the stream's figures, from the round that ran it
        if key not in total:
            total[key] = value
    return total


# ---------------------------------------------------------------------------------- report

def rows_of(label: dict, out: dict) -> list[dict]:
    rows = []
    for stage, samples in out["stages"].items():
        if samples:
            rows.append({**label, "stage": stage, **summarize(samples)})
    for stage, key in (("one task", "one_task"), ("3 tasks", "three_tasks"),
                       ("3 tasks one by one", "three_tasks_one_by_one"),
                       ("stream passthrough", "passthrough"), ("stream marker", "marker")):
        if out.get(key):
            rows.append({**label, "stage": stage, **summarize(out[key])})
    for r in rows:
        r["peak_memory_mb"] = out["peak_memory_mb"]
    return rows


def table(rows: list[dict], speedup: dict, by_round: dict | None = None) -> str:
    head = f"{'model':<10}{'runtime':<14}{'prec':<11}{'stage':<20}{'n':>6}{'p50':>10}{'p90':>10}{'p99':>10}" \
           f"{'p99.9':>10}{'max':>10}{'std':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<10}{r['runtime']:<14}{r['precision']:<11}{r['stage']:<20}{r['n']:>6}"
                     f"{r['p50_ms']:>10.2f}{r['p90_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['p999_ms']:>10.2f}"
                     f"{r['max_ms']:>10.2f}{r['std_ms']:>9.2f}")
    lines.append("")
    for key, value in speedup.items():
        rounds = (by_round or {}).get(key) or []
        each = f" (round by round: {', '.join(f'{r:.2f}x' for r in rounds)})" if len(rounds) > 1 else ""
        lines.append(f"whole ask, {key}: {value:.2f}x faster than transformers generate{each}")
        if load_moved(value, rounds):
            median = float(np.median(rounds))
            lines.append(f"  ^ the host's load moved this figure (rounds {min(rounds):.2f}x-{max(rounds):.2f}x): "
                         f"the side-by-side one is the rounds' median, {median:.2f}x; run again on a quiet host")
    return "\n".join(lines)


def ratios_by_round(baseline: dict, candidate: dict) -> list[float]:
    """The whole-ask speedup of each interleaved round that both ran ({round: median ms} each):
    how far they spread says how much the host's load moved the pooled figure."""
    return [baseline[turn] / candidate[turn] for turn in sorted(set(baseline) & set(candidate))]


#: Rounds whose own speedups differ by more than this factor ran on a host whose load changed.
ROUND_SPREAD = 1.15


def load_moved(pooled: float, rounds: list[float]) -> bool:
    """Whether the host's load, not the code, moved a pooled speedup: its rounds' own ratios
    spread by more than ROUND_SPREAD, or the pooled figure lies outside all of them (the
    pooled medians then mix a slow round of one runtime with a fast round of the other)."""
    if len(rounds) < 2:
        return False
    low, high = min(rounds), max(rounds)
    return high / low > ROUND_SPREAD or not low / 1.02 <= pooled <= high * 1.02


def chart(rows: list[dict], path: Path) -> bool:
    """Bar chart of whole-ask p50 per model and runtime (False when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: PNG chart skipped (pip install matplotlib)", file=sys.stderr)
        return False
    asks = [r for r in rows if r["stage"] == "ask"]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(asks)))
    labels = [f"{r['model']} / {r['runtime']} / {r['precision']}" for r in asks]
    ax.barh(labels, [r["p50_ms"] for r in asks], xerr=[[0] * len(asks), [r["p90_ms"] - r["p50_ms"] for r in asks]],
            color=["#999999" if r["runtime"] == "transformers" else "#2a7ab0" for r in asks])
    ax.set_xscale("log")
    ax.set_xlabel("whole ask, ms (p50, whisker to p90; log scale)")
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine(device: str) -> dict:
    sys.path.insert(0, str(HERE))
    import native as native_bench  # benchmarks/native.py

    info = native_bench.machine()
    try:
        import torch

        info["torch"] = torch.__version__
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    from gi_sdk.train.merge import git_commit

    info["git_commit"] = git_commit(ROOT)
    return info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="built-in (or tiny) model, few runs: < 2 min")
    parser.add_argument("--models", default=None, help="comma list: builtin, base, tiny or folders "
                                                       "(default: builtin,base; quick: builtin)")
    parser.add_argument("--runtimes", default=None, help="comma list (default: transformers + every gi_sdk backend; "
                                                         "torch:MODE for a torch decode mode)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--runs", type=int, default=None, help="timed asks per runtime (default 30, quick 5)")
    parser.add_argument("--frame", default="%dx%d" % FRAME_SIZE, metavar="WxH",
                        help="size of the asked frame (default: 1920x1080, endoscope video; the stream is 1280x720)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds: each runtime runs runs/rounds asks per round, in turn "
                             "(default 3, quick 1)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="token budget of every ask")
    parser.add_argument("--stream-frames", type=int, default=None, help="frames of the streaming run "
                                                                        "(default 1000, quick 100; 0: none)")
    parser.add_argument("--no-native", action="store_true", help="skip benchmarks/native.py")
    parser.add_argument("--json", type=Path, help="write rows, speedups and the machine here")
    parser.add_argument("--csv", type=Path, help="write the rows as CSV here")
    parser.add_argument("--png", type=Path, help="write a chart of whole-ask latency here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return {}

    from gi_sdk import available_backends
    from gi_sdk.errors import ModelLoadError

    started = time.perf_counter()
    try:
        frame_size = [int(v) for v in args.frame.lower().split("x")]
        assert len(frame_size) == 2 and min(frame_size) > 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--frame {args.frame!r}: give WIDTHxHEIGHT, e.g. 1920x1080") from None
    runs = args.runs or (5 if args.quick else 30)
    rounds = max(1, min(runs, args.rounds or (1 if args.quick else 3)))
    stream_frames = args.stream_frames if args.stream_frames is not None else (100 if args.quick else 1000)
    names = (args.models or ("builtin" if args.quick else "builtin,base")).split(",")
    runtimes = (args.runtimes or ",".join(["transformers"] + available_backends())).split(",")
    rows, speedup, speedup_by_round, same_tokens, extra, checkpoints = [], {}, {}, {}, {}, {}
    for name in names:
        try:
            model = resolve_model(name)
        except ModelLoadError as exc:
            if name != "builtin":
                raise
            print(f"built-in model unavailable ({exc}); using the tiny test model", file=sys.stderr)
            name, model = "tiny", resolve_model("tiny")
        try:
            checkpoint = checkpoint_of(model, name)
        except Exception as exc:  # reported; the bundle's own runtimes still run
            print(f"  no checkpoint for {name}: {exc}", file=sys.stderr)
            checkpoint = None
        checkpoints[name] = {"path": str(checkpoint) if checkpoint else None,
                             "recovered_from_bundle": bool(checkpoint) and checkpoint != source_checkpoint(model)}
        jobs = []   # (runtime, precision, spec) of every child this model runs
        for runtime in runtimes:
            if runtime == "transformers":
                folder = checkpoint
            else:
                try:
                    folder = model_for(runtime.partition(":")[0], model, name)
                except Exception as exc:  # an export that fails here is reported, the run goes on
                    print(f"  no {runtime} model for {name}: {exc}", file=sys.stderr)
                    continue
            if folder is None:
                print(f"  no model folder {runtime} can load for {name}", file=sys.stderr)
                continue
            for precision in (["fp32"] if runtime == "transformers" else precisions(folder, args.device)):
                jobs.append((runtime, precision, {
                    "model": str(folder), "model_name": name, "checkpoint": str(checkpoint), "runtime": runtime,
                    "precision": precision, "device": args.device, "warmup": 2,
                    "max_new_tokens": args.max_new_tokens, "frame_size": frame_size}))
        # Interleaved rounds: every runtime takes its turn once per round, so a change in the
        # host's load lands on all of them instead of on whichever ran at the time; the samples
        # of all rounds are pooled. The stream runs once, in the last round.
        outs, ask_by_round = {}, {}
        for turn in range(rounds):
            share = runs // rounds + (1 if turn < runs % rounds else 0)
            for runtime, precision, spec in jobs:
                last = turn == rounds - 1
                spec = {**spec, "runs": share,
                        "stream_frames": stream_frames if runtime != "transformers" and last else 0}
                print(f"timing {name} / {runtime} / {precision} (round {turn + 1} of {rounds}) ...",
                      file=sys.stderr, flush=True)
                out = in_child(spec, timeout=3600)
                if out is not None:
                    outs[(runtime, precision)] = pooled(outs.get((runtime, precision)), out)
                    ask_by_round.setdefault((runtime, precision), {})[turn] = float(np.median(out["stages"]["ask"]))
        baseline = None
        for runtime, precision, _ in jobs:
            out = outs.get((runtime, precision))
            if out is None:
                continue
            label = {"model": name, "runtime": runtime, "precision": precision}
            rows += rows_of(label, out)
            key = f"{runtime}/{name}/{precision}"
            extra[key] = {k: out.get(k) for k in ("peak_memory_mb", "cuda_peak_mb", "stream_fps",
                                                  "stream_memory_growth_mb", "native")}
            ask = summarize(out["stages"]["ask"])["p50_ms"]
            extra[key]["fps"] = 1e3 / ask
            if runtime == "transformers":
                baseline = (ask, out["tokens"], ask_by_round[(runtime, precision)])
            elif baseline:
                speedup[key] = baseline[0] / ask
                speedup_by_round[key] = ratios_by_round(baseline[2], ask_by_round[(runtime, precision)])
                extra[key]["load_moved_speedup"] = load_moved(speedup[key], speedup_by_round[key])
                same_tokens[key] = out["tokens"] == baseline[1]
            if out.get("three_tasks"):
                extra[key]["three_over_one_task"] = float(np.median(out["three_tasks"]) / np.median(out["one_task"]))
                extra[key]["three_one_by_one_over_one_task"] = float(
                    np.median(out["three_tasks_one_by_one"]) / np.median(out["one_task"]))
    result = {"machine": machine(args.device), "quick": args.quick, "question": QUESTION, "rounds": rounds,
              "max_new_tokens": args.max_new_tokens, "frame_size": frame_size, "rows": rows, "speedup": speedup,
              "speedup_by_round": speedup_by_round,
              "same_tokens_as_baseline": same_tokens, "runs": extra,
              "checkpoints": checkpoints}   # what transformers and the torch backend ran
    if not args.no_native:
        sys.path.insert(0, str(HERE))
        import native as native_bench

        result["native"] = native_bench.main(["--quick"] if args.quick else [])
    print(table(rows, speedup, speedup_by_round))
    for key, info in extra.items():
        notes = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items() if v is not None)
        print(f"{key}: {notes}")
    print(f"\nmachine: {result['machine'].get('cpu')}, {result['machine'].get('cores')} cores"
          f"{', GPU ' + result['machine']['gpu'] if 'gpu' in result['machine'] else ''}; "
          f"{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        fields = ["model", "runtime", "precision", "stage", "n", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
                  "std_ms", "peak_memory_mb"]
        with args.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}")
    if args.png and chart(rows, args.png):
        print(f"wrote {args.png}")
    return result


if __name__ == "__main__":
    main()
