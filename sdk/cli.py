"""The ``gi-sdk`` command line: ``gi-sdk demo``, ``gi-sdk info``, ``gi-sdk train``.

Each subcommand is a small function over the public API; heavy imports happen inside them.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import GiSdkError


def _demo(args) -> int:
    from .demo import run_demo
    from .session import Session

    session = Session(args.model, backend=args.backend, device=args.device)
    print(f"loaded {session}")
    summary = run_demo(session, args.out, task=args.task, text=args.text, source=args.source,
                       n_frames=args.frames, width=args.width, height=args.height, seed=args.seed)
    print(f"wrote {summary['frames']} frames to {summary['out']} "
          f"(model {summary['mean_ms']:.0f} ms/frame mean, {summary['p99_ms']:.0f} ms p99)")
    return 0


def _info(args) -> int:
    from .checkpoint import Checkpoint

    ck = Checkpoint.open(args.model)
    info = {
        "path": str(ck.path), "family": ck.family.name, "image_size": ck.image_size,
        "image_mean": ck.image_mean, "image_std": ck.image_std,
        "image_seq_length": ck.image_seq_length, "image_token_id": ck.image_token_id,
        "files": sorted(p.name for p in ck.path.iterdir() if p.is_file()),
    }
    print(json.dumps(info, indent=2))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gi-sdk", description="Ask a vision-language model about endoscopy video.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a model over video and write an overlay MP4")
    demo.add_argument("--model", required=True, help="merged checkpoint folder")
    demo.add_argument("--out", default="overlay.mp4", help="MP4 file to write (default: overlay.mp4)")
    demo.add_argument("--source", default=None, help="video file (default: the built-in synthetic endoscope)")
    demo.add_argument("--task", default="detect", help="task name from gi_sdk.tasks (default: detect)")
    demo.add_argument("--text", default=None, help="question or phrase for tasks that take one")
    demo.add_argument("--frames", type=int, default=90, help="number of frames (default: 90)")
    demo.add_argument("--width", type=int, default=1280)
    demo.add_argument("--height", type=int, default=720)
    demo.add_argument("--seed", type=int, default=0, help="synthetic video seed")
    demo.add_argument("--backend", default="auto")
    demo.add_argument("--device", default="cpu")
    demo.set_defaults(func=_demo)

    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model", help="merged checkpoint folder")
    info.set_defaults(func=_info)

    train = sub.add_parser("train", help="LoRA fine-tune a Florence-2 checkpoint and merge it (needs gi-sdk[train])")
    train.add_argument("--config", required=True, help="YAML recipe of gi_sdk.train.TrainConfig fields")
    train.add_argument("--output-dir", default=None, help="override the recipe's output_dir")
    train.set_defaults(func=_train)
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
