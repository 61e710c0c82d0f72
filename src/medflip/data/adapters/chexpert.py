"""CheXpert (v1.0 and v1.0-small) and the CheXpert-5x200 evaluation set.

Layout: ``ROOT/train.csv``, ``ROOT/valid.csv`` with the official header (Path, Sex, Age, Frontal/Lateral,
AP/PA, the 14 observations) and ``ROOT/{train,valid}/patientNNNNN/studyN/viewN_frontal.jpg``. The CSV's
Path starts with ``CheXpert-v1.0[-small]/``; that prefix is stripped when ROOT is that folder itself.

Labels come from the CSV (the CheXpert labeler's output): 1 / 0 / -1 / blank, kept as they are unless
``--uncertain positive|negative|ignore`` rewrites -1 at import (default ``keep``: the trainer applies its
own policy). Views as torchxrayvision reads them: Frontal -> the AP/PA column, Lateral -> LATERAL.
Splits: train.csv -> train, valid.csv -> val (official).
``--exclude MANIFEST`` drops every image of a patient that appears in MANIFEST (e.g. the CheXpert-5x200
manifest, which is drawn from train.csv): pre-train on what is left and the 5x200 evaluation is held out by
patient, as in GLoRIA / MedCLIP. The number of images and patients dropped is printed.

CheXpert-5x200 (MedCLIP / GLoRIA protocol): from one split (``--split train`` default, the 234-image
valid set is too small), frontal views only, for each of the 5 competition tasks ``--per-class`` (200)
images positive (1) for that task and for no other competition task (the other four 0, blank, never -1),
drawn with ``--seed``. ``class`` is the task name and ``split`` is "test". ``--strict`` follows GLoRIA's
stricter reading: all 12 other observations (No Finding aside) must be 0 or blank too.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from medflip.data.adapters._common import (
    UNCERTAIN_AT_IMPORT,
    ImportContext,
    apply_uncertain,
    parse_label,
    read_csv_checked,
)
from medflip.data.manifest import read_manifest
from medflip.errors import UserError
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS

CSV_SPLITS = {"train.csv": "train", "valid.csv": "val"}
_PATIENT = re.compile(r"(patient\d+)")
_STUDY = re.compile(r"(patient\d+/study\d+)")


def _resolver(root: Path, first: str):
    """Pick how CSV paths map to files from the first row (same rule for all rows: fast on 224k rows)."""
    parts = Path(first).parts
    cands = [lambda p: root / p, lambda p: root.parent / p]
    if parts and parts[0].startswith("CheXpert-v1.0"):
        cands.insert(0, lambda p: root / Path(*Path(p).parts[1:]))
    for f in cands:
        if f(first).exists():
            return f
    return cands[0]


def read_split(ctx: ImportContext, csv_name: str) -> pd.DataFrame:
    policy = str(ctx.opt("uncertain", "keep"))
    if policy not in UNCERTAIN_AT_IMPORT:
        raise UserError(f"--uncertain must be one of {UNCERTAIN_AT_IMPORT}, got {policy!r}")
    path = ctx.root / csv_name
    df = read_csv_checked(path, ["Path", "Frontal/Lateral", "AP/PA", *OBSERVATIONS], "CheXpert CSV")
    resolve = _resolver(ctx.root, df["Path"].iloc[0]) if len(df) else None
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):
        rel = r[0]
        patient = _PATIENT.search(rel)
        if not patient:
            ctx.rejects.bad(path, i, f"Path {rel!r} has no patientNNNNN component")
            continue
        img = resolve(rel)
        if not img.is_file():
            ctx.rejects.bad(path, i, f"image not found: {img}")
            continue
        rec = dict(zip(df.columns, r))
        labels = {
            obs: apply_uncertain(parse_label(rec[obs], path, i, obs, ctx.rejects), policy)
            for obs in OBSERVATIONS
        }
        frontal = rec["Frontal/Lateral"].strip().lower() == "frontal"
        view = (rec["AP/PA"].strip().upper() or "FRONTAL") if frontal else "LATERAL"
        study = _STUDY.search(rel)
        rows.append(
            {
                "path": str(img),
                "source": "chexpert",
                "patient_id": patient.group(1),
                "study_id": study.group(1) if study else patient.group(1),
                "view": view,
                "split": CSV_SPLITS[csv_name],
                "class": "",
                **labels,
            }
        )
    return pd.DataFrame(rows)


def run(ctx: ImportContext) -> pd.DataFrame:
    present = [n for n in CSV_SPLITS if (ctx.root / n).is_file()]
    if not present:
        raise UserError(f"no CheXpert train.csv / valid.csv in {ctx.root}")
    out = pd.concat([read_split(ctx, n) for n in present], ignore_index=True)
    if ctx.opt("frontal_only", False):
        out = out[out["view"] != "LATERAL"].reset_index(drop=True)
    if ctx.opt("exclude"):
        out = exclude_patients(out, Path(ctx.opt("exclude")))
    return out


def exclude_patients(df: pd.DataFrame, manifest: Path) -> pd.DataFrame:
    """df without the rows of any patient of `manifest` (a medflip manifest, e.g. CheXpert-5x200)."""
    held_out = set(read_manifest(manifest, resolve_paths=False)["patient_id"].astype(str)) - {""}
    if not held_out:
        raise UserError(f"--exclude {manifest}: the manifest has no patient ids to exclude")
    drop = df["patient_id"].astype(str).isin(held_out)
    print(
        f"--exclude {manifest}: dropped {int(drop.sum())} images of {df.loc[drop, 'patient_id'].nunique()} "
        f"patients (of {len(held_out)} patients listed there)"
    )
    return df[~drop].reset_index(drop=True)


def run_5x200(ctx: ImportContext) -> pd.DataFrame:
    split = str(ctx.opt("split", "train"))
    csv_name = {v: k for k, v in CSV_SPLITS.items()}.get(split)
    if csv_name is None:
        raise UserError(f"--split must be train or val for chexpert-5x200, got {split!r}")
    ctx.options["uncertain"] = "keep"
    df = read_split(ctx, csv_name)
    strict = bool(ctx.opt("strict", False))
    return select_5x200(df, int(ctx.opt("per_class", 200)), int(ctx.opt("seed", 0)), strict)


def select_5x200(df: pd.DataFrame, per_class: int, seed: int, strict: bool = False) -> pd.DataFrame:
    """The per-task selection (see module docstring); raises if a task has too few candidates.

    strict: GLoRIA's stricter reading: every other observation except No Finding (not only the other four
    competition tasks) must be 0 or blank.
    """
    frontal = df[df["view"] != "LATERAL"]
    cols = [o for o in OBSERVATIONS if o != "No Finding"] if strict else list(COMPETITION_TASKS)
    values = frontal[cols].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    rng = np.random.default_rng(seed)
    picked = []
    for task in COMPETITION_TASKS:
        k = cols.index(task)
        others = np.delete(values, k, axis=1)
        ok = (values[:, k] == 1) & np.all(np.isnan(others) | (others == 0), axis=1)
        idx = frontal.index.to_numpy()[ok]
        if len(idx) < per_class:
            raise UserError(
                f"chexpert-5x200: only {len(idx)} frontal images are positive for exactly {task!r}, "
                f"need {per_class} (lower --per-class)"
            )
        chosen = np.sort(rng.choice(idx, per_class, replace=False))
        picked.append(df.loc[chosen].assign(**{"class": task, "split": "test", "source": "chexpert-5x200"}))
    return pd.concat(picked, ignore_index=True)
