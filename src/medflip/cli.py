"""`medflip` command line: one subcommand per concern, each registered by its own module.

Each module in COMMANDS exposes `register(subparsers)`, which adds its parser(s) and sets `func` (called with
the parsed args, returns an exit code or None). Only the module of the command being run is imported: the
others appear in `medflip --help` as one-line stubs. So `medflip label` never imports torch (the training
modules do at import time), and `medflip --help` / `medflip label --help` start in a fraction of a second.
An import error in a command's module is not hidden: that command fails with the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from medflip import __version__
from medflip.errors import UserError

COMMAND_MODULES = (
    "medflip.demo.cli",  # demo
    "medflip.train.cli",  # pretrain
    "medflip.evaluate.cli",  # eval zeroshot | retrieval | ...
    "medflip.bench.cli",  # bench
    "medflip.labeler.cli",  # label, label-eval, label-bench
    "medflip.data.cli",  # data import | cache | split | bench
    "medflip.serve.cli",  # serve, explain
    "medflip.inference",  # predict
    "medflip.study.cli",  # study run | report | status
)
#: command -> (module that registers it, one-line help for `medflip --help`). tests/test_cli.py checks that
#: each module of COMMAND_MODULES registers exactly the commands listed for it here.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("medflip.demo.cli", "pre-train and evaluate a small model on built-in data"),
    "pretrain": ("medflip.train.cli", "pre-train a MedFLIP model (masked ViT + text encoder)"),
    "eval": ("medflip.evaluate.cli", "evaluate a model: zero-shot, retrieval, probe, fine-tune, efficiency"),
    "bench": ("medflip.bench.cli", "time training steps at mask ratios 0 / 0.5 / 0.75 vs the FLOPs ceiling"),
    "label": ("medflip.labeler.cli", "label reports with the 14 CheXpert observations"),
    "label-eval": ("medflip.labeler.cli", "score the labeler on the IU reports against the MeSH major terms"),
    "label-bench": ("medflip.labeler.cli", "labeler throughput (reports/s on one core)"),
    "data": ("medflip.data.cli", "import datasets, build the image cache, split, benchmark"),
    "predict": ("medflip.inference", "zero-shot class probabilities for image files"),
    "serve": ("medflip.serve.cli", "local web page: zero-shot bars, similar report sentences, grounding heatmaps"),
    "explain": ("medflip.serve.cli", "grounding figure: where a phrase points in an image"),
    "study": ("medflip.study.cli", "resumable reproduction study (docs/reproduction.md)"),
}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in argv (its first non-option word; the top-level parser has no valued options)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the named command's module is registered for real, every other command is a
    help-only stub. argv=None registers every module (what tests and tools that walk all commands want)."""
    parser = argparse.ArgumentParser(
        prog="medflip",
        description="Fast medical vision-language pre-training (MedFLIP): pre-train, evaluate, label reports.",
    )
    parser.add_argument("--version", action="version", version=f"medflip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if argv is None:
        wanted = set(COMMAND_MODULES)
    else:
        command = _command_of(argv)
        wanted = {COMMANDS[command][0]} if command in COMMANDS else set()
    listed = {module for module, _ in COMMANDS.values()}
    wanted |= {module for module in COMMAND_MODULES if module not in listed}  # not in COMMANDS yet: always
    registered: set[str] = set()
    for module_name in COMMAND_MODULES:
        if module_name in wanted and module_name not in listed:
            importlib.import_module(module_name).register(sub)
            registered.add(module_name)
    for name, (module_name, help_text) in COMMANDS.items():
        if module_name in wanted:
            if module_name not in registered:
                importlib.import_module(module_name).register(sub)
                registered.add(module_name)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (UserError, FileNotFoundError) as e:
        print(f"medflip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
