"""Manifest format: columns, round trip, validation errors, relative paths; patient-disjoint splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medflip.data.manifest import MANIFEST_COLUMNS, conform, read_manifest, validate_manifest, write_manifest
from medflip.data.splits import check_disjoint, patient_split
from medflip.errors import UserError
from medflip.observations import OBSERVATIONS


def _frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"img{i}.png" for i in range(n)],
            "source": "t",
            "patient_id": ["a", "b", "b"][:n],
            "report": ["NA", "", "Cardiomegaly."][:n],
            "Cardiomegaly": [1, None, -1][:n],
            "Edema": ["0", "", "1.0"][:n],
            "extra": ["x", "y", "z"][:n],
        }
    )


def test_columns_are_the_documented_ones():
    assert MANIFEST_COLUMNS[:8] == (
        "path",
        "source",
        "patient_id",
        "study_id",
        "view",
        "split",
        "class",
        "report",
    )
    assert MANIFEST_COLUMNS[8:] == OBSERVATIONS


def test_round_trip_keeps_values_blanks_text_and_extras(tmp_path):
    p = write_manifest(_frame(), tmp_path / "m.csv")
    header = p.read_text().splitlines()[0].split(",")
    assert header[: len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS) and header[-1] == "extra"
    df = read_manifest(p)
    assert df["report"].tolist() == ["NA", "", "Cardiomegaly."]  # "NA" is text, not a missing value
    assert df["Cardiomegaly"].tolist()[0] == 1 and pd.isna(df["Cardiomegaly"].iloc[1])
    assert df["Cardiomegaly"].iloc[2] == -1 and df["Edema"].tolist()[0] == 0 and df["Edema"].iloc[2] == 1
    assert str(df["Cardiomegaly"].dtype) == "Int8"
    assert df["path"].iloc[0] == str(tmp_path.resolve() / "img0.png")  # relative -> next to the manifest
    assert df["extra"].tolist() == ["x", "y", "z"]
    again = write_manifest(read_manifest(p, resolve_paths=False), tmp_path / "m2.csv")
    assert again.read_bytes() == p.read_bytes()  # idempotent


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns=["Edema"]), "missing columns: Edema"),
        (lambda d: d.assign(Edema=[2, 0, 0]), "'Edema'"),
        (lambda d: d.assign(split=["train", "validation", ""]), "split must be one of"),
        (lambda d: d.assign(path=["a", "", "c"]), "empty path in rows 1"),
    ],
)
def test_validation_lists_problems(mutate, message):
    df = conform(_frame())
    with pytest.raises(UserError, match=message):
        validate_manifest(mutate(df.astype(object)))


def test_read_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,source\nx.png,t\n")
    with pytest.raises(UserError, match="missing columns"):
        read_manifest(bad)
    with pytest.raises(UserError, match="not found"):
        read_manifest(tmp_path / "nope.csv")


def test_parquet_needs_pyarrow_or_round_trips(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pyarrow"):
            write_manifest(_frame(), tmp_path / "m.parquet")
        return
    write_manifest(_frame(), tmp_path / "m.parquet")
    assert read_manifest(tmp_path / "m.parquet")["Cardiomegaly"].iloc[2] == -1


def _patients(n_images: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, max(1, n_images // 3), n_images)
    return pd.DataFrame({"path": [f"{i}.png" for i in range(n_images)], "patient_id": [f"p{p}" for p in pid]})


def test_patient_split_is_disjoint_seeded_and_close_to_fractions():
    df = _patients(3000, 0)
    out = patient_split(df, (0.8, 0.1, 0.1), seed=1)
    check_disjoint(out)
    share = out["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.8) < 0.01 and abs(share["val"] - 0.1) < 0.01
    assert out["split"].tolist() == patient_split(df, seed=1)["split"].tolist()
    assert out["split"].tolist() != patient_split(df, seed=2)["split"].tolist()
    shuffled = df.sample(frac=1.0, random_state=3)  # row order must not matter
    assert patient_split(shuffled, seed=1)["split"].sort_index().tolist() == out["split"].tolist()


def test_patient_split_falls_back_to_path_and_checks_fractions():
    df = pd.DataFrame({"path": ["a", "b", "c", "d"], "patient_id": ["", "", "x", "x"]})
    out = patient_split(df, (0.5, 0.5, 0.0), seed=0)
    assert out.loc[2, "split"] == out.loc[3, "split"] and "test" not in set(out["split"])
    with pytest.raises(UserError, match="sum to 1"):
        patient_split(df, (0.5, 0.2, 0.2))
    with pytest.raises(UserError, match="more than one split"):
        check_disjoint(df.assign(split=["train", "val", "train", "test"]))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), seed=st.integers(0, 10), f=st.floats(0.1, 0.9))
def test_patient_split_property(n, seed, f):
    out = patient_split(_patients(n, seed), (f, (1 - f) / 2, (1 - f) / 2), seed=seed)
    check_disjoint(out)
    assert set(out["split"]) <= {"train", "val", "test"} and len(out) == n
