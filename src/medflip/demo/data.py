"""The demo's data: real IU report text (labelled by medflip's labeler) and synthetic phantom images.

Held out: reports whose id is a multiple of 7. Their labels drive the test phantoms (the 5 CheXpert
competition classes, each test image positive for exactly one) and their sentences are the retrieval
candidates. Training is class-balanced on both streams: for each competition class as many image label
vectors (from training reports) and as many sentences (from training reports' sentences) as normal/other
ones, half of them where that class is the only competition finding (as in the test set).
"""

from __future__ import annotations

import time

import numpy as np

from medflip.data.streams import TextCorpus, balanced_rows
from medflip.demo.config import DemoConfig
from medflip.demo.phantom import render_phantoms
from medflip.labeler.iu_reports import load_iu_reports
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS, single_class

HOLDOUT_MODULUS = 7


def build_demo_data(cfg: DemoConfig, progress: bool = True, train: bool = True) -> dict:
    """Label the IU reports, choose training and test label vectors, render phantoms.
    train=False renders only the held-out test phantoms (re-scoring a trained demo model)."""
    t0 = time.perf_counter()
    reports = [r for r in load_iu_reports() if r.text]
    held = np.array([r.id % HOLDOUT_MODULUS == 0 for r in reports])
    corpus_all = TextCorpus.from_reports([r.text for r in reports])
    t_label = time.perf_counter() - t0
    rng = np.random.default_rng(cfg.seed)

    train_ids = np.flatnonzero(~held)
    rep = corpus_all.report_labels
    task_of = single_class(rep, COMPETITION_TASKS)
    chosen = rng.permutation(
        balanced_rows(rep, train_ids, cfg.images_per_class, rng, single_share=cfg.single_class_share)
    )
    # The text stream is balanced the same way, sentence by sentence (TextCorpus.balanced_sentences says why;
    # only 28 training reports mention consolidation).
    train_corpus = corpus_all.subset(train_ids).balanced_sentences(
        cfg.images_per_class, rng, single_share=cfg.single_class_share
    )

    test_ids = np.flatnonzero(held)
    test_labels, test_y = [], []
    for k, _name in enumerate(COMPETITION_TASKS):
        ids = test_ids[task_of[test_ids] == k]
        if len(ids) == 0:  # no held-out report of this class: a label vector with only that class
            vec = np.zeros((1, len(OBSERVATIONS)), np.float32)
            vec[0, OBSERVATIONS.index(COMPETITION_TASKS[k])] = 1
            rows = np.repeat(vec, cfg.test_per_class, 0)
        else:
            rows = rep[np.resize(ids, cfg.test_per_class)]
        test_labels.append(rows)
        test_y += [k] * cfg.test_per_class
    test_labels = np.concatenate(test_labels)

    t1 = time.perf_counter()
    train_images = render_phantoms(
        rep[chosen] if train else rep[chosen][:0], seed=cfg.seed, size=cfg.render_size
    )
    test_masks: list[dict[str, np.ndarray]] = []  # where each finding was drawn (grounding ground truth)
    test_images = render_phantoms(test_labels, seed=cfg.seed + 10_000, size=cfg.render_size, masks=test_masks)
    t_render = time.perf_counter() - t1

    # Retrieval candidates: held-out sentences that name exactly one competition class.
    texts, cats = [], []
    for i in test_ids:
        sent_cat = single_class(corpus_all.sentence_labels[i], COMPETITION_TASKS)
        for s, c in zip(corpus_all.sentences[i], sent_cat):
            if c >= 0:
                texts.append(s)
                cats.append(int(c))
    return {
        "train_images": train_images,
        "train_labels": rep[chosen],
        "train_corpus": train_corpus,
        "test_images": test_images,
        "test_y": np.array(test_y),
        "test_masks": test_masks,
        "retrieval_texts": texts,
        "retrieval_cats": np.array(cats),
        "info": {
            "reports": len(reports),
            "train_reports": int((~held).sum()),
            "heldout_reports": int(held.sum()),
            "train_images": int(len(chosen)),
            "test_images": int(len(test_y)),
            "retrieval_texts": len(texts),
            "label_seconds": round(t_label, 2),
            "render_seconds": round(t_render, 2),
        },
    }
