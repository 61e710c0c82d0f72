"""Speed checks for the data engine: the training loader from a cache, and the cache build.

Loader: what the trainer does per step on the CPU: gather a random batch of rows from the memory-mapped
cache, wrap as a tensor, `augment_batch` to `size`. Reported as augmented images/s after one warm-up
batch. Build: synthetic smooth `source_size` px JPEGs (real JPEG decoding work, no dataset needed) are
cached with one worker (images/s per core) and with all cores.

Both also report throughput per CPU-second of this process (`images_per_cpu_s`) and the load average:
on a shared machine the wall-clock number mixes in other users' work, the CPU-time number does not.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFilter

from medflip.data.augment import augment_batch
from medflip.data.cache import _read_meta, build_cache, open_cache
from medflip.data.manifest import write_manifest
from medflip.errors import UserError


def bench_loader(
    cache_dir: str | os.PathLike[str],
    split: str | None = None,
    size: int = 224,
    batch: int = 256,
    threads: int | None = None,
    seconds: float = 5.0,
    seed: int = 0,
) -> dict:
    meta = _read_meta(Path(cache_dir))
    if meta is None or not meta.get("splits"):
        raise UserError(f"{cache_dir} is not a complete medflip cache")
    split = split or max(meta["splits"], key=lambda s: meta["splits"][s])
    cache = open_cache(cache_dir, split)
    if len(cache) == 0:
        raise UserError(f"cache split {split!r} is empty")
    threads = threads or os.cpu_count() or 1
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)

        def step() -> None:
            idx = np.sort(rng.integers(0, len(cache), batch))
            x = torch.from_numpy(np.ascontiguousarray(cache.images[idx]))[:, None]
            augment_batch(x, size, gen)

        step()  # warm-up (page cache, allocator)
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds or n == 0:
            step()
            n += batch
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_num_threads(old)
    return {
        "images_per_s": n / elapsed,
        "images": n,
        "seconds": elapsed,
        "threads": threads,
        "split": split,
        "cache_size": cache.size,
        "images_per_cpu_s": n / max(cpu, 1e-9),
        "load_avg": _load(),
    }


def _load() -> float:
    """1-minute load average: on a shared machine it says how much of the CPU the run actually had."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def synthetic_jpegs(folder: Path, n: int, source_size: int = 1024, seed: int = 0) -> list[Path]:
    """n smooth random grayscale JPEGs (quality 90), roughly CXR-like in compressibility."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray((rng.random((source_size // 8, source_size // 8)) * 255).astype(np.uint8))
    paths = []
    for i in range(n):
        noise = (rng.random((source_size, source_size)) * 40).astype(np.uint8)
        big = np.asarray(base.resize((source_size, source_size), Image.Resampling.BICUBIC), dtype=np.uint8)
        img = Image.fromarray(((big.astype(np.int16) + noise - 20).clip(0, 255)).astype(np.uint8))
        p = folder / f"img{i:05d}.jpg"
        img.filter(ImageFilter.GaussianBlur(1)).save(p, quality=90)
        paths.append(p)
    return paths


def bench_build(n: int = 200, source_size: int = 1024, size: int = 224, workers: int | None = None) -> dict:
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="medflip-bench-") as tmp:
        t = Path(tmp)
        paths = synthetic_jpegs(t, n, source_size)
        df = pd.DataFrame(
            {"path": [str(p) for p in paths], "source": "bench", "patient_id": [p.stem for p in paths]}
        )
        write_manifest(df, t / "m.csv")
        c0 = time.process_time()
        one = build_cache(t / "m.csv", t / "c1", size=size, workers=0, progress=False)
        cpu = time.process_time() - c0
        allw = build_cache(t / "m.csv", t / "cn", size=size, workers=workers, progress=False)
    return {
        "images": n,
        "images_per_s_per_core": one.images_per_s,
        "images_per_s_all": allw.images_per_s,
        "workers": workers,
        "images_per_cpu_s": n / max(cpu, 1e-9),
        "load_avg": _load(),
    }
