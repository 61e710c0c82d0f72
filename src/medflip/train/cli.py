"""`medflip pretrain`: MedFLIP pre-training from an image cache and a text source."""

from __future__ import annotations

import argparse
from pathlib import Path

from medflip.data.texts import load_text_reports  # noqa: F401  (re-exported: older imports)
from medflip.errors import UserError

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


def balance_text_corpus(
    corpus, per_class: int, classes, paired: bool, seed: int, text_mode: str = "sentence"
):
    """The class-balanced sentence corpus of `--data.balance_text`, with a line on what it could draw from."""
    import numpy as np

    from medflip.observations import OBSERVATIONS

    if paired:
        raise UserError(
            "--data.balance_text needs decoupled text (--data.texts iu or a corpus file): "
            "paired reports belong to their images"
        )
    if text_mode != "sentence":
        raise UserError("--data.balance_text balances sentences: use it with --data.text_mode sentence")
    unknown = [c for c in classes if c not in OBSERVATIONS]
    if unknown:
        raise UserError(f"--data.balance_classes: unknown {unknown}; valid: {', '.join(OBSERVATIONS)}")
    labels = np.concatenate(corpus.sentence_labels)
    counts = {c: int((labels[:, OBSERVATIONS.index(c)] > 0).sum()) for c in classes}
    print(
        f"balanced text: {per_class} sentences per class from "
        + ", ".join(f"{c} {n}" for c, n in counts.items())
        + f" positive sentences, plus {per_class} at random (of {len(labels)})"
    )
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        print(f"balanced text: no sentence is positive for {', '.join(missing)}; those classes get none")
    return corpus.balanced_sentences(per_class, np.random.default_rng([seed, 3]), tuple(classes))


def build_batches(cfg, device):
    """The cache split + text corpus named by cfg.data, as seeded decoupled (or paired) batches."""
    from medflip.data.cache import open_cache
    from medflip.data.streams import DecoupledBatches, TextCorpus

    dc = cfg.data
    if not dc.cache:
        raise UserError("no images: pass --data.cache DIR (a folder written by `medflip data cache`)")
    cache = open_cache(dc.cache, dc.split)
    if any(dc.eval_caches):  # leak check: evaluation images of training patients (medflip.data.overlap)
        from medflip.data.overlap import warn_cache_overlap

        warn_cache_overlap(cache.rows, f"{dc.cache} [{dc.split}]", [c for c in dc.eval_caches if c])
    if dc.fraction != 1.0:  # data-efficiency runs: a seeded random subset (images, rows, labels alike)
        from medflip.evaluate.efficiency import subset_cache

        cache = subset_cache(cache, dc.fraction, cfg.train.seed)
    paired = dc.texts == "paired"
    if paired:
        reports = cache.rows["report"].fillna("").astype(str).tolist()
        missing = sum(1 for r in reports if not r.strip())
        if missing:
            raise UserError(
                f"--data.texts paired: {missing} of {len(reports)} images in {dc.cache} ({dc.split}) have no report; "
                "use --data.texts iu or a text corpus file (decoupled training)"
            )
    else:
        reports = load_text_reports(dc.texts, dc.text_column)
    corpus = TextCorpus.from_reports(reports, uncertain=cfg.loss.uncertain)
    if dc.balance_text > 0:
        corpus = balance_text_corpus(
            corpus, dc.balance_text, dc.balance_classes, paired, cfg.train.seed, dc.text_mode
        )
    return DecoupledBatches(
        cache.images,
        cache.labels(cfg.loss.uncertain),
        corpus,
        dc.batch_size,
        cfg.model.vision.image_size,
        seed=cfg.train.seed,
        paired=paired,
        text_mode=dc.text_mode,
        augment=dc.augment_cfg if dc.augment else None,
        device=device,
    )


def cache_meta(cache_dir: str) -> dict:
    """The cache's meta.json (size, resize policy, manifest sha256, split counts)."""
    import json

    path = Path(cache_dir) / "meta.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{cache_dir} is not a medflip image cache ({path}: {e})") from e


def cache_preprocessing(cache_dir: str):
    """How the training images were prepared (cache size + resize policy), for the model's config.json."""
    from medflip.model.preprocess import PreprocessConfig

    meta = cache_meta(cache_dir)
    return PreprocessConfig(
        cache_size=int(meta["size"]), resize=str(meta.get("resize", "fit-longer-side-pad-black"))
    )


def build_validator(cfg, device):
    """`--train.eval_every N`: a callable(model) -> zero-shot {accuracy, macro_f1, auroc} on the validation
    split, for the loop to call on rank 0. Built here (the command layer) so the loop needs no evaluation
    code; the split, task and prompts are checked now, before any training step."""
    tc = cfg.train
    if tc.eval_every <= 0:
        return None
    import numpy as np
    import torch

    from medflip.data.cache import open_cache
    from medflip.evaluate.metrics import classification_metrics
    from medflip.evaluate.prompts import binary_prompts, chexpert_prompts, load_prompts
    from medflip.evaluate.supervised import IndexedImages
    from medflip.evaluate.tasks import resolve_task
    from medflip.evaluate.zeroshot import class_embeddings, encode_images

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
    from medflip.config import add_config_flags
    from medflip.train.config import PretrainConfig

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
    import torch

    from medflip.config import config_from_args
    from medflip.model.medflip import MedFLIP
    from medflip.train.config import PretrainConfig
    from medflip.train.loop import pretrain, resolve_device

    cfg = config_from_args(PretrainConfig, args)
    if cfg.loss.recon_weight > 0:
        cfg.model.reconstruction_decoder = True
    if cfg.loss.mlm_weight > 0 or cfg.train.text_mask_ratio > 0:
        cfg.model.mlm_head = True
    device = resolve_device(cfg.train.device)
    batches = build_batches(cfg, device)
    torch.manual_seed(cfg.train.seed)
    model = MedFLIP(cfg.model)
    model.preprocess_cfg = cache_preprocessing(cfg.data.cache)  # saved in config.json: medflip.load replays it
    validate = build_validator(cfg, device)
    run = pretrain(
        model,
        batches,
        cfg,
        resume=args.resume,
        progress=not args.no_progress,
        validate=validate,
        overwrite=args.overwrite,
    )
    if (run / "model" / "config.json").is_file():
        from medflip.train.card import write_model_card

        meta = cache_meta(cfg.data.cache)
        data = {
            "cache": cfg.data.cache,
            "split": cfg.data.split,
            "images": meta.get("splits", {}).get(cfg.data.split, "?"),
            "manifest_sha256": meta.get("manifest_sha256", "unknown"),
            "texts": cfg.data.texts,
        }
        write_model_card(run / "model", cfg, run, data)
    print(f"done: {run / 'model'} (log: {run / 'log.csv'}, checkpoints: {run / 'checkpoints'})")
    return 0
