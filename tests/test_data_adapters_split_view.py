"""RSNA gets a seeded patient-disjoint split at import; --frontal-only filters by the recorded view
(MIMIC's ViewPosition from mimic-cxr-2.0.0-metadata.csv) and is refused where a dataset records none."""

from __future__ import annotations

import pandas as pd
import pytest

from medflip.cli import main
from medflip.data.manifest import read_manifest
from medflip.data.splits import check_disjoint
from test_data_adapters import make_mimic, make_rsna


def test_rsna_import_assigns_a_seeded_patient_disjoint_split(tmp_path, cxr):
    root = make_rsna(tmp_path / "rsna", cxr, n_pos=10, n_normal=10, n_other=2)
    out = tmp_path / "rsna.csv"
    assert main(["data", "import", "rsna-pneumonia", "--root", str(root), "--out", str(out)]) == 0
    df = read_manifest(out, resolve_paths=False)
    assert set(df["split"]) == {"train", "val", "test"}
    assert df["split"].value_counts().to_dict() == {
        "train": 14,
        "val": 3,
        "test": 3,
    }  # 0.7 / 0.15 / 0.15 of 20
    check_disjoint(df)
    again = tmp_path / "again.csv"
    assert main(["data", "import", "rsna-pneumonia", "--root", str(root), "--out", str(again)]) == 0
    assert out.read_bytes() == again.read_bytes()  # seeded: the same split every time
    other = tmp_path / "other.csv"
    argv = ["data", "import", "rsna-pneumonia", "--root", str(root), "--out", str(other)]
    assert main([*argv, "--seed", "1", "--fractions", "0.5,0.25,0.25"]) == 0
    assert read_manifest(other, resolve_paths=False)["split"].value_counts()["train"] == 10
    assert main([*argv, "--fractions", "0.5,0.5"]) == 2  # three fractions needed: a clear error


def test_mimic_frontal_only_uses_view_position(tmp_path, cxr, stub_labeler, capsys):
    root = make_mimic(tmp_path / "mimic", cxr)
    allv, front = tmp_path / "all.csv", tmp_path / "front.csv"
    assert main(["data", "import", "mimic-cxr", "--root", str(root), "--out", str(allv)]) == 0
    assert (
        main(["data", "import", "mimic-cxr", "--root", str(root), "--out", str(front), "--frontal-only"]) == 0
    )
    a, f = read_manifest(allv, resolve_paths=False), read_manifest(front, resolve_paths=False)
    meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str)
    frontal_ids = set(meta.loc[meta["ViewPosition"].isin(["PA", "AP"]), "dicom_id"])
    assert {p.rsplit("/", 1)[1][:-4] for p in f["path"]} == frontal_ids
    assert len(a) == 4 and len(f) == 3 and set(f["view"]) == {"PA", "AP"}
    assert "dropped {'LATERAL': 1}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["covid", "kermany", "folder"])
def test_frontal_only_refused_without_views(tmp_path, name, capsys):
    argv = [
        "data",
        "import",
        name,
        "--root",
        str(tmp_path),
        "--out",
        str(tmp_path / "m.csv"),
        "--frontal-only",
    ]
    assert main(argv) == 2
    assert "records no view" in capsys.readouterr().err
