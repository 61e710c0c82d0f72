"""The demo's data: real IU report text (labelled by medflip's labeler) and synthetic phantom images.

Held out: reports whose id is a multiple of 7. Their labels drive the test phantoms (the 5 CheXpert
competition classes, each test image positive for exactly one) and their sentences are the retrieval
candidates. Training is class-balanced on both streams: for each competition class as many image label
vectors (from training reports) as normal/other ones, half of them where that class is the only competition
finding (as in the test set); the text stream is balanced the same way, sentence by sentence, by the
library's `data.balance_text` (medflip.data.sources).

`write_demo_dataset` puts the demo's data on disk as any dataset: the phantoms as PNG files with a manifest,
cached by `medflip.data.build_cache` (what `medflip data cache` runs; splits train and test), and the
training reports as a text corpus CSV (a `report` column, what `--data.texts FILE` reads).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medflip.data.cache import build_cache
from medflip.data.manifest import write_manifest
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
    dc, seed = cfg.demo, cfg.train.seed
    rng = np.random.default_rng(seed)

    train_ids = np.flatnonzero(~held)
    rep = corpus_all.report_labels
    task_of = single_class(rep, COMPETITION_TASKS)
    chosen = rng.permutation(
        balanced_rows(rep, train_ids, dc.images_per_class, rng, single_share=dc.single_class_share)
    )

    test_ids = np.flatnonzero(held)
    test_labels, test_y = [], []
    for k, _name in enumerate(COMPETITION_TASKS):
        ids = test_ids[task_of[test_ids] == k]
        if len(ids) == 0:  # no held-out report of this class: a label vector with only that class
            vec = np.zeros((1, len(OBSERVATIONS)), np.float32)
            vec[0, OBSERVATIONS.index(COMPETITION_TASKS[k])] = 1
            rows = np.repeat(vec, dc.test_per_class, 0)
        else:
            rows = rep[np.resize(ids, dc.test_per_class)]
        test_labels.append(rows)
        test_y += [k] * dc.test_per_class
    test_labels = np.concatenate(test_labels)

    t1 = time.perf_counter()
    train_images = render_phantoms(rep[chosen] if train else rep[chosen][:0], seed=seed, size=dc.render_size)
    test_masks: list[dict[str, np.ndarray]] = []  # where each finding was drawn (grounding ground truth)
    test_images = render_phantoms(test_labels, seed=seed + 10_000, size=dc.render_size, masks=test_masks)
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
        "train_reports": [reports[i].text for i in train_ids],
        "test_images": test_images,
        "test_labels": test_labels,
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


def write_demo_dataset(data: dict, folder: Path, progress: bool = True) -> tuple[Path, Path]:
    """Write the demo's images as a dataset + image cache and its training reports as a corpus CSV.

    folder/images/{train,test}/NNNNN.png, folder/manifest.csv, folder/cache/ (built by `build_cache`),
    folder/reports.csv. Returns (cache folder, reports CSV). A rerun replaces what an earlier run wrote.
    """
    images_dir = folder / "images"
    if images_dir.exists():
        shutil.rmtree(images_dir)
    rows = []
    for split, images, labels in (
        ("train", data["train_images"], data["train_labels"]),
        ("test", data["test_images"], data["test_labels"]),
    ):
        (images_dir / split).mkdir(parents=True)
        task_of = single_class(labels, COMPETITION_TASKS)
        for i, (pixels, vec) in enumerate(zip(images, labels)):
            path = f"images/{split}/{i:05d}.png"
            Image.fromarray(pixels).save(folder / path, compress_level=1)  # lossless: the cache reads it back
            rows.append(
                {
                    "path": path,
                    "source": "medflip-demo-phantom",
                    "patient_id": f"{split}{i:05d}",
                    "split": split,
                    "class": COMPETITION_TASKS[task_of[i]] if task_of[i] >= 0 else "",
                    **{obs: int(v > 0) for obs, v in zip(OBSERVATIONS, vec)},
                }
            )
    manifest = write_manifest(pd.DataFrame(rows), folder / "manifest.csv")
    size = int(data["train_images"].shape[-1])
    build_cache(manifest, folder / "cache", size=size, workers=0, overwrite=True, progress=progress)
    texts = folder / "reports.csv"
    pd.DataFrame({"report": data["train_reports"]}).to_csv(texts, index=False)
    return folder / "cache", texts
