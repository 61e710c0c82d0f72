"""What the `medflip eval` commands share: opening splits and models, prompts, outputs, overlap warnings."""

from __future__ import annotations

import json
from pathlib import Path

from medflip.data.cache import open_cache
from medflip.data.overlap import warn_overlap
from medflip.errors import UserError
from medflip.evaluate.prompts import binary_prompts, chexpert_prompts, load_prompts
from medflip.evaluate.supervised import IndexedImages
from medflip.model.medflip import MedFLIP, read_model_config
from medflip.runtime import resolve_device


def open_split(cache_dir, split: str):
    cache = open_cache(cache_dir, split)
    if len(cache) == 0:
        raise UserError(f"split {split!r} of {cache_dir} is empty")
    return cache


def load(args):
    """Validate model folder and cache split first (cheap), then load the model."""
    read_model_config(Path(args.model))
    return open_split(args.cache, args.split)


def task_images(cache, keep):
    """The task's rows of a cache split, read lazily from the memory map."""
    return IndexedImages(cache.images, keep)


def write_outputs(args, name: str, metrics: dict, table: str) -> None:
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(metrics, indent=2))
        (out / f"{name}.md").write_text(table + "\n")
    print(table)


def fmt(metrics: dict, key: str) -> str:
    lo, hi = metrics["ci95"][key]
    return f"{metrics[key]:.3f} ({lo:.3f}-{hi:.3f})"


def task_prompts(args, names: list[str]) -> dict[str, list[str]]:
    """The task's class prompts: the user's --prompts file (it must name exactly the task's classes), else
    chexpert5: the seeded generator; binary: the fixed sets."""
    if getattr(args, "prompts", None):
        return load_prompts(args.prompts, names)
    try:
        if args.task == "chexpert5":
            return chexpert_prompts(names, n_per_class=args.prompts_per_class, seed=args.seed)
        return binary_prompts(args.positive)
    except KeyError as e:
        raise UserError(str(e.args[0])) from e


def eval_device(args):
    return resolve_device(args.device)


def load_model(args):
    return MedFLIP.from_pretrained(args.model, map_location=eval_device(args)).eval()


def run_pretraining_cache(model: str) -> tuple[str, str] | None:
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


def pretraining_overlap(args, eval_rows) -> dict | None:
    """Warn when the evaluation split shares patients or images with the model's pre-training split (a leak:
    CheXpert-5x200 inside CheXpert train). The pre-training cache is --train-cache [--train-split], else the
    one named in the model's run folder (RUN/config.json), when found."""
    if args.train_cache:
        source, split = (args.train_cache, args.train_split), "--train-cache"
    else:
        found = run_pretraining_cache(args.model)
        if found is None:
            return None
        source, split = found, "the model's run config.json"

    train = open_split(*source)
    name = f"{source[0]} [{source[1]}]"
    o = warn_overlap(train.rows, eval_rows, f"pre-training split {name}", f"{args.cache} [{args.split}]")
    return {
        "pretraining": name,
        "from": split,
        "shared_patients": len(o.patients),
        "eval_images_of_shared_patients": o.eval_rows,
        "shared_images": o.images,
    }
