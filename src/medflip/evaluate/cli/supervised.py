"""`medflip eval probe` and `medflip eval finetune`: frozen features or full fine-tuning, at data fractions."""

from __future__ import annotations

from pathlib import Path

from medflip.data.overlap import warn_overlap
from medflip.errors import UserError
from medflip.evaluate.cli.common import eval_device, fmt, load, open_split, task_images, write_outputs
from medflip.evaluate.plots import plot_confusion
from medflip.evaluate.supervised import FinetuneConfig, plot_fractions, run_supervised
from medflip.evaluate.tasks import resolve_task
from medflip.model.medflip import MedFLIP


def _fractions(values: list[float]) -> list[float]:
    bad = [f for f in values if not 0 < f <= 1]
    if bad or not values:
        raise UserError(f"--fractions must be in (0, 1] (e.g. 0.01 0.1 1), got {values}")
    return sorted(set(values))


def _supervised(args, mode: str, probe_c: float | None = None, ft=None) -> int:
    """What probe and fine-tuning share: splits, task, leak check, the run, tables and plots."""
    fractions = _fractions(args.fractions)
    train_cache_dir = args.train_cache or args.cache
    same = Path(train_cache_dir).resolve() == Path(args.cache).resolve() and args.train_split == args.split
    if same:
        raise UserError(
            f"--train-split and --split are both {args.split!r} of {args.cache}: scores would be measured on "
            "training images; pass another --split (or --train-cache)"
        )
    eval_cache = load(args)
    train_cache = open_split(train_cache_dir, args.train_split)
    print(f"training split {train_cache_dir} [{args.train_split}]:")
    names, y_train, keep_train = resolve_task(train_cache.rows, args.task, args.positive)
    print(f"evaluation split {args.cache} [{args.split}]:")
    _, y_eval, keep_eval = resolve_task(eval_cache.rows, args.task, args.positive)
    leak = warn_overlap(
        train_cache.rows,
        eval_cache.rows,
        f"{train_cache_dir} [{args.train_split}]",
        f"{args.cache} [{args.split}]",
    )
    device = eval_device(args)
    model = MedFLIP.from_pretrained(args.model, map_location=device)
    vision, size = model.vision, model.cfg.vision.image_size
    del model  # only the image encoder is evaluated
    res = run_supervised(
        mode,
        vision,
        size,
        task_images(train_cache, keep_train),
        y_train,
        task_images(eval_cache, keep_eval),
        y_eval,
        names,
        fractions=fractions,
        device=device,
        seed=args.seed,
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
        probe_c=probe_c,
        finetune_cfg=ft,
        progress=True,
    )
    res.update(
        task=args.task,
        model=str(args.model),
        train=f"{train_cache_dir} [{args.train_split}]",
        eval=f"{args.cache} [{args.split}]",
        seed=args.seed,
        train_eval_shared_patients=len(leak.patients),
    )
    if ft is not None:
        res["finetune_config"] = vars(ft)
    title = "linear probe" if mode == "probe" else "fine-tuning"
    table = "\n".join(
        [
            f"{title} {args.task}: trained on {res['train']}, scored on {res['eval']} (n = {len(y_eval)})",
            "",
            "| data | training images | accuracy | macro-F1 | AUROC |",
            "|---|---|---|---|---|",
            *[
                f"| {r['fraction'] * 100:g}% | {r['n_train']} | {fmt(r, 'accuracy')} | {fmt(r, 'macro_f1')} "
                f"| {fmt(r, 'auroc')} |"
                for r in res["results"]
            ],
            "",
            "values: metric (95% bootstrap CI)",
        ]
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot_fractions(res, out / f"{mode}.png", f"{title} ({args.task})")
        for r in res["results"]:
            plot_confusion(
                r["confusion"],
                names,
                out / f"{mode}_confusion_{r['fraction'] * 100:g}pct.png",
                f"{title}, {r['fraction'] * 100:g}% data",
            )
    write_outputs(args, mode, res, table)
    return 0


def probe(args) -> int:
    return _supervised(args, "probe", probe_c=None if args.C == "auto" else float(args.C))


def finetune(args) -> int:
    ft = FinetuneConfig(
        epochs=args.epochs,
        min_steps=args.min_steps,
        batch_size=args.train_batch_size,
        lr=args.lr,
        head_lr=args.head_lr,
        weight_decay=args.weight_decay,
        precision=args.precision,
        augment=not args.no_augment,
    )
    return _supervised(args, "finetune", ft=ft)
