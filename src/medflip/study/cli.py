"""`medflip study`: the resumable reproduction study (docs/reproduction.md).

medflip study run      pre-train + evaluate every cell of the plan; finished cells are skipped
medflip study report   write the Markdown report and figures from the finished cells
medflip study status   list the cells: done / trained / partial / todo, with their commands
medflip study eval-cell NAME   evaluate one pre-trained cell (what `run` calls after pre-training)
"""

from __future__ import annotations

import argparse

from medflip.config import add_config_flags, config_from_args
from medflip.errors import UserError
from medflip.study.cell import evaluate_cell
from medflip.study.plan import StudyConfig, cells, command_line, pretrain_argv
from medflip.study.runner import cell_status, load_config, run_study, save_config

DESCRIPTION = """Reproduction study of the paper's claims on Kermany (3-class probe, fine-tuning, zero-shot,
retrieval), every method at the same CPU-time budget, several seeds. Resumable: kill it any time and run the
same command again; finished cells are skipped and a half-trained cell continues from its checkpoint.

Examples:
  medflip study run --out runs/study                      # the whole plan (docs/reproduction.md)
  medflip study run --out runs/study --seeds 0            # seed 0 of every cell first
  medflip study report --out runs/study --doc docs/reproduction.md --img docs/img
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="resumable reproduction study (docs/reproduction.md)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    r = s.add_parser(
        "run",
        help="run every unfinished cell",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "--only", nargs="+", metavar="CELL", help="run only these cells (names from `study status`)"
    )
    r.add_argument("--limit", type=int, default=0, help="run at most N unfinished cells, then stop")
    r.add_argument(
        "--dry-run", action="store_true", help="save the plan (study.json) and list its cells; run nothing"
    )
    r.add_argument("--report", action="store_true", help="write the report (--doc/--img) after the run")
    r.add_argument("--doc", default="docs/reproduction.md")
    r.add_argument("--img", default="docs/img")
    add_config_flags(r, StudyConfig)
    r.set_defaults(func=_run)
    rep = s.add_parser("report", help="Markdown report + figures from the finished cells")
    rep.add_argument("--out", default="runs/study", help="study folder (its study.json holds the settings)")
    rep.add_argument("--doc", default="docs/reproduction.md")
    rep.add_argument("--img", default="docs/img")
    rep.add_argument(
        "--seeds", help="seeds of the full plan, e.g. 0,1,2 (default: those of the last `study run`)"
    )
    rep.set_defaults(func=_report)
    st = s.add_parser("status", help="the cells and their state")
    st.add_argument("--out", default="runs/study")
    st.set_defaults(func=_status)
    e = s.add_parser("eval-cell", help="evaluate one pre-trained cell")
    e.add_argument("cell")
    e.add_argument("--out", default="runs/study")
    e.set_defaults(func=_eval_cell)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _config(args):
    return config_from_args(StudyConfig, args)


def _run(args) -> int:
    cfg = _config(args)
    if args.dry_run:
        save_config(cfg)
        for c in cells(cfg):
            print(f"{cell_status(cfg, c):8s} {c.name}")
        return 0
    counts = run_study(cfg, only=args.only, limit=args.limit)
    if args.report:
        from medflip.study.report import write_report

        write_report(cfg, args.doc, args.img)
    return 1 if counts["failed"] else 0


def _report(args) -> int:
    # report (matplotlib, ~0.5 s) is imported by the commands that write it: `study status` starts without it
    from medflip.study.report import write_report

    cfg = load_config(args.out)
    if args.seeds:
        cfg.seeds = tuple(int(x) for x in args.seeds.split(","))
    doc = write_report(cfg, args.doc, args.img)
    print(f"wrote {doc}")
    return 0


def _status(args) -> int:
    cfg = load_config(args.out)
    for c in cells(cfg):
        st = cell_status(cfg, c)
        print(f"{st:8s} {c.name}")
        if st != "done":
            print(f"         {command_line(pretrain_argv(cfg, c), cfg.threads)}")
    return 0


def _eval_cell(args) -> int:
    cfg = load_config(args.out)
    match = [c for c in cells(cfg) if c.name == args.cell]
    if not match:
        raise UserError(f"no cell {args.cell!r} in the plan of {args.out} (see `medflip study status`)")
    r = evaluate_cell(cfg, match[0])
    print(f"{args.cell}: evaluated in {r['eval_cpu_s']} CPU s")
    return 0
