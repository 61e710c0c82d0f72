"""`medflip data import | split | cache | bench` end to end on a small Kermany-layout fixture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medflip.cli import main
from medflip.data.adapters import ADAPTERS, DESCRIPTIONS
from medflip.data.cache import open_cache


def _kermany(root, cxr):
    for k in range(6):
        cxr.jpeg(root / "train" / "NORMAL" / f"IM-{k:04d}-0001.jpeg", 80, 100, seed=k)
        cxr.jpeg(root / "train" / "PNEUMONIA" / f"person{k}_bacteria_{k}.jpeg", 90, 120, seed=10 + k)
    return root


def test_help_lists_commands_and_datasets(capsys):
    with pytest.raises(SystemExit):
        main(["data", "import", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in DESCRIPTIONS)
    assert set(ADAPTERS) == set(DESCRIPTIONS) and all(callable(f) for f in ADAPTERS.values())
    for sub in ("cache", "split", "bench"):
        with pytest.raises(SystemExit):
            main(["data", sub, "--help"])
    assert main(["data"]) == 2


def test_import_split_cache_bench(tmp_path, cxr, capsys):
    root = _kermany(tmp_path / "kermany", cxr)
    m = tmp_path / "k.csv"
    assert main(["data", "import", "kermany", "--root", str(root), "--out", str(m)]) == 0
    first = m.read_bytes()
    assert main(["data", "import", "kermany", "--root", str(root), "--out", str(m)]) == 0
    assert m.read_bytes() == first  # idempotent
    assert main(["data", "split", str(m)]) == 2  # the official split is there: refuse without --overwrite
    assert "already has a split" in capsys.readouterr().err
    assert main(["data", "split", str(m), "--overwrite", "--fractions", "0.5,0.25,0.25", "--seed", "3"]) == 0
    df = pd.read_csv(m)
    assert df.groupby("patient_id")["split"].nunique().max() == 1
    c = tmp_path / "cache"
    assert main(["data", "cache", str(m), "--out", str(c), "--size", "32", "--workers", "1"]) == 0
    assert main(["data", "cache", str(m), "--out", str(c), "--size", "32"]) == 0
    assert "up to date" in capsys.readouterr().out
    total = sum(len(open_cache(c, s)) for s in ("train", "val", "test") if (c / f"{s}.npy").exists())
    assert total == 12
    assert (
        main(
            [
                "data",
                "bench",
                str(c),
                "--seconds",
                "0.05",
                "--batch",
                "4",
                "--build-images",
                "3",
                "--source-size",
                "256",
                "--size",
                "32",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "augmented 32px images/s" in out and "images/s per core" in out


def test_bad_rows_error_or_rejects_file(tmp_path, cxr, capsys):
    root = _kermany(tmp_path / "kermany", cxr)
    cxr.jpeg(root / "train" / "NORMAL" / "scan_without_id.jpeg")
    m = tmp_path / "k.csv"
    assert main(["data", "import", "kermany", "--root", str(root), "--out", str(m)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "scan_without_id.jpeg" in err and "--skip-bad" in err
    assert not m.exists()
    assert main(["data", "import", "kermany", "--root", str(root), "--out", str(m), "--skip-bad"]) == 0
    assert "skipped 1 bad rows" in capsys.readouterr().err
    rejects = pd.read_csv(tmp_path / "k.rejects.csv")
    assert rejects["reason"].str.contains("no Kermany patient id").all() and len(rejects) == 1
    # a corrupt image passes import (it exists) and is caught by the cache build
    bad = root / "train" / "PNEUMONIA" / "person0_bacteria_0.jpeg"
    bad.write_bytes(bad.read_bytes()[:100])
    c = tmp_path / "cache"
    assert main(["data", "cache", str(m), "--out", str(c), "--size", "16", "--workers", "0"]) == 2
    assert "person0_bacteria_0.jpeg" in capsys.readouterr().err
    assert (
        main(["data", "cache", str(m), "--out", str(c), "--size", "16", "--workers", "0", "--skip-bad"]) == 0
    )
    assert "skipped 1 unreadable" in capsys.readouterr().err
    assert len(open_cache(c, "train")) == 11
    assert pd.read_csv(c / "rejects.csv")["path"].str.endswith("person0_bacteria_0.jpeg").all()
    assert np.asarray(open_cache(c, "train").images).max() > 0
