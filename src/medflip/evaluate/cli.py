"""`medflip eval ...`: zero-shot, retrieval, linear probe, fine-tuning, data/time efficiency.

  zeroshot     zero-shot classification with prompt ensembles
  retrieval    image<->text retrieval, Precision@K by category
  probe        linear probe on frozen image features, at data fractions
  finetune     fine-tuning of the image encoder + a linear head, at data fractions
  efficiency   zero-shot accuracy vs pre-training wall-clock / number of pre-training images

Every command validates its inputs (model folder, split, labels that fit the task) before any work,
and writes --json, a Markdown table and plots into --out when given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medflip.errors import UserError
from medflip.evaluate.tasks import resolve_task


def _open_split(cache_dir, split: str):
    from medflip.data.cache import open_cache

    cache = open_cache(cache_dir, split)
    if len(cache) == 0:
        raise UserError(f"split {split!r} of {cache_dir} is empty")
    return cache


def _load(args):
    """Validate model folder and cache split first (cheap), then load the model."""
    from medflip.model.medflip import read_model_config

    read_model_config(Path(args.model))
    return _open_split(args.cache, args.split)


def _task_images(cache, keep):
    """The task's rows of a cache split, read lazily from the memory map."""
    from medflip.evaluate.supervised import IndexedImages

    return IndexedImages(cache.images, keep)


def _write_outputs(args, name: str, metrics: dict, table: str) -> None:
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(metrics, indent=2))
        (out / f"{name}.md").write_text(table + "\n")
    print(table)


def _fmt(metrics: dict, key: str) -> str:
    lo, hi = metrics["ci95"][key]
    return f"{metrics[key]:.3f} ({lo:.3f}-{hi:.3f})"


def _prompts(args, names: list[str]) -> dict[str, list[str]]:
    """The task's class prompts: the user's --prompts file (it must name exactly the task's classes), else
    chexpert5: the seeded generator; binary: the fixed sets."""
    from medflip.evaluate.prompts import binary_prompts, chexpert_prompts, load_prompts

    if getattr(args, "prompts", None):
        return load_prompts(args.prompts, names)
    try:
        if args.task == "chexpert5":
            return chexpert_prompts(names, n_per_class=args.prompts_per_class, seed=args.seed)
        return binary_prompts(args.positive)
    except KeyError as e:
        raise UserError(str(e.args[0])) from e


def _device(args):
    from medflip.runtime import resolve_device

    return resolve_device(args.device)


def _load_model(args):
    from medflip.model.medflip import MedFLIP

    return MedFLIP.from_pretrained(args.model, map_location=_device(args)).eval()


def _run_pretraining_cache(model: str) -> tuple[str, str] | None:
    """(data.cache, data.split) of the run a model folder belongs to (RUN/model or RUN/checkpoints/step_N,
    next to RUN/config.json as `medflip pretrain` writes it), when that cache still exists."""
    here = Path(model).resolve()
    for run in (here.parent, here.parent.parent):
        cfg_path = run / "config.json"
        if not cfg_path.is_file():
            continue
        try:
            data = json.loads(cfg_path.read_text()).get("data") or {}
        except (OSError, ValueError, AttributeError):
            return None
        cache = data.get("cache") if isinstance(data, dict) else None
        if cache and (Path(cache) / "meta.json").is_file():
            return str(cache), str(data.get("split") or "train")
        return None
    return None


def _pretraining_overlap(args, eval_rows) -> dict | None:
    """Warn when the evaluation split shares patients or images with the model's pre-training split (a leak:
    CheXpert-5x200 inside CheXpert train). The pre-training cache is --train-cache [--train-split], else the
    one named in the model's run folder (RUN/config.json), when found."""
    if args.train_cache:
        source, split = (args.train_cache, args.train_split), "--train-cache"
    else:
        found = _run_pretraining_cache(args.model)
        if found is None:
            return None
        source, split = found, "the model's run config.json"
    from medflip.data.overlap import warn_overlap

    train = _open_split(*source)
    name = f"{source[0]} [{source[1]}]"
    o = warn_overlap(train.rows, eval_rows, f"pre-training split {name}", f"{args.cache} [{args.split}]")
    return {
        "pretraining": name,
        "from": split,
        "shared_patients": len(o.patients),
        "eval_images_of_shared_patients": o.eval_rows,
        "shared_images": o.images,
    }


def _zeroshot(args) -> int:
    from medflip.evaluate.plots import plot_confusion
    from medflip.evaluate.zeroshot import encode_images, zero_shot

    cache = _load(args)
    names, y, keep = resolve_task(cache.rows, args.task, args.positive)
    prompts = _prompts(args, names)
    leak = _pretraining_overlap(args, cache.rows)
    model = _load_model(args)
    emb = encode_images(
        model, _task_images(cache, keep), batch_size=args.batch_size, progress=True, precision=args.precision
    )
    m = zero_shot(model, None, y, prompts, image_embeds=emb, n_boot=args.bootstrap, seed=args.seed)
    m.update(task=args.task, split=args.split, model=str(args.model), prompt_seed=args.seed)
    if leak is not None:
        m["pretraining_overlap"] = leak
    table = "\n".join(
        [
            f"zero-shot {args.task} on {args.cache} [{args.split}], n = {m['n']}",
            "",
            "| metric | value (95% bootstrap CI) |",
            "|---|---|",
            *[f"| {k} | {_fmt(m, k)} |" for k in ("accuracy", "macro_f1", "auroc")],
        ]
    )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot_confusion(
            m["confusion"], m["classes"], Path(args.out) / "zeroshot_confusion.png", f"zero-shot {args.task}"
        )
    _write_outputs(args, "zeroshot", m, table)
    return 0


def _candidate_texts(args, cache, names: list[str]) -> tuple[list[str], np.ndarray, dict]:
    """Retrieval candidates grouped by class, the same count per class (medflip.evaluate.candidates)."""
    from medflip.evaluate.candidates import balanced_pick, sentence_candidates

    protocol: dict = {"seed": args.seed, "classes": names}
    if args.texts == "prompts":
        n = args.per_class or 10
        prompts = _prompts(argparse.Namespace(**{**vars(args), "prompts_per_class": n}), names)
        take = min(n, *(len(ps) for ps in prompts.values()))  # the fixed binary sets differ in size
        texts = [p for ps in prompts.values() for p in ps[:take]]
        cats = np.repeat(np.arange(len(names)), take)
        protocol.update(
            candidates="class prompts of the zero-shot prompt generator (the prompts are in `prompts`)",
            balanced=True,
            per_class=[take] * len(names),
            prompts={k: ps[:take] for k, ps in prompts.items()},
        )
        return texts, cats, protocol
    from medflip.data.streams import TextCorpus
    from medflip.data.texts import load_text_reports

    reports = (
        cache.rows["report"].fillna("").tolist()
        if args.texts == "paired"
        else load_text_reports(args.texts, "report")
    )
    corpus = TextCorpus.from_reports([r for r in reports if r.strip()])
    texts, cats, duplicates = sentence_candidates(
        corpus.sentences, corpus.sentence_labels, args.task, args.positive
    )
    if not texts:
        raise UserError(f"no report sentence in {args.texts!r} names exactly one class of task {args.task}")
    available = np.bincount(cats, minlength=len(names)).tolist()
    protocol.update(
        candidates=f"report sentences of {args.texts!r} whose labels name exactly one class of the task",
        duplicates_dropped=duplicates,
        available_per_class=available,
    )
    if args.per_class:
        pick, take = balanced_pick(cats, len(names), args.per_class, args.seed)
        texts, cats = [texts[i] for i in pick], cats[pick]
        protocol.update(balanced=True, per_class=[take] * len(names), requested_per_class=args.per_class)
        if take < args.per_class:
            print(
                f"retrieval: {take} candidate sentences per class (asked {args.per_class}; the rarest class has "
                f"{take}; available per class: {available})"
            )
    else:
        protocol.update(balanced=False, per_class=available)
    return texts, cats, protocol


def _retrieval(args) -> int:
    from medflip.evaluate.zeroshot import encode_images, retrieval

    cache = _load(args)
    names, y, keep = resolve_task(cache.rows, args.task, args.positive)
    texts, cats, protocol = _candidate_texts(args, cache, names)
    leak = _pretraining_overlap(args, cache.rows)
    model = _load_model(args)
    img = encode_images(
        model, _task_images(cache, keep), batch_size=args.batch_size, progress=True, precision=args.precision
    )
    txt = model.encode_text(texts).float().cpu()
    m = retrieval(img, y, txt, cats)
    m.update(task=args.task, split=args.split, classes=names, model=str(args.model), protocol=protocol)
    if leak is not None:
        m["pretraining_overlap"] = leak
    rows = [
        f"| {d} | "
        + " | ".join(f"{m[d][f'p@{k}']:.3f}" for k in (1, 2, 5, 10))
        + " | "
        + " | ".join(f"{m[d][f'r@{k}']:.3f}" for k in (1, 5, 10))
        + " |"
        for d in ("image_to_text", "text_to_image")
    ]
    per = protocol["per_class"]
    pool = f"{per[0]} per class" if protocol["balanced"] else f"not balanced: {per} per class"
    table = "\n".join(
        [
            f"retrieval {args.task}: {m['n_images']} images, {m['n_texts']} candidate texts ({pool})",
            "",
            "| direction | P@1 | P@2 | P@5 | P@10 | R@1 | R@5 | R@10 |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    _write_outputs(args, "retrieval", m, table)
    return 0


def _fractions(values: list[float]) -> list[float]:
    bad = [f for f in values if not 0 < f <= 1]
    if bad or not values:
        raise UserError(f"--fractions must be in (0, 1] (e.g. 0.01 0.1 1), got {values}")
    return sorted(set(values))


def _supervised(args, mode: str, probe_c: float | None = None, ft=None) -> int:
    """What probe and fine-tuning share: splits, task, leak check, the run, tables and plots."""
    from medflip.data.overlap import warn_overlap
    from medflip.evaluate.plots import plot_confusion
    from medflip.evaluate.supervised import plot_fractions, run_supervised
    from medflip.model.medflip import MedFLIP

    fractions = _fractions(args.fractions)
    train_cache_dir = args.train_cache or args.cache
    same = Path(train_cache_dir).resolve() == Path(args.cache).resolve() and args.train_split == args.split
    if same:
        raise UserError(
            f"--train-split and --split are both {args.split!r} of {args.cache}: scores would be measured on "
            "training images; pass another --split (or --train-cache)"
        )
    eval_cache = _load(args)
    train_cache = _open_split(train_cache_dir, args.train_split)
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
    device = _device(args)
    model = MedFLIP.from_pretrained(args.model, map_location=device)
    vision, size = model.vision, model.cfg.vision.image_size
    del model  # only the image encoder is evaluated
    res = run_supervised(
        mode,
        vision,
        size,
        _task_images(train_cache, keep_train),
        y_train,
        _task_images(eval_cache, keep_eval),
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
                f"| {r['fraction'] * 100:g}% | {r['n_train']} | {_fmt(r, 'accuracy')} | {_fmt(r, 'macro_f1')} "
                f"| {_fmt(r, 'auroc')} |"
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
    _write_outputs(args, mode, res, table)
    return 0


def _probe(args) -> int:
    return _supervised(args, "probe", probe_c=None if args.C == "auto" else float(args.C))


def _finetune(args) -> int:
    from medflip.evaluate.supervised import FinetuneConfig

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


def _efficiency(args) -> int:
    from medflip.evaluate import efficiency as eff

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
    cache = _open_split(args.cache, args.split)
    names, y, keep = resolve_task(cache.rows, args.task, args.positive)
    prompts = _prompts(args, names)
    device = _device(args)
    images = _task_images(cache, keep)
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
    _write_outputs(args, "efficiency", res, "\n".join(tables).rstrip())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model: zero-shot, retrieval, probe, fine-tune, efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evals = p.add_subparsers(dest="eval_command", metavar="EVAL")

    def common(q):
        q.add_argument(
            "--model", required=True, help="model folder (save_pretrained / a run's model/ or checkpoint)"
        )
        q.add_argument("--cache", required=True, help="image cache folder (medflip data cache)")
        q.add_argument("--split", default="test")
        q.add_argument("--task", default="chexpert5", choices=["chexpert5", "binary"])
        q.add_argument("--positive", help="positive class of a binary task (e.g. Pneumonia, COVID-19)")
        q.add_argument("--seed", type=int, default=0, help="prompt sampling / bootstrap seed")
        q.add_argument("--batch-size", type=int, default=64)
        q.add_argument("--device", default="auto")
        q.add_argument(
            "--precision",
            default="auto",
            choices=["auto", "bf16", "fp32"],
            help="image encoding: auto = bf16 on CUDA, fp32 elsewhere; bf16 is 2-3x faster on AVX512-BF16 CPUs",
        )
        q.add_argument("--json", help="write the metrics here")
        q.add_argument("--out", help="folder for the Markdown table, JSON and plots")

    def pretraining_cache(q):
        q.add_argument(
            "--train-cache",
            help="the model's pre-training cache: warn when the evaluation split shares patients with it "
            "(default: the cache named in the model's run folder, RUN/config.json, when there is one)",
        )
        q.add_argument("--train-split", default="train", help="split of --train-cache that was trained on")

    z = evals.add_parser("zeroshot", help="zero-shot classification (prompt ensembles)")
    common(z)
    z.add_argument("--prompts-per-class", type=int, default=10)
    z.add_argument(
        "--prompts",
        help="JSON/YAML file: class -> list of prompts, exactly the task's classes (replaces the built-in sets)",
    )
    z.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    pretraining_cache(z)
    z.set_defaults(func=_zeroshot)
    r = evals.add_parser(
        "retrieval",
        help="image<->text retrieval, Precision@K / Recall@K by category",
        description="Category-level retrieval as in the paper: the candidate texts are grouped by class, "
        "the same number per class (--per-class), so chance P@K is 1 / classes for every query. The "
        "protocol used is written into the JSON (`protocol`).",
    )
    common(r)
    r.add_argument(
        "--texts",
        default="paired",
        help="candidates: paired (the split's reports) | iu | CSV/JSONL with a report column | prompts "
        "(the class prompt generator; for sets without reports such as CheXpert-5x200)",
    )
    r.add_argument(
        "--per-class",
        type=int,
        default=200,
        help="candidate texts per class, seeded (default 200; fewer when the rarest class has fewer, "
        "all classes alike); 0: every candidate sentence, not balanced",
    )
    pretraining_cache(r)
    r.set_defaults(func=_retrieval)

    def supervised(q):
        q.add_argument("--train-split", default="train", help="split the probe / fine-tuning trains on")
        q.add_argument(
            "--train-cache",
            help="cache of the training split (default: --cache); a patient in both splits is warned about",
        )
        q.add_argument(
            "--fractions",
            type=float,
            nargs="+",
            default=[0.01, 0.1, 1.0],
            help="fractions of the training split (class-stratified, seeded, >= 1 image per class)",
        )
        q.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")

    lp = evals.add_parser(
        "probe",
        help="linear probe on frozen image features at data fractions",
        description="Logistic regression (scikit-learn, L-BFGS) on the frozen image encoder's "
        "pooled features of --train-split, scored on --split.",
    )
    common(lp)
    supervised(lp)
    lp.add_argument("--C", default="auto", help="inverse L2 strength; auto: 3-fold CV over 1e-3..10")
    lp.set_defaults(func=_probe)
    ft = evals.add_parser(
        "finetune",
        help="fine-tune the image encoder + a linear head at data fractions",
        description="Full fine-tuning (AdamW, warmup + cosine, augmentation) of the image "
        "encoder with a linear head on --train-split, scored on --split.",
    )
    common(ft)
    supervised(ft)
    ft.add_argument("--epochs", type=int, default=5)
    ft.add_argument("--min-steps", type=int, default=50, help="at least this many steps (small fractions)")
    ft.add_argument("--train-batch-size", type=int, default=32)
    ft.add_argument("--lr", type=float, default=1e-4, help="image encoder learning rate")
    ft.add_argument("--head-lr", type=float, default=1e-3)
    ft.add_argument("--weight-decay", type=float, default=0.05)
    ft.add_argument("--no-augment", action="store_true")
    ft.set_defaults(func=_finetune)

    e = evals.add_parser(
        "efficiency",
        help="zero-shot accuracy vs pre-training wall-clock / number of pre-training images",
        description=EFFICIENCY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "--time-runs",
        nargs="+",
        default=[],
        metavar="[LABEL=]RUN",
        help="run folders: every checkpoint is evaluated, x = its training wall-clock",
    )
    e.add_argument(
        "--data-runs",
        nargs="+",
        default=[],
        metavar="[LABEL=]RUN",
        help="run folders pre-trained on subsets: the final model is evaluated",
    )
    e.add_argument(
        "--samples",
        type=int,
        nargs="+",
        help="pre-training images of each --data-runs run "
        "(default: from the run's config.json: its cache split size x data.fraction)",
    )
    e.add_argument(
        "--max-checkpoints",
        type=int,
        default=0,
        help="evaluate at most this many checkpoints per run, evenly spaced (0: all)",
    )
    e.add_argument("--cache", required=True, help="image cache folder with the evaluation split")
    e.add_argument("--split", default="test")
    e.add_argument("--task", default="chexpert5", choices=["chexpert5", "binary"])
    e.add_argument("--positive", help="positive class of a binary task")
    e.add_argument("--prompts-per-class", type=int, default=10)
    e.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples per model for the 95%% CIs"
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="write the results here")
    e.add_argument("--out", help="folder for the Markdown tables, JSON and PNG plots")
    e.set_defaults(func=_efficiency)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


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
