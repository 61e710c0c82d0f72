"""Where a pre-training run's data comes from: the report corpus (`load_text_reports`, in data/texts.py), the
optional class-balanced sentence stream (`balance_text_corpus`) and the batches themselves (`build_batches`),
all from the `data` section of a PretrainConfig."""

from __future__ import annotations

import numpy as np

from medflip.data.cache import open_cache
from medflip.data.overlap import warn_cache_overlap
from medflip.data.streams import DecoupledBatches, TextCorpus
from medflip.data.texts import load_text_reports
from medflip.data.views import subset_cache
from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

__all__ = ["balance_text_corpus", "build_batches", "load_text_reports"]


def balance_text_corpus(
    corpus, per_class: int, classes, paired: bool, seed: int, text_mode: str = "sentence"
):
    """The class-balanced sentence corpus of `--data.balance_text`, with a line on what it could draw from."""
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


def build_batches(cfg, device) -> DecoupledBatches:
    """The cache split + text corpus named by cfg.data, as seeded decoupled (or paired) batches.

    cfg: a medflip.train.PretrainConfig (its data, loss.uncertain, model.vision.image_size and train.seed are
    read). Every way of building a run (pretrain, demo, bench, study) goes through here.
    """
    dc = cfg.data
    if not dc.cache:
        raise UserError("no images: pass --data.cache DIR (a folder written by `medflip data cache`)")
    cache = open_cache(dc.cache, dc.split)
    if any(dc.eval_caches):  # leak check: evaluation images of training patients (medflip.data.overlap)
        warn_cache_overlap(cache.rows, f"{dc.cache} [{dc.split}]", [c for c in dc.eval_caches if c])
    if dc.fraction != 1.0:  # data-efficiency runs: a seeded random subset (images, rows, labels alike)
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
