"""Fixed-resolution uint8 image cache: decode once, train from a memory map.

Decoding a 2-3k px JPEG/DICOM costs milliseconds; reading a 224x224 uint8 slice from a memory map costs
microseconds. So `build_cache` decodes every manifest image once (parallel workers, JPEG DCT-domain
downscaling, aspect kept + black padding, see `images.fit_square`) into one ``.npy`` file per split, and the
training loader (`open_cache`) only memory-maps it.

Layout of a cache folder::

    meta.json            format, size, the manifest's sha256, per-split counts, complete flag
    {split}.npy          uint8 [N, size, size] (np.load(..., mmap_mode="r"))
    {split}.rows.csv     the N manifest rows, same order (ids, class, report, the 14 labels)
    rejects.csv          split, manifest_row, path, reason for each skipped image (--skip-bad)

Rows whose ``split`` is blank go to the split "all".

Resumable: while building, ``{split}.building.npy`` and ``{split}.status.npy`` (0 todo, 1 done, 2 bad; one
byte per row) are on disk; a status byte is set only after its pixels were written, so an interrupted build
(even kill -9) restarts where it stopped and ends byte-identical to an uninterrupted one. Idempotent: a
complete cache of the same manifest bytes and size is a no-op (after a full hash check of its files).

Disk space is reserved up front (`posix_fallocate`): a full disk is a clear error at the start of a split,
not a SIGBUS in a worker writing to a sparse memory map; any write error stops the build with the state
kept for a resume.

Integrity: meta.json records, per split, the size and sha256 of ``{split}.npy`` and ``{split}.rows.csv``.
`open_cache` checks the sizes, the rows hash, a sampled hash of the images (header + 17 blocks of 64 KiB;
a full hash on `verify=True` and on every re-run of `build_cache`), and that the source manifest, when it
is still at its recorded path, has the bytes the cache was built from. Any mismatch is an error that says
to rebuild.
"""

from __future__ import annotations

import ctypes
import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from medflip.data.cache_check import check_integrity, file_record, sha256_file
from medflip.data.images import ImageReadError, load_square
from medflip.data.manifest import label_values, read_manifest, write_manifest
from medflip.errors import UserError

FORMAT = "medflip-cache/1"
UNSPLIT = "all"
CHUNK = 32
TODO, DONE, BAD = 0, 1, 2


@dataclass
class BuildResult:
    """What a build did: per-split image counts, rejects, and the speed of this run."""

    out_dir: Path
    size: int
    counts: dict[str, int]
    rejected: int
    rejects_path: Path | None
    built: int  # images decoded by this run (0 when the cache was already complete)
    seconds: float
    workers: int
    up_to_date: bool = False
    per_split_rejected: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.built / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ImageCache:
    """One split of a cache: `images` uint8 [N, size, size] (memory-mapped), `rows` the manifest rows."""

    images: np.ndarray
    rows: pd.DataFrame
    size: int
    split: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def labels(self, uncertain: str = "positive") -> np.ndarray:
        """float32 [N, 14] label vectors (blank -> 0; -1 by the policy: positive -> 1, negative -> 0,
        ignore -> NaN, an unknown dimension the label cosine leaves out; see medflip.observations)."""
        if uncertain not in ("positive", "negative", "ignore"):
            raise ValueError(f"uncertain policy must be positive, negative or ignore, got {uncertain!r}")
        v = label_values(self.rows)
        out = v == 1
        if uncertain == "positive":
            out |= v == -1
        out = out.astype(np.float32)
        if uncertain == "ignore":
            out[v == -1] = np.nan
        return out


def _reserve(path: Path, nbytes: int) -> None:
    """Allocate a file's blocks now (see the module docstring); a no-op where the OS cannot."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def _die_with_parent() -> None:
    """Pool initializer (Linux): a worker dies with the build process, even on kill -9, instead of
    decoding on as an orphan."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _split_names(df: pd.DataFrame) -> pd.Series:
    return df["split"].where(df["split"] != "", UNSPLIT)


# ---------------------------------------------------------------- worker side (one memmap per process)
_OPEN: dict[str, np.ndarray] = {}


def _work(task: tuple[str, int, list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """Decode a chunk straight into the shared memory map; return (local index, "" or reason)."""
    target, size, items = task
    mm = _OPEN.get(target)
    if mm is None:
        mm = _OPEN[target] = np.load(target, mmap_mode="r+")
    out = []
    for i, path in items:
        try:
            mm[i] = load_square(path, size)
            out.append((i, ""))
        except ImageReadError as e:
            out.append((i, e.reason))
    return out


def _meta_path(out: Path) -> Path:
    return out / "meta.json"


def _read_meta(out: Path) -> dict | None:
    p = _meta_path(out)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(
            f"cache metadata {p} is unreadable ({e}); delete the folder or pass --overwrite"
        ) from e


def _write_meta(out: Path, meta: dict) -> None:
    tmp = _meta_path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, _meta_path(out))


def _wipe(out: Path) -> None:
    """Remove only files this module writes (the folder may hold the user's own files, e.g. the manifest)."""
    splits = {p.name[: -len(".rows.csv")] for p in out.glob("*.rows.csv")}
    splits |= {p.name.split(".")[0] for p in out.glob("*.building.npy")}
    doomed = [out / "meta.json", out / "meta.tmp", out / "rejects.csv", out / "rejects.partial.csv"]
    for s in splits:
        doomed += [
            out / f"{s}{suffix}"
            for suffix in (".npy", ".rows.csv", ".building.npy", ".status.npy", ".tmp.npy")
        ]
    for p in doomed:
        if p.is_file():
            p.unlink()


def build_cache(
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    size: int = 224,
    workers: int | None = None,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build (or resume, or confirm) the cache of a manifest at `size` px. See the module docstring.

    workers: processes decoding images (None: all cores; 0: in this process). Bad images raise an
    ImageReadError naming the file and manifest row, unless `skip_bad`: then they go to rejects.csv.
    """
    t0 = time.perf_counter()
    mpath, out = Path(manifest_path), Path(out_dir)
    if size < 8:
        raise UserError(f"cache size must be >= 8 px, got {size}")
    df = read_manifest(mpath)
    key = {"format": FORMAT, "size": int(size), "manifest_sha256": sha256_file(mpath)}
    out.mkdir(parents=True, exist_ok=True)
    meta = _read_meta(out)
    if meta is not None and any(meta.get(k) != v for k, v in key.items()):
        if not overwrite:
            raise UserError(
                f"{out} holds a cache of another manifest or size ({meta.get('size')} px); "
                "pass --overwrite to replace it, or choose another folder"
            )
        _wipe(out)
        meta = None
    workers = (os.cpu_count() or 1) if workers is None else max(0, int(workers))
    if meta is not None and meta.get("complete"):
        try:
            for s in meta["splits"]:
                check_integrity(out, meta, s, full=True)
        except UserError as e:
            if not overwrite:
                raise UserError(f"{e} (or pass --overwrite to this command)") from e
            _wipe(out)
            meta = None
    if meta is not None and meta.get("complete"):
        return BuildResult(
            out,
            size,
            dict(meta["splits"]),
            int(meta.get("rejected", 0)),
            out / "rejects.csv" if meta.get("rejected") else None,
            0,
            time.perf_counter() - t0,
            workers,
            up_to_date=True,
        )
    meta = {
        **key,
        "manifest": str(mpath.resolve()),
        "resize": "fit-longer-side-pad-black",
        "complete": False,
        "splits": {},
    }
    _write_meta(out, meta)

    splits = _split_names(df)
    _check_space(out, splits, size)
    rejects_partial = out / "rejects.partial.csv"
    built, rejected = 0, {}
    try:
        for split in sorted(splits.unique()):
            rows = np.flatnonzero((splits == split).to_numpy())
            n_built, n_bad = _build_split(
                df, rows, split, out, size, workers, skip_bad, rejects_partial, mpath, progress
            )
            built += n_built
            rejected[split] = n_bad
        counts = {
            s: int(_finalize_split(df, np.flatnonzero((splits == s).to_numpy()), s, out))
            for s in sorted(splits.unique())
        }
        rejects_path = None
        if rejects_partial.exists():
            rejects_path = out / "rejects.csv"
            _sort_rejects(rejects_partial)
            os.replace(rejects_partial, rejects_path)
        elif (out / "rejects.csv").exists():
            (out / "rejects.csv").unlink()
        files = {s: file_record(out, s) for s in counts}
        meta.update(complete=True, splits=counts, rejected=int(sum(rejected.values())), files=files)
        _write_meta(out, meta)
    except OSError as e:
        raise UserError(
            f"cache build in {out} stopped: {e}; what was decoded is kept: free space / fix the cause and "
            "rerun the same command to resume"
        ) from e
    return BuildResult(
        out,
        size,
        counts,
        int(sum(rejected.values())),
        rejects_path,
        built,
        time.perf_counter() - t0,
        workers,
        per_split_rejected=rejected,
    )


def _check_space(out: Path, splits: pd.Series, size: int) -> None:
    """Refuse to start when the disk cannot hold the images (counting what a resumed build has)."""
    need = 0
    for split, n in splits.value_counts().items():
        if not (out / f"{split}.building.npy").exists():
            need += int(n) * size * size + int(n)
    free = shutil.disk_usage(out).free
    if need > free:
        raise UserError(
            f"not enough disk space for the cache in {out}: it needs {need / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free"
        )


def _sort_rejects(path: Path) -> None:
    """Workers finish out of order: sort rejects by (split, manifest row) so every build writes one file."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = df.assign(_r=df["manifest_row"].astype(int)).sort_values(["split", "_r"], kind="stable")
    tmp = path.with_suffix(".sorted.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("split,manifest_row,path,reason\n")
        for r in df.itertuples(index=False):
            f.write(_csv_line([r.split, r.manifest_row, r.path, r.reason]))
    os.replace(tmp, path)


def _build_split(
    df: pd.DataFrame,
    rows: np.ndarray,
    split: str,
    out: Path,
    size: int,
    workers: int,
    skip_bad: bool,
    rejects_partial: Path,
    mpath: Path,
    progress: bool,
) -> tuple[int, int]:
    """Fill {split}.building.npy for the TODO rows; returns (decoded now, bad in total)."""
    n = len(rows)
    target, status_path = out / f"{split}.building.npy", out / f"{split}.status.npy"
    if (out / f"{split}.npy").exists() and not target.exists():
        (out / f"{split}.npy").unlink()  # a stale final file from an older build of this folder
    status = None
    if target.exists() and status_path.exists():
        status = np.load(status_path, mmap_mode="r+")
        if status.shape != (n,) or np.load(target, mmap_mode="r").shape != (n, size, size):
            status = None
    if status is None:
        np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(n, size, size)).flush()
        _reserve(target, target.stat().st_size)
        status = np.lib.format.open_memmap(status_path, mode="w+", dtype=np.uint8, shape=(n,))
        _reserve(status_path, status_path.stat().st_size)
    todo = np.flatnonzero(status == TODO)
    paths = df["path"].to_numpy()
    tasks = [
        (str(target), size, [(int(i), str(paths[rows[i]])) for i in todo[s : s + CHUNK]])
        for s in range(0, len(todo), CHUNK)
    ]
    bar = None
    if progress and len(todo):
        bar = tqdm(total=n, initial=n - len(todo), desc=f"cache {split}", unit="img", smoothing=0.1)
    done_now = 0
    pool = (
        mp.get_context("fork").Pool(workers, initializer=_die_with_parent)
        if workers > 0 and len(tasks) > 1
        else None
    )
    try:
        results = pool.imap_unordered(_work, tasks) if pool else map(_work, tasks)
        for chunk in results:
            bad = [(i, why) for i, why in chunk if why]
            if bad and not skip_bad:
                i, why = bad[0]
                raise ImageReadError(
                    paths[rows[i]],
                    f"{why} (manifest {mpath}, row {rows[i]}, line {rows[i] + 2}); "
                    "fix or remove it, or pass --skip-bad to write it to rejects.csv",
                )
            if bad:
                new = not rejects_partial.exists()
                with open(rejects_partial, "a", encoding="utf-8") as f:
                    if new:
                        f.write("split,manifest_row,path,reason\n")
                    for i, why in bad:
                        f.write(_csv_line([split, str(rows[i]), str(paths[rows[i]]), why]))
            for i, why in chunk:
                status[i] = BAD if why else DONE
            status.flush()
            done_now += len(chunk)
            if bar:
                bar.update(len(chunk))
    finally:
        if pool:
            pool.terminate()
            pool.join()
        if bar:
            bar.close()
        _OPEN.clear()
    return done_now, int((status == BAD).sum())


def _csv_line(fields: list[str]) -> str:
    return (
        ",".join('"' + f.replace('"', '""') + '"' if any(c in f for c in ',"\n') else f for f in fields)
        + "\n"
    )


def _finalize_split(df: pd.DataFrame, rows: np.ndarray, split: str, out: Path) -> int:
    """building -> final .npy (compacted without bad rows) + rows csv; remove the build state."""
    target, status_path, final = (
        out / f"{split}.building.npy",
        out / f"{split}.status.npy",
        out / f"{split}.npy",
    )
    status = np.load(status_path)
    ok = np.flatnonzero(status == DONE)
    if len(ok) == len(status):
        os.replace(target, final)
    else:
        src = np.load(target, mmap_mode="r")
        dst = np.lib.format.open_memmap(
            final.with_suffix(".tmp.npy"), mode="w+", dtype=np.uint8, shape=(len(ok),) + src.shape[1:]
        )
        _reserve(final.with_suffix(".tmp.npy"), final.with_suffix(".tmp.npy").stat().st_size)
        for s in range(0, len(ok), 1024):
            dst[s : s + 1024] = src[ok[s : s + 1024]]
        dst.flush()
        del dst, src
        os.replace(final.with_suffix(".tmp.npy"), final)
        target.unlink()
    write_manifest(df.iloc[rows[ok]], out / f"{split}.rows.csv")
    status_path.unlink()
    return len(ok)


def open_cache(cache_dir: str | os.PathLike[str], split: str = "train", verify: bool = False) -> ImageCache:
    """Memory-map one split of a complete cache (read-only), after the integrity check (module docstring;
    verify=True hashes the whole image file)."""
    out = Path(cache_dir)
    meta = _read_meta(out)
    if meta is None:
        raise UserError(f"{out} is not a medflip image cache (no meta.json); run `medflip data cache` first")
    if not meta.get("complete"):
        raise UserError(
            f"cache {out} is incomplete (interrupted build); rerun `medflip data cache` to resume"
        )
    if split not in meta["splits"]:
        raise UserError(f"cache {out} has no split {split!r}; it has {sorted(meta['splits'])}")
    check_integrity(out, meta, split, full=verify)
    try:
        images = np.load(out / f"{split}.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"cache {out}: {split}.npy is unreadable ({e}); rebuild the cache") from e
    rows = read_manifest(out / f"{split}.rows.csv", resolve_paths=False)
    if len(rows) != images.shape[0]:
        raise UserError(f"cache {out}: {split}.npy has {images.shape[0]} images but {len(rows)} rows")
    return ImageCache(images=images, rows=rows, size=int(meta["size"]), split=split)
