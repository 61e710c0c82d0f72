"""Hostile and broken tables: the manifest reader and the CSV importer, fuzzed with hypothesis.

Seeded (derandomize) and bounded: 100 generated files of 20 rows for each reader, so 2,000 fuzzed rows
per reader per CI run. The property: every file is either read or refused with a UserError (the CLI's
one-line error, exit code 2), and bad rows are counted in the rejects file; never another exception.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from medflip.cli import main
from medflip.data.manifest import ID_COLUMNS, read_manifest
from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

ROWS = 20
FUZZ = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its whole example
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

cells = st.one_of(
    st.sampled_from(["", "1", "0", "-1", "1.0", "NaN", "nan", "NA", "null", "inf", "-0", "2", "yes", " 1 "]),
    st.text(max_size=12),
    st.text(alphabet='",\r\n\t;\x00\ufeff\u2028', max_size=6),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(str),
)
columns = st.lists(
    st.one_of(st.sampled_from(list(ID_COLUMNS) + list(OBSERVATIONS)), st.text(min_size=1, max_size=8)),
    min_size=1,
    max_size=len(ID_COLUMNS) + 4,
)


NASTY = ["", "1", "0", "-1", "1.0", "NaN", "nan", "NA", "null", "inf", "-0", "2", "yes", " 1 ", "x" * 100_000,
         "\ufeffpath", '"', "a,b", "line\nbreak", "cr\rlf\r\n", "\x00", "\u2028", "9" * 40]  # fmt: skip


def _csv(draw, cols: list[str], path_values: list[str] | None = None) -> bytes:
    """A CSV whose cells come from a hypothesis-drawn pool plus NASTY, placed by a drawn seed (cheap
    per row, so 20-row files stay fast while every value class appears)."""
    import random

    pool = draw(st.lists(cells, min_size=3, max_size=8)) + NASTY
    rng = random.Random(draw(st.integers(0, 2**32)))

    def field(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v

    rows = []
    for r in range(ROWS):
        values = [rng.choice(pool) for _ in cols]
        if path_values is not None and "path" in cols:
            values[cols.index("path")] = path_values[r % len(path_values)]
        if rng.random() < 0.1:  # a ragged row: missing or extra fields
            values = values[: rng.randint(0, len(values))] + [rng.choice(pool)] * rng.randint(0, 2)
        rows.append(",".join(field(v) for v in values))
    if rng.random() < 0.5:
        rows.append(rows[0])  # a duplicate row
    eol = rng.choice(["\n", "\r\n", "\r"])
    text = eol.join([",".join(field(c) for c in cols), *rows]) + eol
    data = (("\ufeff" if rng.random() < 0.5 else "") + text).encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        data += b"\xff\xfe invalid utf-8"
    return data


@FUZZ
@given(data=st.data())
def test_fuzzed_manifests_are_read_or_refused_clearly(tmp_path, data):
    cols = data.draw(columns)
    if data.draw(st.booleans()):  # mostly-valid headers reach the value checks
        cols = list(dict.fromkeys(list(ID_COLUMNS) + list(OBSERVATIONS) + cols))
    p = tmp_path / "m.csv"
    p.write_bytes(_csv(data.draw, cols))
    try:
        df = read_manifest(p)
    except UserError as e:
        assert str(e)  # a message, not a traceback
        return
    assert list(df.columns[: len(ID_COLUMNS)]) == list(ID_COLUMNS)
    assert all(str(df[o].dtype) == "Int8" for o in OBSERVATIONS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("ds")
    (root / "img").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 50, np.uint8)).save(root / "img" / f"{i}.png")
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside)
    os.symlink(outside, root / "img" / "link_out.png")
    return root


PATHS = ["img/0.png", "img/1.png", "./img/2.png", "img/3.png", "img/missing.png", "", "../../etc/passwd",
         "/etc/passwd", "img/link_out.png", "img/../img/0.png"]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_fuzzed_csv_imports_are_imported_or_refused_clearly(dataset, tmp_path_factory, data):
    cols = ["path"] + data.draw(
        st.lists(st.sampled_from(["report", "view", "split", *OBSERVATIONS[:4]]), max_size=4)
    )
    cols = list(dict.fromkeys(cols + data.draw(columns)))
    out = tmp_path_factory.mktemp("o")
    (dataset / "in.csv").write_bytes(_csv(data.draw, cols, PATHS))
    args = [
        "data",
        "import",
        "csv",
        "--root",
        str(dataset),
        "--csv",
        str(dataset / "in.csv"),
        "--out",
        str(out / "m.csv"),
    ]
    if "report" in cols and data.draw(st.booleans()):
        args += ["--report-col", "report"]
    if data.draw(st.booleans()):
        args.append("--skip-bad")
    rc = main(args)  # any exception other than a UserError propagates and fails the test
    assert rc in (0, 2)
    if rc == 0:
        df = read_manifest(out / "m.csv")
        inside = os.path.realpath(dataset)
        assert all(os.path.realpath(p).startswith(inside + os.sep) for p in df["path"])
        assert df["path"].is_unique


def _import(dataset: Path, tmp_path: Path, paths: list[str], *flags: str) -> tuple[int, Path]:
    pd.DataFrame({"path": paths}).to_csv(dataset / "in.csv", index=False)
    out = tmp_path / "m.csv"
    rc = main(["data", "import", "csv", "--root", str(dataset), "--csv", str(dataset / "in.csv"),
               "--out", str(out), *flags])  # fmt: skip
    return rc, out


@pytest.mark.parametrize("path", ["../" * 16 + "etc/passwd", "/etc/passwd", "img/link_out.png"])
def test_paths_outside_root_are_rejected(dataset, tmp_path, capsys, path):
    (tmp_path / "x").mkdir()
    rc, _ = _import(dataset, tmp_path / "x", ["img/0.png", path])
    err = capsys.readouterr().err
    assert rc == 2 and "outside --root" in err and "--allow-outside-root" in err
    rc, out = _import(dataset, tmp_path / "x", ["img/0.png", path], "--skip-bad")
    assert rc == 0 and len(read_manifest(out)) == 1
    rejects = pd.read_csv(out.with_name("m.rejects.csv"))
    assert len(rejects) == 1 and "outside --root" in rejects["reason"][0]


def test_allow_outside_root_accepts_them(dataset, tmp_path):
    (tmp_path / "x").mkdir()
    rc, out = _import(dataset, tmp_path / "x", ["img/0.png", "img/link_out.png"], "--allow-outside-root")
    assert rc == 0 and len(read_manifest(out)) == 2


def test_duplicate_images_are_counted_rejects(dataset, tmp_path):
    (tmp_path / "x").mkdir()
    rc, out = _import(dataset, tmp_path / "x", ["img/0.png", "img/1.png", "./img/0.png"], "--skip-bad")
    assert rc == 0 and len(read_manifest(out)) == 2
    assert "listed twice" in pd.read_csv(out.with_name("m.rejects.csv"))["reason"][0]
