"""Generic sources: a folder per class, or any CSV with named columns (a hospital export).

``folder``: ``ROOT/<class>/**/*.{jpg,jpeg,png,dcm}``. ``class`` = the folder name. Labels: a class whose
name is an observation (case and ``_`` / ``-`` ignored, e.g. ``pleural_effusion``) sets that observation
to 1 and No Finding to 0; ``normal`` / ``no finding`` / ``healthy`` set No Finding = 1 and the rest 0;
anything else leaves the labels blank. Patient = the file stem (unknown: say so in your own docs), or
``--patient-regex`` (first group of a regex on the file name). Optional ``split/`` level: if ROOT
contains ``train``, ``val`` or ``test`` folders, those are the splits.

``csv``: ``--csv FILE`` (default ``ROOT/manifest.csv``) with columns named by ``--path-col`` (required,
default ``path``; relative to the CSV's folder), and optionally ``--report-col``, ``--patient-col``,
``--study-col``, ``--view-col``, ``--split-col``, ``--class-col``. Label columns named exactly as the 14
observations are read (1 / 0 / -1 / blank); if there are none and a report column exists, labels come
from medflip's report labeler. Empty reports (when a report column is given) are bad rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from medflip.data.adapters._common import (
    ImportContext,
    blank_labels,
    list_images,
    norm_view,
    normal_labels,
    parse_label,
    read_csv_checked,
    report_labels,
)
from medflip.data.manifest import SPLITS
from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

NORMAL_NAMES = {"normal", "nofinding", "healthy", "negative"}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "validate": "val",
    "test": "test",
    "testing": "test",
    "": "",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def class_labels(cls: str) -> dict[str, int | None]:
    key = _key(cls)
    if key in NORMAL_NAMES:
        return normal_labels()
    for obs in OBSERVATIONS[1:]:
        if _key(obs) == key:
            return {**blank_labels(), obs: 1, "No Finding": 0}
    return blank_labels()


def run_folder(ctx: ImportContext) -> pd.DataFrame:
    root = ctx.root
    if not root.is_dir():
        raise UserError(f"not a folder: {root}")
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and SPLIT_ALIASES.get(d.name.lower(), None)]
    levels = [(d, SPLIT_ALIASES[d.name.lower()]) for d in split_dirs] if split_dirs else [(root, "")]
    levels.sort(key=lambda lv: SPLITS.index(lv[1]) if lv[1] in SPLITS else -1)
    regex = re.compile(ctx.opt("patient_regex")) if ctx.opt("patient_regex") else None
    rows = []
    for base, split in levels:
        for cls_dir in sorted(d for d in base.iterdir() if d.is_dir()):
            labels = class_labels(cls_dir.name)
            for path in list_images(cls_dir):
                patient = path.stem
                if regex is not None:
                    m = regex.search(path.name)
                    if not m:
                        ctx.rejects.bad(
                            path, path.name, f"file name does not match --patient-regex {regex.pattern!r}"
                        )
                        continue
                    patient = m.group(1) if m.groups() else m.group(0)
                rows.append(
                    {
                        "path": str(path),
                        "source": ctx.opt("source", "folder"),
                        "patient_id": patient,
                        "study_id": path.stem,
                        "view": "",
                        "split": split,
                        "class": cls_dir.name,
                        **labels,
                    }
                )
    if not rows:
        raise UserError(f"no images in class folders under {root} (expected ROOT/<class>/*.png|jpg|dcm)")
    return pd.DataFrame(rows)


def run_csv(ctx: ImportContext) -> pd.DataFrame:
    csv_path = Path(ctx.opt("csv") or ctx.root / "manifest.csv")
    cols = {k: ctx.opt(f"{k}_col") for k in ("report", "patient", "study", "view", "split", "class")}
    path_col = ctx.opt("path_col", "path")
    df = read_csv_checked(csv_path, [path_col, *[c for c in cols.values() if c]], "CSV")
    label_cols = [o for o in OBSERVATIONS if o in df.columns]
    base = csv_path.resolve().parent
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        rel = rec[path_col].strip()
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        try:
            found = bool(rel) and "\0" not in rel and path.is_file()
        except OSError as e:  # a name too long for the filesystem, ...
            found, rel = False, f"{rel[:80]}... ({e.strerror})"
        if not found:
            shown = str(path) if len(str(path)) < 300 else f"{str(path)[:300]}..."
            ctx.rejects.bad(csv_path, i, f"image not found: {shown}" if rel else f"empty {path_col!r}")
            continue
        report = " ".join(rec[cols["report"]].split()) if cols["report"] else ""
        if cols["report"] and not report:
            ctx.rejects.bad(csv_path, i, f"empty report in column {cols['report']!r}")
            continue
        split = SPLIT_ALIASES.get(rec[cols["split"]].strip().lower()) if cols["split"] else ""
        if split is None or (split and split not in SPLITS):
            ctx.rejects.bad(csv_path, i, f"split {rec[cols['split']]!r} is not train / val / test")
            continue

        def get(k: str, rec: dict = rec) -> str:
            return rec[cols[k]].strip() if cols[k] else ""

        labels = {o: parse_label(rec[o], csv_path, i, o, ctx.rejects) for o in label_cols}
        rows.append(
            {
                "path": str(path),
                "source": ctx.opt("source", "csv"),
                "patient_id": get("patient"),
                "study_id": get("study"),
                "view": norm_view(get("view")),
                "split": split,
                "class": get("class"),
                "report": report,
                **labels,
            }
        )
    if not rows:
        raise UserError(f"no usable rows in {csv_path}")
    out = pd.DataFrame(rows)
    if not label_cols and cols["report"]:
        out = pd.concat([out, pd.DataFrame(report_labels(list(out["report"])))], axis=1)
    return out
