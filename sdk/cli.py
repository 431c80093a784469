"""The ``gi-sdk`` command line: ``gi-sdk demo``, ``gi-sdk info``, ``gi-sdk train``, ``gi-sdk eval``,
``gi-sdk export``.

Each subcommand is a small function over the public API; heavy imports happen inside them.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import GiSdkError


def _demo(args) -> int:
    from .demo import DemoConfig, format_summary, run_demo

    config = DemoConfig.from_yaml(args.config) if args.config else DemoConfig()
    overrides = {
        ("source", "uri"): args.source, ("source", "frames"): args.frames, ("source", "width"): args.width,
        ("source", "height"): args.height, ("source", "seed"): args.seed, ("source", "realtime"): args.realtime,
        ("model", "path"): args.model, ("model", "backend"): args.backend, ("model", "device"): args.device,
        ("tasks", "segment"): args.segment, ("tasks", "ask"): args.ask, ("tasks", "ask_every_s"): args.ask_every,
        ("tasks", "task"): args.task, ("tasks", "text"): args.text, ("tasks", "max_new_tokens"): args.max_new_tokens,
        ("outputs", "mp4"): args.out, ("outputs", "window"): args.window, ("outputs", "web"): args.web,
        ("outputs", "host"): args.host, ("outputs", "port"): args.port, ("outputs", "log"): args.log,
        ("overlay", "unconfirmed"): args.unconfirmed,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            config.set(section, key, value, "flags")
    if args.detect:   # --detect with --segment: segment wins (one tracked task per stream)
        config.set("tasks", "detect", True)
    print(format_summary(run_demo(config)))
    return 0


def _info(args) -> int:
    from .bundle import builtin_bundle
    from .checkpoint import Checkpoint

    ck = Checkpoint.open(args.model if args.model else builtin_bundle())
    if ck.bundle is not None:  # checked (format version, every hash) by Checkpoint.open
        print(json.dumps(ck.bundle.manifest, indent=2) if args.json else ck.bundle.summary())
        return 0
    info = {
        "path": str(ck.path), "family": ck.family.name, "image_size": ck.image_size,
        "image_mean": ck.image_mean, "image_std": ck.image_std,
        "image_seq_length": ck.image_seq_length, "image_token_id": ck.image_token_id,
        "labels": list(ck.labels),
        "files": sorted(p.name for p in ck.path.iterdir() if p.is_file()),
    }
    print(json.dumps(info, indent=2))
    return 0


def _export(args) -> int:
    # gi_sdk.export needs torch / transformers / onnx: imported only when exporting
    from .errors import require

    require("onnx", "export")
    from .bundle import Bundle
    from .export import export_bundle

    out = export_bundle(args.checkpoint, args.out, precision=args.precision, calibration=args.calibration,
                        tensorrt=args.tensorrt, real_frames=args.real_frames,
                        track_start_score=args.track_start_score)
    print(Bundle.open(out).summary())
    return 0


def _recover(args) -> int:
    from .errors import require

    require("torch", "export")
    require("onnx", "export")
    from .bundle import builtin_bundle
    from .export.recover import checkpoint_from_bundle

    checkpoint_from_bundle(args.bundle or builtin_bundle(), args.out)
    return 0


def _train(args) -> int:
    # gi_sdk.train needs torch / transformers / peft: imported only when training
    from .errors import require

    require("peft", "train")
    from .train import TrainConfig, run

    config = TrainConfig.from_yaml(args.config)
    if args.output_dir:
        config.output_dir = args.output_dir
    out = run(config)
    print(f"wrote merged checkpoint to {out} (see {out}/training_record.json)")
    return 0


def _eval(args) -> int:
    # gi_sdk.train needs torch / transformers and the metric packages: imported only here
    from .errors import require

    require("sacrebleu", "train")
    from .train import evaluate as E
    from .train.json_files import write_json

    if args.predictions:
        from .train.json_predictions import score_file

        report = score_file(args.predictions)
        write_json(args.out, report)
        o = report["overall"]
        print(f"scored {o['n']} answers ({o['parse_failures']} unparsed) into {args.out}")
        return 0
    if not args.model or not args.data:
        print("gi-sdk eval: error: give MODEL and --data (or --predictions FILE.jsonl)", file=sys.stderr)
        return 2
    if args.role_prefix == "expert":
        from .train.ablations import EXPERT_ROLE

        args.role_prefix = EXPERT_ROLE
    if args.data == "synthetic":
        specs, max_skip = [E.synthetic_spec(args.model, args.seed, args.n)], 0.05
    else:
        specs, max_skip = E.read_data_file(args.data)
    report = E.evaluate(args.model, specs, limit=args.limit, max_new_tokens=args.max_new_tokens,
                        backend=args.backend, device=args.device, max_skip_share=max_skip, out=args.out,
                        samples_out=args.samples, medico_dir=args.medico, progress=not args.quiet,
                        role_prefix=args.role_prefix, swapped_images=args.swapped_images, nonsense=args.nonsense,
                        constrained=not args.unconstrained)
    print(json.dumps(report["overall"], indent=2))
    print(f"wrote {args.out} ({report['overall']['n']} examples, {report['seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gi-sdk", description="Ask a vision-language model about endoscopy video.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="live overlay on endoscope video: MP4, window, web viewer",
                          description="Stream a model over video with the latest overlay on every frame. "
                                      "Flags override the --config YAML (sections source, model, tasks, "
                                      "overlay, outputs).")
    demo.add_argument("--config", default=None, help="YAML file with one section per stage")
    demo.add_argument("--model", default=None, help="bundle or merged checkpoint folder (default: the built-in model)")
    demo.add_argument("--source", default=None, help="synthetic[:SEED] (default), a video file, camera index, "
                                                     "/dev/videoN, rtsp:// or http:// URL, or GStreamer pipeline")
    demo.add_argument("--out", default=None, help="MP4 file to write, or a folder to write overlay.mp4 in (default: overlay.mp4)")
    demo.add_argument("--detect", action="store_true", help="detect and track objects (the default task)")
    demo.add_argument("--segment", default=None, metavar="PHRASE", help="segment what PHRASE names, e.g. polyp")
    demo.add_argument("--ask", default=None, metavar="QUESTION", help="answer QUESTION about the live frame "
                                                                    "while detection keeps running")
    demo.add_argument("--ask-every", type=float, default=None, metavar="S", help="seconds between answers (default: 2)")
    demo.add_argument("--task", default=None, help="any other task name from gi_sdk.tasks instead")
    demo.add_argument("--text", default=None, help="the input text of --task")
    demo.add_argument("--max-new-tokens", type=int, default=None, help="cap the model's output length")
    demo.add_argument("--frames", type=int, default=None, help="stop after N frames (default: 300 synthetic, "
                                                               "all of a file, until Ctrl-C for a camera)")
    demo.add_argument("--width", type=int, default=None, help="synthetic frame width (default: 1280)")
    demo.add_argument("--height", type=int, default=None, help="synthetic frame height (default: 720)")
    demo.add_argument("--seed", type=int, default=None, help="synthetic video seed (default: 0)")
    demo.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                      help="play files at their own fps (default) or as fast as they decode")
    demo.add_argument("--window", action=argparse.BooleanOptionalAction, default=None,
                      help="show a window (default: when a display exists)")
    demo.add_argument("--web", action="store_true", default=None, help="serve a live MJPEG web viewer")
    demo.add_argument("--host", default=None, help="web viewer address (default: 127.0.0.1, this machine only)")
    demo.add_argument("--port", type=int, default=None, help="web viewer port (default: 8080)")
    demo.add_argument("--log", default=None, metavar="JSONL", help="write every result to this JSON Lines file")
    demo.add_argument("--unconfirmed", default=None, choices=("faint", "hide", "show"),
                      help="how to draw what the tracker has not confirmed (default: faint, a thin outline)")
    demo.add_argument("--backend", default=None, help="auto (default), onnxruntime, torch, ...")
    demo.add_argument("--device", default=None, help="cpu (default) or cuda")
    demo.set_defaults(func=_demo)

    info = sub.add_parser("info", help="describe a model bundle or checkpoint (checks a bundle's hashes)")
    info.add_argument("model", nargs="?", default=None,
                      help="bundle or merged checkpoint folder (default: the built-in model)")
    info.add_argument("--json", action="store_true", help="print a bundle's whole manifest as JSON")
    info.set_defaults(func=_info)

    export = sub.add_parser("export", help="export a checkpoint to a verified ONNX bundle (needs gi-sdk[export])")
    export.add_argument("checkpoint", help="merged checkpoint folder, or a LoRA adapter folder (merged first)")
    export.add_argument("--out", required=True, help="bundle folder to create")
    export.add_argument("--precision", default="fp32",
                        help="fp32 (default), fp16, int8 (text parts int8), int8-static (and vision int8 QDQ), "
                             "auto (each part dynamic int8 where that keeps localization; the vision "
                             "encoder's matrix products only), or per part: "
                             "vision_encoder=int8,decoder_model_merged=int8")
    export.add_argument("--calibration", default=None, metavar="DIR_OR_VIDEO",
                        help="frames for int8-static calibration (default: synthetic endoscope frames)")
    export.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs tensorrt + GPU)")
    export.add_argument("--real-frames", default=None, metavar="DIR",
                        help="real frames for verification and the report (default: the PolypGen sample "
                             "beside the checkout, when present)")
    export.add_argument("--track-start-score", type=float, default=None, metavar="SCORE",
                        help="least instance score that starts a track when streaming with this model "
                             "(stored in the manifest; default: the tracker's own)")
    export.set_defaults(func=_export)

    recover = sub.add_parser("recover", help="write the merged checkpoint a bundle runs, for transformers, the torch "
                                             "backend or more training (needs gi-sdk[export])")
    recover.add_argument("bundle", nargs="?", default=None, help="bundle folder (default: the built-in model)")
    recover.add_argument("--out", required=True, help="checkpoint folder to create")
    recover.set_defaults(func=_recover)

    train = sub.add_parser("train", help="LoRA fine-tune a Florence-2 checkpoint and merge it (needs gi-sdk[train])")
    train.add_argument("--config", required=True, help="YAML recipe of gi_sdk.train.TrainConfig fields")
    train.add_argument("--output-dir", default=None, help="override the recipe's output_dir")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="score a model on examples, or score a file of answers (needs gi-sdk[train])")
    ev.add_argument("model", nargs="?", help="model folder (merged checkpoint or bundle)")
    ev.add_argument("--data", help="'synthetic' (scenes from --seed) or a YAML/JSON file with a 'sources:' list "
                                   "(the SourceSpec entries of a training recipe)")
    ev.add_argument("--seed", type=int, default=1000, help="synthetic scenes' seed; never one used in training "
                                                           "(default: 1000)")
    ev.add_argument("--n", type=int, default=200, help="number of synthetic scenes (default: 200)")
    ev.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="cap every task's token budget")
    ev.add_argument("--predictions", default=None, help="score this JSON Lines file of answers (fields "
                                                        "'response' and 'labels') instead of running a model")
    ev.add_argument("--out", default="eval_report.json", help="report JSON to write (default: eval_report.json)")
    ev.add_argument("--samples", default=None, help="also write one JSON line per example (input, target, output)")
    ev.add_argument("--medico", default=None, metavar="DIR", help="also write MediaEval Medico 2025 Task 1 / "
                                                                  "Task 2 submission files into DIR")
    ev.add_argument("--role-prefix", nargs="?", const="expert", default=None, metavar="TEXT",
                    help="ask every question behind a role; without TEXT the seed's expert gastroenterologist")
    ev.add_argument("--swapped-images", action="store_true",
                    help="also answer every example on another image (does the model use the image?)")
    ev.add_argument("--nonsense", action="store_true",
                    help="also ask each image about things no endoscopy frame shows, and count the yeses")
    ev.add_argument("--unconstrained", action="store_true",
                    help="decode plain greedy, without the task grammars (what the model writes on its own: "
                         "parse failures count again)")
    ev.add_argument("--backend", default="auto")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GiSdkError as exc:
        print(f"gi-sdk {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
