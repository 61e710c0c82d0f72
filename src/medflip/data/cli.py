"""``medflip data import | cache | split | bench``: dataset on disk -> manifest -> image cache -> speed check.

Heavy imports (pandas, PIL, torch) happen inside the command functions, so ``medflip data import --help``
starts without them (0.05 s, not 0.5 s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medflip.data.adapters import DESCRIPTIONS
from medflip.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="import datasets, build the image cache, split, benchmark",
        description="Turn a dataset on disk into training/evaluation data.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    names = "\n".join(f"  {n:<15} {d}" for n, d in DESCRIPTIONS.items())
    imp = sub.add_parser(
        "import",
        help="dataset on disk -> manifest (CSV or Parquet)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Write a manifest from a dataset in its official layout.\n\ndatasets:\n{names}\n\n"
        "See docs/data.md for each layout and its label mapping.",
    )
    imp.add_argument("name", choices=list(DESCRIPTIONS), metavar="NAME", help="dataset (see the list above)")
    imp.add_argument("--root", required=True, type=Path, help="dataset folder as distributed")
    imp.add_argument(
        "--out", required=True, type=Path, help="manifest to write (.csv, or .parquet with pyarrow)"
    )
    imp.add_argument(
        "--skip-bad", action="store_true", help="write bad rows to a rejects file instead of failing"
    )
    imp.add_argument("--rejects", type=Path, help="rejects file (default: OUT with .rejects.csv)")
    imp.add_argument(
        "--allow-outside-root",
        action="store_true",
        default=None,
        help="accept image paths that resolve (symlinks followed) outside --root",
    )
    imp.add_argument(
        "--uncertain",
        choices=("keep", "positive", "negative", "ignore"),
        help="CheXpert: rewrite -1 labels at import (default keep; ignore = blank. To leave uncertain "
        "labels out of the label similarity instead, keep them and pre-train with --loss.uncertain ignore)",
    )
    imp.add_argument("--seed", type=int, help="sampling seed (chexpert-5x200, rsna-pneumonia; default 0)")
    imp.add_argument("--split", help="chexpert-5x200: CSV split to draw from, train (default) or val")
    imp.add_argument(
        "--per-class", type=int, help="chexpert-5x200 (default 200) / rsna-pneumonia images per class"
    )
    imp.add_argument(
        "--no-balanced",
        dest="balanced",
        action="store_false",
        default=None,
        help="rsna-pneumonia: keep every image instead of balanced pneumonia vs normal",
    )
    imp.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="chexpert-5x200: all other observations 0/blank, not only the other 4 tasks (GLoRIA)",
    )
    imp.add_argument(
        "--frontal-only",
        action="store_true",
        default=None,
        help="keep PA / AP (frontal) views only: datasets that record the view "
        f"({', '.join(sorted(VIEW_DATASETS))}, csv with --view-col)",
    )
    imp.add_argument(
        "--fractions",
        help=f"rsna-pneumonia: train,val,test fractions of its seeded patient-disjoint split (default {RSNA_FRACTIONS})",
    )
    imp.add_argument(
        "--exclude",
        type=Path,
        help="chexpert: drop every patient of this manifest (e.g. the chexpert-5x200 one: no evaluation "
        "patient in pre-training)",
    )
    imp.add_argument("--classes", help="covid: comma-separated classes to keep (e.g. COVID,Normal)")
    imp.add_argument("--reports", help="mimic-cxr: folder of sNNN.txt reports; iu-xray: XML folder or tgz")
    imp.add_argument("--csv", help="csv: the CSV file (default ROOT/manifest.csv)")
    for col in ("path", "report", "patient", "study", "view", "split", "class"):
        imp.add_argument(f"--{col}-col", help=f"csv: column holding the {col}")
    imp.add_argument(
        "--patient-regex", help="folder: regex on the file name whose first group is the patient id"
    )
    imp.add_argument("--source", help="folder/csv: value for the source column")
    imp.set_defaults(func=cmd_import)

    cache = sub.add_parser(
        "cache",
        help="manifest -> fixed-size uint8 memory-mapped image cache",
        description="Decode every image once into SIZE x SIZE uint8 (aspect kept, black padding), "
        "one .npy per split. Resumes an interrupted build; a no-op when up to date.",
    )
    cache.add_argument("manifest", type=Path)
    cache.add_argument(
        "--out", type=Path, help="cache folder (default: next to the manifest, NAME_cacheSIZE)"
    )
    cache.add_argument("--size", type=int, default=224, help="side in pixels (default 224)")
    cache.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    cache.add_argument("--skip-bad", action="store_true", help="write unreadable images to OUT/rejects.csv")
    cache.add_argument("--overwrite", action="store_true", help="replace a cache of another manifest or size")
    cache.set_defaults(func=cmd_cache)

    split = sub.add_parser(
        "split",
        help="patient-disjoint seeded train/val/test split of a manifest",
        description="Fill the split column so that no patient is in two splits.",
    )
    split.add_argument("manifest", type=Path)
    split.add_argument("--out", type=Path, help="output manifest (default: overwrite the input)")
    split.add_argument(
        "--fractions", default="0.8,0.1,0.1", help="train,val,test image fractions (default 0.8,0.1,0.1)"
    )
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--overwrite", action="store_true", help="replace an existing (e.g. official) split")
    split.set_defaults(func=cmd_split)

    bench = sub.add_parser(
        "bench",
        help="loader images/s from a cache, and cache-build images/s",
        description="Measure augmented images/s through augment_batch from CACHE_DIR, and the "
        "cache build speed on synthetic 1024 px JPEGs.",
    )
    bench.add_argument("cache_dir", type=Path)
    bench.add_argument("--split", default=None, help="cache split to read (default: the largest)")
    bench.add_argument("--size", type=int, default=224, help="augmented output size (default 224)")
    bench.add_argument("--batch", type=int, default=256)
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    bench.add_argument("--seconds", type=float, default=5.0, help="loader measuring time")
    bench.add_argument(
        "--build-images", type=int, default=200, help="synthetic JPEGs for the build test (0: skip)"
    )
    bench.add_argument("--source-size", type=int, default=1024, help="synthetic JPEG side (default 1024)")
    bench.set_defaults(func=cmd_bench)


# Datasets whose adapter fills the view column (from a metadata table or the DICOM header).
VIEW_DATASETS = {"mimic-cxr", "chexpert", "chexpert-5x200", "rsna-pneumonia", "iu-xray", "nih-cxr14"}
FRONTAL = {"PA", "AP", "FRONTAL"}
RSNA_FRACTIONS = "0.7,0.15,0.15"


def check_frontal_only(args: argparse.Namespace) -> None:
    """--frontal-only is refused up front where the dataset has no view information (never a silent no-op)."""
    if not args.frontal_only:
        return
    if args.name in VIEW_DATASETS or (args.name == "csv" and args.view_col):
        return
    raise UserError(
        f"--frontal-only: {args.name} records no view (PA / AP / lateral), so there is nothing to filter on; "
        f"it applies to {', '.join(sorted(VIEW_DATASETS))} and csv with --view-col"
    )


def frontal_only(df):
    """Keep PA / AP rows (FRONTAL: CheXpert frontal films without AP/PA); print what was dropped."""
    views = df["view"].fillna("").astype(str).str.strip().str.upper()
    if views.eq("").all():
        raise UserError("--frontal-only: no row of this dataset has a view; nothing to filter on")
    keep = views.isin(FRONTAL)
    dropped = views[~keep].replace("", "(unknown)").value_counts().to_dict()
    if dropped:
        print(f"frontal only: kept {int(keep.sum())} of {len(df)} images; dropped {dropped}")
    return df[keep.to_numpy()].reset_index(drop=True)


def _options(args: argparse.Namespace) -> dict:
    skip = {"name", "root", "out", "skip_bad", "rejects", "func", "command", "data_command"}
    return {k: v for k, v in vars(args).items() if k not in skip and v is not None}


def cmd_import(args: argparse.Namespace) -> int:
    from medflip.data.adapters import get_adapter
    from medflip.data.adapters._common import ImportContext, Rejects, screen_rows
    from medflip.data.manifest import conform, write_manifest

    if not args.root.exists():
        raise UserError(f"--root does not exist: {args.root}")
    if args.out.suffix.lower() in (".parquet", ".pq"):
        from medflip.data.manifest import _require_pyarrow

        _require_pyarrow(args.out)  # fail before a long import, not after
    check_frontal_only(args)
    if args.fractions and args.name != "rsna-pneumonia":
        raise UserError(
            "--fractions applies to rsna-pneumonia; split other datasets with `medflip data split`"
        )
    ctx = ImportContext(root=args.root.resolve(), rejects=Rejects(args.skip_bad), options=_options(args))
    df = conform(screen_rows(get_adapter(args.name)(ctx), ctx, f"{args.name} import"))
    if args.frontal_only:
        df = frontal_only(df)
    write_manifest(df, args.out)
    rejects_path = args.rejects or args.out.with_name(args.out.name.rsplit(".", 1)[0] + ".rejects.csv")
    if ctx.rejects.rows:
        ctx.rejects.frame().to_csv(rejects_path, index=False)
    elif rejects_path.exists():
        rejects_path.unlink()  # idempotent: a clean re-run leaves no stale rejects behind
    splits = df["split"].replace("", "(none)").value_counts().to_dict()
    print(f"wrote {len(df)} rows to {args.out} (splits: {splits})")
    if df["class"].ne("").any():
        print(f"classes: {df['class'].value_counts().head(10).to_dict()}")
    if ctx.rejects.rows:
        print(f"skipped {len(ctx.rejects.rows)} bad rows; reasons in {rejects_path}", file=sys.stderr)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from medflip.data.cache import build_cache

    out = args.out or args.manifest.with_name(f"{args.manifest.name.rsplit('.', 1)[0]}_cache{args.size}")
    res = build_cache(
        args.manifest,
        out,
        size=args.size,
        workers=args.workers,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
    )
    if res.up_to_date:
        print(f"cache {out} is up to date ({res.counts})")
    else:
        speed = f"{res.images_per_s:.0f} img/s with {max(res.workers, 1)} worker(s)"
        print(
            f"cache {out}: {res.counts} at {res.size}px; decoded {res.built} images in {res.seconds:.1f}s ({speed})"
        )
    if res.rejected:
        print(f"skipped {res.rejected} unreadable images; reasons in {res.rejects_path}", file=sys.stderr)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from medflip.data.manifest import read_manifest, write_manifest
    from medflip.data.splits import patient_split

    try:
        fractions = [float(x) for x in args.fractions.split(",")]
    except ValueError as e:
        raise UserError(f"--fractions must be numbers like 0.8,0.1,0.1, got {args.fractions!r}") from e
    df = read_manifest(args.manifest, resolve_paths=False)
    if df["split"].ne("").any() and not args.overwrite:
        raise UserError(f"{args.manifest} already has a split (official?); pass --overwrite to replace it")
    out = patient_split(df, fractions, seed=args.seed)
    write_manifest(out, args.out or args.manifest)
    counts = out["split"].value_counts().to_dict()
    print(
        f"split {len(out)} images of {out['patient_id'].nunique()} patients: {counts} -> {args.out or args.manifest}"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from medflip.data.bench import bench_build, bench_loader

    r = bench_loader(
        args.cache_dir,
        split=args.split,
        size=args.size,
        batch=args.batch,
        threads=args.threads,
        seconds=args.seconds,
    )
    print(
        f"loader: {r['images_per_s']:.0f} augmented {args.size}px images/s wall "
        f"({r['images_per_cpu_s']:.0f} per CPU-second; batch {args.batch}, {r['threads']} threads, "
        f"{r['cache_size']}px cache split {r['split']!r}; load average {r['load_avg']:.1f})"
    )
    if args.build_images > 0:
        b = bench_build(args.build_images, source_size=args.source_size, size=args.size)
        print(
            f"cache build: {b['images_per_s_per_core']:.0f} images/s per core ({b['images']} {args.source_size}px "
            f"JPEGs, 1 worker; {b['images_per_cpu_s']:.0f} per CPU-second); {b['images_per_s_all']:.0f} images/s "
            f"with {b['workers']} workers (load average {b['load_avg']:.1f})"
        )
    return 0
