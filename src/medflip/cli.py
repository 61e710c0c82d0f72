"""`medflip` command line: one subcommand per concern, each registered by its own module.

Each module listed in COMMAND_MODULES exposes `register(subparsers)`, which adds its parser(s) and sets
`func` (called with the parsed args, returns an exit code or None). Those modules import torch and
friends inside the command functions, so `medflip --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from medflip.errors import UserError

COMMAND_MODULES = (
    "medflip.demo.cli",  # demo
    "medflip.train.cli",  # pretrain
    "medflip.evaluate.cli",  # eval zeroshot | retrieval | ...
    "medflip.bench",  # bench
    "medflip.labeler.cli",  # label, label-eval, label-bench
    "medflip.data.cli",  # data import | cache | split | bench
    "medflip.serve.cli",  # serve, explain
    "medflip.inference",  # predict
    "medflip.study.cli",  # study run | report | status
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medflip",
        description="Fast medical vision-language pre-training (MedFLIP): pre-train, evaluate, label reports.",
    )
    from medflip._version import __version__

    parser.add_argument("--version", action="version", version=f"medflip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a module still being written must not break the others
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
