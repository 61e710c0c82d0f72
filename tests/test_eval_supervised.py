"""Supervised evaluation: stratified fractions, linear probe on separable features, fine-tuning, the
`medflip eval probe | finetune` commands and their errors (raised before any model is loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medflip.cli import main
from medflip.data.cache import FORMAT, open_cache
from medflip.data.manifest import write_manifest
from medflip.evaluate.supervised import (
    FinetuneConfig,
    IndexedImages,
    extract_features,
    finetune,
    run_supervised,
    stratified_subset,
)
from medflip.model.medflip import MedFLIP, ModelConfig
from medflip.model.text import TextConfig
from medflip.model.vision import MaskedViT, VisionConfig
from medflip.observations import COMPETITION_TASKS

SIZE = 32


def class_images(y: np.ndarray, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """uint8 [N, size, size]: class c has mean intensity 30 + 45 c, plus uniform noise (+-20).

    Intensity, not position: a randomly initialised ViT's class token averages over patches, so only
    what survives that average (brightness, texture) separates the classes without training."""
    rng = np.random.default_rng(seed)
    base = 30 + 45 * np.asarray(y, dtype=np.int64)[:, None, None]
    return np.clip(base + rng.integers(-20, 21, (len(y), size, size)), 0, 255).astype(np.uint8)


def chexpert5_rows(y: np.ndarray, split: str) -> list[dict]:
    rows = []
    for i, c in enumerate(y):
        row = {
            "path": f"/x/{split}/{i}.png",
            "source": "synthetic",
            "patient_id": f"{split}{i}",
            "split": split,
        }
        row.update(dict.fromkeys(COMPETITION_TASKS, 0))
        row[COMPETITION_TASKS[int(c)]] = 1
        row["class"] = COMPETITION_TASKS[int(c)]
        rows.append(row)
    return rows


def write_cache(root: Path, splits: dict[str, tuple[np.ndarray, list[dict]]], size: int = SIZE) -> Path:
    """A complete medflip image cache folder written directly (no image decoding)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (images, rows) in splits.items():
        np.save(root / f"{name}.npy", images.astype(np.uint8).reshape(-1, size, size))
        df = pd.DataFrame(rows) if rows else pd.DataFrame({"path": [], "source": [], "patient_id": []})
        write_manifest(df, root / f"{name}.rows.csv")
    meta = {
        "format": FORMAT,
        "size": size,
        "complete": True,
        "splits": {n: len(rows) for n, (_, rows) in splits.items()},
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def chexpert5_cache(root: Path, n_train: int = 50, n_test: int = 25, drop_class_in_train: int | None = None):
    y_tr = np.arange(n_train) % 5
    if drop_class_in_train is not None:
        y_tr = y_tr[y_tr != drop_class_in_train]
    y_te = np.arange(n_test) % 5
    return write_cache(
        root,
        {
            "train": (class_images(y_tr, 0), chexpert5_rows(y_tr, "train")),
            "test": (class_images(y_te, 1), chexpert5_rows(y_te, "test")),
        },
    )


def tiny_model() -> MedFLIP:
    torch.manual_seed(0)
    return MedFLIP(
        ModelConfig(
            vision=VisionConfig(size="tiny", image_size=SIZE), text=TextConfig(freeze_layers=5), embed_dim=32
        )
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model().save_pretrained(tmp_path_factory.mktemp("model") / "m")


# ------------------------------------------------------------------------------------------ sampling
def test_stratified_subset_counts_seeded_nested():
    y = np.array([0] * 200 + [1] * 50 + [2] * 3)
    s1 = stratified_subset(y, 0.01, seed=3)
    assert np.bincount(y[s1], minlength=3).tolist() == [2, 1, 1]  # round(2), round(0.5) -> >= 1, >= 1
    s10 = stratified_subset(y, 0.1, seed=3)
    assert np.bincount(y[s10], minlength=3).tolist() == [20, 5, 1]
    assert set(s1) <= set(s10)  # nested for one seed
    assert np.array_equal(s10, np.sort(s10)) and len(set(s10)) == len(s10)
    assert np.array_equal(stratified_subset(y, 0.1, seed=3), s10)
    assert not np.array_equal(stratified_subset(y, 0.1, seed=4), s10)
    assert np.array_equal(stratified_subset(y, 1.0), np.arange(len(y)))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(Exception, match="fraction"):
            stratified_subset(y, bad)


def test_indexed_images_reads_the_right_rows():
    base = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)
    idx = np.array([7, 2, 9, 4])
    view = IndexedImages(base, idx)
    assert len(view) == 4 and view.shape == (4, 2, 2)
    assert np.array_equal(view[1:3], base[[2, 9]])
    assert np.array_equal(view[np.array([3, 0])], base[[4, 7]])
    assert np.array_equal(view[2], base[9])


# ------------------------------------------------------------------------------------------ probe / fine-tune
def tiny_vision() -> MaskedViT:
    torch.manual_seed(0)
    return MaskedViT(VisionConfig(size="tiny", image_size=SIZE))


def test_probe_separates_separable_classes():
    vision = tiny_vision()
    y_tr, y_te = np.arange(100) % 5, np.arange(50) % 5
    res = run_supervised(
        "probe",
        vision,
        SIZE,
        class_images(y_tr, 0),
        y_tr,
        class_images(y_te, 1),
        y_te,
        list(COMPETITION_TASKS),
        fractions=(0.1, 1.0),
        n_boot=100,
    )
    small, full = res["results"]
    assert small["n_train"] == 10 and small["train_support"] == [2] * 5
    assert full["n_train"] == 100
    assert full["accuracy"] >= 0.9 and full["macro_f1"] >= 0.9 and full["auroc"] >= 0.95
    lo, hi = full["ci95"]["accuracy"]
    assert lo <= full["accuracy"] <= hi
    assert np.asarray(full["confusion"]).sum() == 50 and full["support"] == [10] * 5
    assert full["C"] > 0


def test_probe_features_are_the_frozen_pooled_tokens():
    from medflip.data.augment import normalize

    vision = tiny_vision()
    imgs = class_images(np.arange(6) % 5)
    feats = extract_features(vision, imgs, SIZE, torch.device("cpu"), batch_size=4)
    vision.eval()
    with torch.no_grad():
        ref = vision(normalize(torch.from_numpy(imgs).unsqueeze(1), SIZE))[0].numpy()
    assert feats.shape == (6, vision.width)
    np.testing.assert_allclose(feats, ref, atol=1e-5)


def test_finetune_learns_and_leaves_the_encoder_untouched():
    vision = tiny_vision()
    before = {k: v.clone() for k, v in vision.state_dict().items()}
    y = np.arange(40) % 2
    imgs = class_images(y, 0)
    cfg = FinetuneConfig(epochs=1, min_steps=25, batch_size=16, lr=3e-4, head_lr=3e-3, augment=False)
    clf, info = finetune(vision, imgs, y, 2, SIZE, torch.device("cpu"), cfg)
    assert info["steps"] == 25 and np.isfinite(info["final_loss"]) and info["final_loss"] < 0.69
    assert all(torch.equal(before[k], v) for k, v in vision.state_dict().items())
    res = run_supervised(
        "finetune",
        vision,
        SIZE,
        imgs,
        y,
        class_images(y, 1),
        y,
        ["Normal", "Pneumonia"],
        fractions=(0.5,),
        n_boot=50,
        finetune_cfg=FinetuneConfig(epochs=1, min_steps=25, batch_size=16, lr=3e-4, head_lr=3e-3),
    )
    (r,) = res["results"]
    assert r["n_train"] == 20 and r["steps"] == 25 and r["accuracy"] >= 0.7


# ------------------------------------------------------------------------------------------ CLI
def test_cli_probe_writes_json_markdown_and_plots(tmp_path, model_dir, capsys):
    cache = chexpert5_cache(tmp_path / "cache")
    out, js = tmp_path / "out", tmp_path / "probe.json"
    argv = ["eval", "probe", "--model", str(model_dir), "--cache", str(cache), "--split", "test"]
    argv += [
        "--fractions",
        "0.2",
        "1",
        "--bootstrap",
        "50",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
        str(js),
    ]
    assert main(argv) == 0
    res = json.loads(js.read_text())
    assert res["mode"] == "probe" and res["classes"] == list(COMPETITION_TASKS)
    assert [r["fraction"] for r in res["results"]] == [0.2, 1.0]
    assert [r["n_train"] for r in res["results"]] == [10, 50]
    assert res["results"][-1]["accuracy"] >= 0.8
    for name in ("probe.md", "probe.json", "probe.png", "probe_confusion_100pct.png"):
        assert (out / name).is_file(), name
    md = (out / "probe.md").read_text()
    assert "| 20% | 10 |" in md and "| 100% | 50 |" in md
    assert "| data | training images | accuracy |" in capsys.readouterr().out


def test_cli_finetune_runs(tmp_path, model_dir):
    cache = chexpert5_cache(tmp_path / "cache", n_train=20, n_test=10)
    js = tmp_path / "ft.json"
    argv = ["eval", "finetune", "--model", str(model_dir), "--cache", str(cache), "--fractions", "1"]
    argv += ["--epochs", "1", "--min-steps", "3", "--train-batch-size", "8", "--bootstrap", "20"]
    argv += ["--device", "cpu", "--json", str(js)]
    assert main(argv) == 0
    (r,) = json.loads(js.read_text())["results"]
    assert r["steps"] == 3 and r["n_train"] == 20 and 0 <= r["accuracy"] <= 1


@pytest.fixture
def no_model_load(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the model was loaded before the inputs were validated")

    monkeypatch.setattr(MedFLIP, "from_pretrained", classmethod(fail))


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_cli_errors_before_work(tmp_path, model_dir, capsys, no_model_load):
    cache = chexpert5_cache(tmp_path / "cache", drop_class_in_train=2)
    base = ["eval", "probe", "--model", str(model_dir), "--cache", str(cache), "--device", "cpu"]
    # no positives of one class in the training split
    assert main(base) == 2
    err = _err(capsys)
    assert "no images of class(es) Consolidation" in err
    # empty split
    empty = write_cache(
        tmp_path / "empty",
        {
            "train": (np.zeros((0, SIZE, SIZE), np.uint8), []),
            "test": (np.zeros((0, SIZE, SIZE), np.uint8), []),
        },
    )
    assert main(["eval", "probe", "--model", str(model_dir), "--cache", str(empty)]) == 2
    assert "is empty" in _err(capsys)
    # not a model folder / another architecture
    assert main(["eval", "probe", "--model", str(tmp_path), "--cache", str(cache)]) == 2
    assert "not a medflip model folder" in _err(capsys)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (other / "model.safetensors").write_bytes(b"")
    assert main(["eval", "finetune", "--model", str(other), "--cache", str(cache)]) == 2
    assert "no MedFLIP architecture" in _err(capsys)
    # training on the evaluation split, bad fractions, binary task without --positive, missing split
    assert main([*base, "--train-split", "test"]) == 2
    assert "scores would be measured on training images" in _err(capsys)
    assert main([*base, "--fractions", "0", "1"]) == 2
    assert "--fractions must be in (0, 1]" in _err(capsys)
    assert main([*base, "--task", "binary"]) == 2
    assert "--positive" in _err(capsys)
    assert main([*base, "--split", "val"]) == 2
    assert "has no split 'val'" in _err(capsys)


def test_probe_and_finetune_help(capsys):
    for cmd in ("probe", "finetune", "efficiency"):
        with pytest.raises(SystemExit) as e:
            main(["eval", cmd, "--help"])
        assert e.value.code == 0
        assert "usage: medflip eval" in capsys.readouterr().out


def test_write_cache_helper_is_a_real_cache(tmp_path):
    c = open_cache(chexpert5_cache(tmp_path / "c", n_train=10, n_test=5), "train")
    assert len(c) == 10 and c.images.shape == (10, SIZE, SIZE)


def test_bootstrap_all_equals_per_metric_bootstrap():
    from medflip.evaluate.metrics import bootstrap_all, bootstrap_ci, classification_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    p = rng.dirichlet(np.ones(3), 40) + np.eye(3)[y] * 0.3
    got = bootstrap_all(y, p, n_boot=60, seed=5)
    for k in ("accuracy", "macro_f1", "auroc"):
        ref = bootstrap_ci(lambda i, k=k: classification_metrics(y[i], p[i])[k], len(y), n_boot=60, seed=5)
        np.testing.assert_allclose(got[k], ref)


def test_cli_zeroshot_and_retrieval_on_task_rows(tmp_path, model_dir):
    y_te = np.arange(12) % 5
    rows = chexpert5_rows(y_te, "test")
    for r, c in zip(rows, y_te):
        r["report"] = f"There is {COMPETITION_TASKS[int(c)].lower()}."
    rows.append(
        {**rows[0], "path": "/x/extra.png", "Cardiomegaly": 1, "report": "Normal."}
    )  # two classes: skipped
    imgs = class_images(np.append(y_te, 0), 1)
    cache = write_cache(tmp_path / "cache", {"test": (imgs, rows)})
    out = tmp_path / "out"
    base = ["--model", str(model_dir), "--cache", str(cache), "--device", "cpu", "--out", str(out)]
    assert main(["eval", "zeroshot", *base, "--prompts-per-class", "2", "--bootstrap", "20"]) == 0
    z = json.loads((out / "zeroshot.json").read_text())
    assert z["n"] == 12 and z["support"] == [3, 3, 2, 2, 2]
    assert (out / "zeroshot_confusion.png").is_file() and (out / "zeroshot.md").is_file()
    assert main(["eval", "retrieval", *base]) == 0
    r = json.loads((out / "retrieval.json").read_text())
    assert r["n_images"] == 12 and r["n_texts"] >= 5 and 0 <= r["p@1"] <= 1
