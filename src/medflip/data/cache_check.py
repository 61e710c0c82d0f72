"""Cache integrity: sizes and sha256 of a cache's files, recorded at build time and checked at open.

A cache is a memory map the trainer reads for days; if the file is truncated, regenerated or replaced, or
the manifest is edited after caching, training would silently read other pixels or labels than the rows
say. `check_integrity` catches that at open: sizes and the rows file's hash always, the image file by a
sampled hash (the first block and 16 evenly spaced 64 KiB blocks, a few ms for any size) or, with
`full=True`, by its whole sha256 (~1 s per GB).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from medflip.errors import UserError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


SAMPLE_BLOCKS, SAMPLE_BYTES = 17, 1 << 16


def _sample_sha256(path: Path) -> str:
    """sha256 of the first block and 16 more evenly spaced 64 KiB blocks (with the file size): a cheap
    check at every open that catches a replaced, truncated or regenerated file."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for k in range(SAMPLE_BLOCKS):
            f.seek(size * k // SAMPLE_BLOCKS)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def file_record(out: Path, split: str) -> dict:
    npy, rows = out / f"{split}.npy", out / f"{split}.rows.csv"
    return {
        "npy_bytes": npy.stat().st_size,
        "npy_sha256": sha256_file(npy),
        "npy_sample_sha256": _sample_sha256(npy),
        "rows_sha256": sha256_file(rows),
    }


def check_integrity(out: Path, meta: dict, split: str, full: bool = False) -> None:
    """Raise UserError (saying to rebuild) when a split's files or the source manifest changed since the
    build. Caches built before meta.json recorded hashes are not checked."""
    rec = meta.get("files", {}).get(split)
    rebuild = f"rebuild it: medflip data cache {meta.get('manifest', 'MANIFEST')} --out {out} --overwrite"
    if rec is None:
        return
    npy, rows = out / f"{split}.npy", out / f"{split}.rows.csv"
    for p in (npy, rows):
        if not p.is_file():
            raise UserError(f"cache {out}: {p.name} is missing; {rebuild}")
    size = npy.stat().st_size
    if size != rec["npy_bytes"]:
        raise UserError(
            f"cache {out}: {npy.name} has {size} bytes, the build wrote {rec['npy_bytes']} "
            f"(truncated or replaced); {rebuild}"
        )
    if _sample_sha256(npy) != rec["npy_sample_sha256"] or (full and sha256_file(npy) != rec["npy_sha256"]):
        raise UserError(
            f"cache {out}: {npy.name} changed since it was built (content hash differs); {rebuild}"
        )
    if sha256_file(rows) != rec["rows_sha256"]:
        raise UserError(f"cache {out}: {rows.name} was edited since the cache was built; {rebuild}")
    manifest = Path(meta.get("manifest", ""))
    if manifest.is_file() and sha256_file(manifest) != meta.get("manifest_sha256"):
        raise UserError(
            f"cache {out}: its manifest {manifest} was edited after caching (sha256 differs), so the cache "
            f"no longer shows the manifest's rows; {rebuild}"
        )
