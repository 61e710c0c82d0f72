"""Validation during training (--train.eval_every) and the model card written into every trained model/."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medflip.cli import main
from medflip.data.cache import build_cache
from medflip.data.manifest import conform, write_manifest
from medflip.observations import OBSERVATIONS

TINY = [
    "--model.vision.size", "tiny", "--model.vision.image_size", "32", "--model.embed_dim", "32",
    "--model.text.freeze_layers", "5", "--data.batch_size", "4", "--optim.warmup_steps", "1",
    "--train.log_every", "1", "--train.ckpt_every", "100", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """12 images with reports, train / val, Normal vs Pneumonia."""
    d = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        pneu = i % 2 == 1
        p = d / f"img{i}.png"
        Image.fromarray((rng.random((40, 30)) * 255).astype(np.uint8)).save(p)
        labels = dict.fromkeys(OBSERVATIONS, "")
        labels.update({"Pneumonia": 1, "No Finding": 0} if pneu else {"No Finding": 1, "Pneumonia": 0})
        rows.append(
            {
                "path": str(p),
                "source": "test",
                "patient_id": f"p{i}",
                "split": "val" if i >= 8 else "train",
                "class": "Pneumonia" if pneu else "Normal",
                "report": "Right lower lobe pneumonia." if pneu else "The lungs are clear.",
                **labels,
            }
        )
    write_manifest(conform(pd.DataFrame(rows)), d / "m.csv")
    build_cache(d / "m.csv", d / "cache", size=40, workers=0, progress=False)
    return d / "cache"


def test_validation_logged_and_card_written(cache, tmp_path, one_thread):
    out = tmp_path / "run"
    argv = ["pretrain", "--data.cache", str(cache), "--train.steps", "3", "--train.out", str(out), *TINY]
    argv += ["--train.eval_every", "2", "--train.eval_task", "binary", "--train.eval_positive", "Pneumonia"]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["val_accuracy"] == "" and rows[1]["val_accuracy"] != "" and rows[2]["val_auroc"] != ""
    acc = float(rows[2]["val_accuracy"])
    assert acc in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 validation images
    meta = json.loads((out / "model" / "config.json").read_text())
    assert meta["preprocess"]["cache_size"] == 40  # the cache geometry is recorded for medflip.load
    card = (out / "model" / "README.md").read_text()
    manifest_sha = json.loads((cache / "meta.json").read_text())["manifest_sha256"]
    assert "not for clinical use" in card.lower() and manifest_sha in card
    assert "steps: 3 of 3" in card and f"| accuracy | {rows[2]['val_accuracy']} |" in card
    assert "fit-longer-side-pad-black" in card and '"eval_every": 2' in card
    # the validation split must not be the training split
    bad = [
        *argv[:-6],
        "--train.eval_every",
        "1",
        "--train.eval_split",
        "train",
        "--train.out",
        str(tmp_path / "b"),
    ]
    assert main(bad) == 2


def test_card_without_validation(cache, tmp_path, one_thread):
    out = tmp_path / "run"
    assert (
        main(["pretrain", "--data.cache", str(cache), "--train.steps", "1", "--train.out", str(out), *TINY])
        == 0
    )
    card = (out / "model" / "README.md").read_text()
    assert "None recorded" in card and "steps: 1 of 1" in card


def test_validation_time_is_not_training_time(tmp_path, one_thread):
    """The loop's hook runs outside the timed step: a slow validate does not eat the wall-clock budget."""
    import torch

    from medflip.model.medflip import MedFLIP
    from test_train import make_batches, tiny_config, tiny_data

    cfg = tiny_config(tmp_path / "r", steps=2)
    cfg.train.eval_every = 1
    torch.manual_seed(0)
    model = MedFLIP(cfg.model)
    calls = []

    def slow_validate(m):
        calls.append(m.training)
        time.sleep(1.0)
        return {"accuracy": 0.5}

    t0 = time.perf_counter()
    from medflip.train.loop import pretrain

    pretrain(model, make_batches(cfg, tiny_data()), cfg, progress=False, validate=slow_validate)
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader((tmp_path / "r" / "log.csv").open()))
    assert len(calls) == 2 and [r["val_accuracy"] for r in rows] == ["0.5", "0.5"]
    assert float(rows[-1]["elapsed_s"]) < wall - 1.9
