"""Image cache: pixels, rows, labels, idempotence, resume after interruption, bad images, workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import medflip.data.cache as cache_mod
from medflip.data.cache import build_cache, open_cache
from medflip.data.images import ImageReadError, load_square
from medflip.data.manifest import write_manifest
from medflip.errors import UserError


def _manifest(tmp_path, cxr, n=12, bad=()):
    rows = []
    for i in range(n):
        if i % 3 == 0:
            p = cxr.jpeg(tmp_path / "img" / f"{i}.jpg", 40 + i, 60, seed=i)
        elif i % 3 == 1:
            p = cxr.png(
                tmp_path / "img" / f"{i}.png",
                (np.arange(30 * 20).reshape(30, 20) * (i + 1) % 65535).astype(np.uint16),
            )
        else:
            p = cxr.dicom(
                tmp_path / "img" / f"{i}.dcm", np.full((16, 24), 100 * i), photometric="MONOCHROME1"
            )
        if i in bad:
            p.write_bytes(p.read_bytes()[:20])
        rows.append(
            {
                "path": str(p),
                "source": "t",
                "patient_id": f"p{i}",
                "split": "train" if i < n - 3 else "test",
                "class": "A" if i % 2 else "B",
                "Cardiomegaly": [1, 0, -1, None][i % 4],
                "No Finding": 0,
            }
        )
    m = tmp_path / "m.csv"
    write_manifest(pd.DataFrame(rows), m)
    return m, rows


def test_build_and_open(tmp_path, cxr):
    m, rows = _manifest(tmp_path, cxr)
    res = build_cache(m, tmp_path / "c", size=32, workers=0, progress=False)
    assert res.counts == {"train": 9, "test": 3} and res.built == 12 and res.rejected == 0
    c = open_cache(tmp_path / "c", "train")
    assert isinstance(c.images, np.memmap) and c.images.shape == (9, 32, 32) and c.images.dtype == np.uint8
    assert len(c) == 9 and c.rows["patient_id"].tolist() == [f"p{i}" for i in range(9)]
    for i in range(9):
        assert np.array_equal(c.images[i], load_square(rows[i]["path"], 32))
    lab = c.labels()
    assert lab.dtype == np.float32 and lab.shape == (9, 14)
    assert lab[:4, 2].tolist() == [1, 0, 1, 0]  # Cardiomegaly: 1, 0, -1 -> positive, blank -> 0
    assert c.labels("negative")[:4, 2].tolist() == [1, 0, 0, 0]
    ign = c.labels("ignore")[:4, 2]  # uncertain -> NaN: unknown, masked out of the label cosine
    assert ign[[0, 1, 3]].tolist() == [1, 0, 0] and np.isnan(ign[2])
    assert c.rows["class"].tolist()[:2] == ["B", "A"]
    with pytest.raises(UserError, match="no split 'val'"):
        open_cache(tmp_path / "c", "val")


def test_rebuild_is_a_no_op_and_other_manifest_needs_overwrite(tmp_path, cxr):
    m, _ = _manifest(tmp_path, cxr, n=6)
    build_cache(m, tmp_path / "c", size=16, workers=0, progress=False)
    before = (tmp_path / "c" / "train.npy").stat().st_mtime_ns
    again = build_cache(m, tmp_path / "c", size=16, workers=0, progress=False)
    assert again.up_to_date and again.built == 0
    assert (tmp_path / "c" / "train.npy").stat().st_mtime_ns == before
    with pytest.raises(UserError, match="--overwrite"):
        build_cache(m, tmp_path / "c", size=24, workers=0, progress=False)
    (tmp_path / "c" / "notes.csv").write_text("mine\n")  # a user's file in the cache folder survives
    res = build_cache(m, tmp_path / "c", size=24, workers=0, progress=False, overwrite=True)
    assert res.built == 6 and open_cache(tmp_path / "c", "train").images.shape[1:] == (24, 24)
    assert (tmp_path / "c" / "notes.csv").read_text() == "mine\n"


def test_interrupted_build_resumes(tmp_path, cxr, monkeypatch):
    m, rows = _manifest(tmp_path, cxr, n=12)
    monkeypatch.setattr(cache_mod, "CHUNK", 2)
    calls = {"n": 0}
    real = cache_mod.load_square

    def flaky(path, size):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the 6th image
        return real(path, size)

    monkeypatch.setattr(cache_mod, "load_square", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache(m, tmp_path / "c", size=16, workers=0, progress=False)
    with pytest.raises(UserError, match="incomplete"):
        open_cache(tmp_path / "c", "test")
    monkeypatch.setattr(cache_mod, "load_square", real)
    counted = {"n": 0}

    def counting(path, size):
        counted["n"] += 1
        return real(path, size)

    monkeypatch.setattr(cache_mod, "load_square", counting)
    res = build_cache(m, tmp_path / "c", size=16, workers=0, progress=False)
    # chunks of 2: the test split (3 rows, 2 chunks) was built first, then 1 train chunk (images 4-5);
    # the 6th image broke the next chunk, so 5 images are kept and only the other 7 are decoded again
    assert counted["n"] == res.built == 12 - 5
    c = open_cache(tmp_path / "c", "train")
    for i in range(9):
        assert np.array_equal(c.images[i], real(rows[i]["path"], 16))
    assert not list((tmp_path / "c").glob("*.status.npy")) and not list(
        (tmp_path / "c").glob("*.building.npy")
    )


def test_bad_image_fails_with_file_and_row_or_goes_to_rejects(tmp_path, cxr):
    m, rows = _manifest(tmp_path, cxr, n=9, bad=(3, 5))
    with pytest.raises(ImageReadError) as e:
        build_cache(m, tmp_path / "c", size=16, workers=0, progress=False)
    assert rows[3]["path"] in str(e.value) and "row 3" in str(e.value) and "--skip-bad" in str(e.value)
    res = build_cache(m, tmp_path / "c", size=16, workers=0, progress=False, skip_bad=True)
    assert res.rejected == 2 and res.counts == {"train": 4, "test": 3}
    rej = pd.read_csv(res.rejects_path)
    assert rej.columns.tolist() == ["split", "manifest_row", "path", "reason"]
    assert rej["manifest_row"].tolist() == [3, 5] and rej["path"].tolist() == [
        rows[3]["path"],
        rows[5]["path"],
    ]
    assert rej["reason"].str.len().min() > 5
    c = open_cache(tmp_path / "c", "train")  # compacted: images and rows still aligned
    assert c.rows["patient_id"].tolist() == ["p0", "p1", "p2", "p4"]
    assert np.array_equal(c.images[3], load_square(rows[4]["path"], 16))


def test_parallel_workers_match_serial(tmp_path, cxr):
    m, _ = _manifest(tmp_path, cxr, n=40)
    build_cache(m, tmp_path / "a", size=16, workers=0, progress=False)
    build_cache(m, tmp_path / "b", size=16, workers=2, progress=False)
    for split in ("train", "test"):
        assert np.array_equal(
            open_cache(tmp_path / "a", split).images, open_cache(tmp_path / "b", split).images
        )


def test_unsplit_rows_go_to_all(tmp_path, cxr):
    p = cxr.jpeg(tmp_path / "x.jpg")
    write_manifest(pd.DataFrame({"path": [str(p)], "source": "t"}), tmp_path / "m.csv")
    res = build_cache(tmp_path / "m.csv", tmp_path / "c", size=8, workers=0, progress=False)
    assert res.counts == {"all": 1} and len(open_cache(tmp_path / "c", "all")) == 1
