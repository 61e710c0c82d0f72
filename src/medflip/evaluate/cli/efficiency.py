"""`medflip eval efficiency`: zero-shot against pre-training wall-clock or number of images."""

from __future__ import annotations

from pathlib import Path

from medflip.errors import UserError
from medflip.evaluate import efficiency as eff
from medflip.evaluate.cli.common import eval_device, open_split, task_images, task_prompts, write_outputs
from medflip.evaluate.tasks import resolve_task


def efficiency(args) -> int:
    if not args.time_runs and not args.data_runs:
        raise UserError(
            "pass --time-runs (checkpoints vs wall-clock) and/or --data-runs (subset pre-trainings)"
        )
    if args.samples and not args.data_runs:
        raise UserError("--samples goes with --data-runs")
    time_plan = (
        eff.validate_time_runs(eff.parse_runs(args.time_runs), args.max_checkpoints)
        if args.time_runs
        else None
    )
    data_plan = (
        eff.validate_data_runs(eff.parse_runs(args.data_runs), args.samples) if args.data_runs else None
    )
    cache = open_split(args.cache, args.split)
    names, y, keep = resolve_task(cache.rows, args.task, args.positive)
    prompts = task_prompts(args, names)
    device = eval_device(args)
    images = task_images(cache, keep)
    kw = dict(device=device, batch_size=args.batch_size, n_boot=args.bootstrap, seed=args.seed, progress=True)
    res: dict = {
        "task": args.task,
        "eval": f"{args.cache} [{args.split}]",
        "n": int(len(y)),
        "classes": names,
        "prompt_seed": args.seed,
        "prompts": prompts,
    }
    tables = []
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    studies = [
        ("time", time_plan, eff.time_efficiency, eff.time_table, eff.plot_time, "pre-training wall-clock"),
        ("data", data_plan, eff.data_efficiency, eff.data_table, eff.plot_data, "pre-training images"),
    ]
    for kind, plan, evaluate, table, plot, x_name in studies:
        if not plan:
            continue
        res[kind] = evaluate(plan, images, y, prompts, **kw)
        tables += [
            f"{kind} efficiency: zero-shot {args.task} on {res['eval']} vs {x_name}",
            "",
            table(res[kind]),
            "",
        ]
        if out:
            plot(res[kind], out / f"efficiency_{kind}.png", f"{kind} efficiency ({args.task})")
            (out / f"efficiency_{kind}.md").write_text(table(res[kind]) + "\n")
    write_outputs(args, "efficiency", res, "\n".join(tables).rstrip())
    return 0


EFFICIENCY_HELP = """Data and time efficiency of pre-training (paper Fig. 1), zero-shot on one evaluation split.

  --time-runs   every checkpoint of each run; x = training wall-clock (state.json elapsed_s)
  --data-runs   the final model of each run; x = number of pre-training images (--samples, or derived
                from the run's config.json: cache split size x data.fraction)

A run is DIR or LABEL=DIR; unlabelled runs are named by their mask ratio ("masked 0.5" / "unmasked"),
so masked and unmasked runs are the lines of one plot. Outputs in --out: efficiency_time.png/.md,
efficiency_data.png/.md, efficiency.json.

Examples:
  medflip eval efficiency --cache cache/ --split test --out eval/eff \\
      --time-runs masked=runs/flip unmasked=runs/clip
  medflip eval efficiency --cache cache/ --data-runs runs/m10 runs/m25 runs/m50 runs/m100 \\
      runs/u10 runs/u25 runs/u50 runs/u100
"""
