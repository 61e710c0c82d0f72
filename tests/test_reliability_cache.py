"""The image cache under faults: kill -9 mid-build, a full disk, and files changed under a run."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medflip.data.cache as cache_mod
from medflip.data.cache import build_cache, open_cache
from medflip.data.manifest import write_manifest
from medflip.errors import UserError

WRAPPER = textwrap.dedent(
    """
    import os, sys, time
    import medflip.data.cache as c

    real = c._work

    def work(task):
        out = real(task)
        os.write(1, f"CHUNK {os.getpid()}\\n".encode())  # one write: workers do not interleave
        time.sleep(0.05)
        return out

    c._work = work
    c.CHUNK = 4
    from medflip.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _manifest(root: Path, n: int = 40, bad=(5, 22)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        p = root / "img" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        if i in bad:
            p.write_bytes(rng.bytes(300))  # not an image: a counted reject with --skip-bad
        else:
            Image.fromarray(rng.integers(0, 256, (30 + i, 40), dtype=np.uint8)).save(p)
        rows.append({"path": str(p), "patient_id": str(i), "split": "train" if i % 4 else "test"})
    write_manifest(pd.DataFrame(rows), root / "m.csv")
    return root / "m.csv"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_kill9_during_cache_build_then_rerun_is_byte_identical(tmp_path):
    m = _manifest(tmp_path)
    build_cache(m, tmp_path / "ref", size=32, workers=0, skip_bad=True, progress=False)
    wrapper = tmp_path / "w.py"
    wrapper.write_text(WRAPPER)
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    )
    args = [
        sys.executable,
        str(wrapper),
        "data",
        "cache",
        str(m),
        "--out",
        str(tmp_path / "c"),
        "--size",
        "32",
    ]
    args += ["--skip-bad", "--workers", "2"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    workers, seen = set(), 0
    for line in p.stdout:
        if line.startswith("CHUNK"):
            workers.add(int(line.split()[1]))
            seen += 1
            if seen == 4:  # some chunks done, others in flight
                os.kill(p.pid, signal.SIGKILL)
                break
    p.stdout.close()
    assert p.wait(timeout=60) == -signal.SIGKILL
    assert not (tmp_path / "c" / "train.npy").exists() and (tmp_path / "c" / "train.status.npy").exists()
    with pytest.raises(UserError, match="incomplete"):
        open_cache(tmp_path / "c", "train")
    deadline = time.time() + 10  # workers die with their parent (PR_SET_PDEATHSIG), not decode on as orphans
    while time.time() < deadline and any(os.path.exists(f"/proc/{w}") for w in workers):
        time.sleep(0.1)
    if sys.platform == "linux":
        alive = [w for w in workers if os.path.exists(f"/proc/{w}") and "Z" not in _state(w)]
        assert not alive, f"orphaned workers {alive}"
    r = subprocess.run(args[:1] + ["-m", "medflip.cli"] + args[2:], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipped 2 unreadable images" in r.stderr
    assert _files(tmp_path / "c") == _files(tmp_path / "ref")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_disk_full_during_the_build_is_a_clear_error_and_resumes(tmp_path, monkeypatch):
    m = _manifest(tmp_path, n=12, bad=())
    ref = build_cache(m, tmp_path / "ref", size=32, workers=0, progress=False)
    real_reserve = cache_mod._reserve

    def full(path, nbytes):
        if "test" in path.name:  # the second split: the first one is already decoded
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_reserve(path, nbytes)

    monkeypatch.setattr(cache_mod, "_reserve", full)
    with pytest.raises(UserError, match="stopped.*No space left.*rerun the same command to resume"):
        build_cache(m, tmp_path / "c", size=32, workers=0, progress=False)
    with pytest.raises(UserError, match="incomplete"):
        open_cache(tmp_path / "c", "train")
    monkeypatch.setattr(cache_mod, "_reserve", real_reserve)

    real_write = cache_mod.write_manifest  # now the disk fills while the rows files are written

    def full_rows(df, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cache_mod, "write_manifest", full_rows)
    with pytest.raises(UserError, match="No space left"):
        build_cache(m, tmp_path / "c", size=32, workers=0, progress=False)
    monkeypatch.setattr(cache_mod, "write_manifest", real_write)
    res = build_cache(m, tmp_path / "c", size=32, workers=0, progress=False)
    assert res.counts == ref.counts
    assert _files(tmp_path / "c") == _files(tmp_path / "ref")


def test_not_enough_space_is_refused_before_decoding(tmp_path, monkeypatch):
    m = _manifest(tmp_path, n=4, bad=())
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(UserError, match="not enough disk space.*needs 0.00 GB, 0.00 GB are free"):
        build_cache(m, tmp_path / "c", size=32, workers=0, progress=False)


@pytest.fixture
def built(tmp_path):
    m = _manifest(tmp_path, n=12, bad=())
    build_cache(m, tmp_path / "c", size=32, workers=0, progress=False)
    return m, tmp_path / "c"


def test_truncated_memmap_is_detected_at_open(built):
    _, c = built
    data = (c / "train.npy").read_bytes()
    (c / "train.npy").write_bytes(data[: -32 * 32])
    with pytest.raises(UserError, match="truncated or replaced.*rebuild"):
        open_cache(c, "train")


def test_replaced_memmap_of_the_same_size_is_detected(built):
    _, c = built
    a = np.load(c / "train.npy")
    np.save(c / "train.npy", 255 - a)  # same shape and size, other pixels
    with pytest.raises(UserError, match="content hash differs.*rebuild"):
        open_cache(c, "train")


def test_one_changed_pixel_is_found_by_the_full_check(built):
    m, c = built
    a = np.load(c / "train.npy")
    a[len(a) // 2, 16, 16] ^= 1  # outside the sampled blocks of a small file? the full hash catches it anyway
    np.save(c / "train.npy", a)
    with pytest.raises(UserError, match="changed|content hash"):
        open_cache(c, "train", verify=True)
    with pytest.raises(UserError, match="--overwrite"):  # a re-run of the build verifies fully too
        build_cache(m, c, size=32, workers=0, progress=False)
    assert build_cache(m, c, size=32, workers=0, progress=False, overwrite=True).built == 12
    open_cache(c, "train", verify=True)


def test_edited_rows_or_manifest_are_detected(built):
    m, c = built
    rows = (c / "train.rows.csv").read_text()
    (c / "train.rows.csv").write_text(rows.replace("\n1,", "\n2,", 1) + "")
    (c / "train.rows.csv").write_text(rows[:-1] + " \n")
    with pytest.raises(UserError, match="rows.csv was edited.*rebuild"):
        open_cache(c, "train")
    (c / "train.rows.csv").write_text(rows)
    open_cache(c, "train")
    m.write_text(m.read_text().replace(",train,", ",test,", 1))
    with pytest.raises(UserError, match="manifest .* was edited after caching.*rebuild"):
        open_cache(c, "train")
