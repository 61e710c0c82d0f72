"""`medflip pretrain`: MedFLIP pre-training from an image cache and a text source."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from medflip.config import add_config_flags, config_from_args
from medflip.data.cache import open_cache
from medflip.data.texts import load_text_reports  # noqa: F401  (re-exported: older imports)
from medflip.data.views import IndexedImages
from medflip.errors import UserError
from medflip.evaluate.metrics import classification_metrics
from medflip.evaluate.prompts import binary_prompts, chexpert_prompts, load_prompts
from medflip.evaluate.tasks import resolve_task
from medflip.evaluate.zeroshot import class_embeddings, encode_images
from medflip.runtime import resolve_device
from medflip.train.config import PretrainConfig
from medflip.train.distributed import finish_distributed, is_main_process
from medflip.train.run import cache_meta, cache_preprocessing, train_from_config  # noqa: F401  (re-exported)

DESCRIPTION = """Pre-train a MedFLIP model.

Images come from a cache built by `medflip data cache` (--data.cache DIR, --data.split train). Texts:
  --data.texts paired   each image's own report (manifest column `report`): paired training
  --data.texts iu       the Indiana University reports bundled with torchxrayvision, decoupled
                        (MedCLIP's recipe for image-only datasets such as CheXpert or Kermany)
  --data.texts FILE     any CSV / JSONL with a report column (--data.text_column), decoupled
Text labels come from medflip's report labeler; image labels from the manifest's 14 label columns.

Examples:
  medflip pretrain --data.cache cache/ --data.texts iu --train.steps 2000 --train.out runs/kermany
  medflip pretrain --config my.yaml --train.mask_ratio 0.75
  medflip pretrain --config my.yaml --resume        # continue from the last checkpoint of train.out
"""


def build_validator(cfg, device):
    """`--train.eval_every N`: a callable(model) -> zero-shot {accuracy, macro_f1, auroc} on the validation
    split, for the loop to call on rank 0. Built here (the command layer) so the loop needs no evaluation
    code; the split, task and prompts are checked now, before any training step."""
    tc = cfg.train
    if tc.eval_every <= 0:
        return None
    cache_dir = tc.eval_cache or cfg.data.cache
    if not cache_dir:
        raise UserError("--train.eval_every needs --train.eval_cache (or --data.cache)")
    if cache_dir == cfg.data.cache and tc.eval_split == cfg.data.split:
        raise UserError(
            f"--train.eval_split {tc.eval_split!r} is the training split of {cache_dir}: "
            "validation would score training images; pass another --train.eval_split or --train.eval_cache"
        )
    cache = open_cache(cache_dir, tc.eval_split)
    if tc.eval_task not in ("chexpert5", "binary"):
        raise UserError(f"--train.eval_task must be chexpert5 or binary, got {tc.eval_task!r}")
    print(f"validation every {tc.eval_every} steps on {cache_dir} [{tc.eval_split}]:")
    names, y, keep = resolve_task(cache.rows, tc.eval_task, tc.eval_positive or None)
    if tc.eval_prompts:
        prompts = load_prompts(tc.eval_prompts, names)
    elif tc.eval_task == "chexpert5":
        prompts = chexpert_prompts(names, n_per_class=10, seed=0)
    else:
        prompts = binary_prompts(tc.eval_positive)
    images = IndexedImages(cache.images, keep)

    def validate(model) -> dict[str, float]:
        with torch.no_grad():
            emb = encode_images(model, images, precision=tc.precision)
            cls = class_embeddings(model, prompts)
            scale = model.logit_scale.detach().clamp(max=np.log(100)).exp().cpu().float()
            probs = (scale * emb @ cls.t()).softmax(-1).numpy()
        return classification_metrics(y, probs)

    return validate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pre-train a MedFLIP model (masked ViT + text encoder)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="continue from the latest checkpoint in --train.out, or from checkpoint folder PATH; the config "
        "must match the checkpoint's (only --train.steps may grow)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's checkpoints/model in --train.out"
    )
    p.add_argument("--no-progress", action="store_true")
    add_config_flags(p, PretrainConfig)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    cfg = config_from_args(PretrainConfig, args).resolved()
    validate = build_validator(cfg, resolve_device(cfg.train.device))  # checked before any training step
    run, _ = train_from_config(
        cfg, resume=args.resume, progress=not args.no_progress, validate=validate, overwrite=args.overwrite
    )
    if is_main_process():  # under torchrun, rank 0 alone reports
        print(f"done: {run / 'model'} (log: {run / 'log.csv'}, checkpoints: {run / 'checkpoints'})")
    finish_distributed()
    return 0
