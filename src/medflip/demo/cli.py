"""`medflip demo`: the command. Flags come from DemoConfig through the same mechanism as `medflip pretrain`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medflip.config import add_config_flags, config_from_args
from medflip.demo import __doc__ as doc
from medflip.demo.config import DemoConfig
from medflip.demo.runner import run_demo, score_demo_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="pre-train and evaluate a small model on built-in data (real report text, synthetic images)",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--json", type=Path, help="also write the metrics here (the run folder always has metrics.json)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--score",
        type=Path,
        metavar="MODEL",
        help="no training: score a trained demo model (e.g. runs/demo/model) on the held-out phantoms of "
        "--seed (zero-shot accuracy and grounding inside/outside + pointing game per class)",
    )
    add_config_flags(p, DemoConfig)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    cfg = config_from_args(DemoConfig, args)
    if args.score:
        metrics = score_demo_model(args.score, cfg)
    else:
        metrics = run_demo(cfg, progress=not args.no_progress)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics, indent=2))
    return 0
