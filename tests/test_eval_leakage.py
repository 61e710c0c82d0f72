"""Evaluation patients never silently reach pre-training: `data import chexpert --exclude`, the overlap
check, and the warning `medflip pretrain` prints when its cache shares patients with an evaluation cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medflip.cli import main
from medflip.data.manifest import read_manifest
from medflip.data.overlap import overlap, warn_overlap
from medflip.observations import COMPETITION_TASKS
from test_data_adapters import make_chexpert
from test_eval_supervised import chexpert5_rows, class_images, write_cache


def test_chexpert_exclude_drops_the_5x200_patients(tmp_path, cxr, capsys):
    rows = []
    for t in COMPETITION_TASKS:
        rows += [("Frontal", "AP", {**dict.fromkeys(COMPETITION_TASKS, "0.0"), t: "1.0"})] * 4
    root = make_chexpert(tmp_path, cxr, rows)
    c5, train, clean = tmp_path / "c5x200.csv", tmp_path / "train.csv", tmp_path / "clean.csv"
    assert (
        main(["data", "import", "chexpert-5x200", "--root", str(root), "--out", str(c5), "--per-class", "2"])
        == 0
    )
    assert main(["data", "import", "chexpert", "--root", str(root), "--out", str(train)]) == 0
    capsys.readouterr()
    assert (
        main(["data", "import", "chexpert", "--root", str(root), "--out", str(clean), "--exclude", str(c5)])
        == 0
    )
    out = capsys.readouterr().out
    held, full, kept = (read_manifest(p) for p in (c5, train, clean))
    assert overlap(full, held).patients  # the leak the option exists for: 5x200 comes from train.csv
    assert not overlap(kept, held) and len(kept) == len(full) - len(held)
    assert set(kept["patient_id"]) == set(full["patient_id"]) - set(held["patient_id"])
    assert f"dropped {len(held)} images of {len(held)} patients" in out


def test_overlap_counts_patients_and_images(capsys):
    train = pd.DataFrame({"patient_id": ["a", "b", "c"], "path": ["/a1", "/b1", "/c1"]})
    ev = pd.DataFrame({"patient_id": ["b", "b", "d", ""], "path": ["/b1", "/b2", "/d1", "/c1"]})
    o = warn_overlap(train, ev, "train", "eval")
    # patient "b" twice; the row without a patient id falls back to its path as its own key, but its image
    # is a training image
    assert o.patients == ["b"] and o.eval_rows == 2 and o.images == 2
    err = capsys.readouterr().err
    assert "share 1 patient(s) (b)" in err and "2 of 4 evaluation images" in err
    assert not warn_overlap(train, ev[ev["patient_id"] == "d"], "train", "eval")
    assert capsys.readouterr().err == ""


def test_pretrain_warns_on_an_evaluation_cache_with_training_patients(tmp_path, capsys):
    from medflip.data.sources import build_batches
    from medflip.train.config import PretrainConfig

    y = np.arange(6) % 5
    tr_rows = chexpert5_rows(y, "train")
    for r, c in zip(tr_rows, y):
        r["report"] = f"There is {COMPETITION_TASKS[int(c)].lower()}."
    ev_rows = chexpert5_rows(y[:3], "test")
    ev_rows[1]["patient_id"] = tr_rows[4]["patient_id"]  # one evaluation image of a training patient
    train = write_cache(tmp_path / "train", {"train": (class_images(y), tr_rows)})
    ev = write_cache(tmp_path / "eval", {"test": (class_images(y[:3]), ev_rows)})
    cfg = PretrainConfig()
    cfg.data.cache, cfg.data.batch_size = str(train), 2
    cfg.model.vision.image_size = 32
    build_batches(cfg, "cpu")
    assert "WARNING" not in capsys.readouterr().err
    cfg.data.eval_caches = (str(ev),)
    build_batches(cfg, "cpu")
    err = capsys.readouterr().err
    assert f"share 1 patient(s) ({tr_rows[4]['patient_id']})" in err and "1 of 3 evaluation images" in err


@pytest.mark.parametrize("flag", ["--data.eval_caches"])
def test_pretrain_flag_exists(flag, capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert flag in capsys.readouterr().out
