"""RSNA Pneumonia Detection Challenge (Kaggle 2018, stage 2).

Layout: ``ROOT/stage_2_train_labels.csv`` (patientId,x,y,width,height,Target; one row per box),
optional ``ROOT/stage_2_detailed_class_info.csv`` (patientId,class), images
``ROOT/stage_2_train_images/<patientId>.dcm``.

Following torchxrayvision's RSNA_Pneumonia_Dataset, Target = 1 (an opacity suggestive of pneumonia) sets
both Pneumonia = 1 and Lung Opacity = 1. Classes: "Pneumonia" (Target 1), "Normal" (detailed class
"Normal": No Finding = 1, the rest 0), "Not Normal" ("No Lung Opacity / Not Normal": Pneumonia = 0,
Lung Opacity = 0, No Finding = 0). Without the detailed-class file, Target 0 becomes "No Pneumonia"
(Pneumonia = 0, Lung Opacity = 0), since normal and not-normal cannot be told apart.

Split: the labels cover only the challenge's training images, so the adapter assigns a seeded,
patient-disjoint train/val/test split (``--fractions``, default 0.7,0.15,0.15; ``--seed``).

``--balanced`` (default on; the MedCLIP protocol) keeps pneumonia vs normal only, the same number of each
(``--per-class N``, default: the smaller class), drawn with ``--seed``. The view (AP/PA) is read from
torchxrayvision's bundled DICOM header table when it knows the image, otherwise from the DICOM header.
patientId is per image in this dataset, so it is both patient_id and study_id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medflip.data.adapters._common import (
    ImportContext,
    blank_labels,
    normal_labels,
    read_csv_checked,
    xrv_data_file,
)
from medflip.data.splits import patient_split
from medflip.errors import UserError


def _bundled_views() -> dict[str, str]:
    path = xrv_data_file("kaggle_stage_2_train_images_dicom_headers.csv.gz")
    if path is None:
        return {}
    try:
        df = pd.read_csv(path, usecols=["PatientID", "ViewPosition"], dtype=str)
        return dict(zip(df["PatientID"], df["ViewPosition"].fillna("")))
    except Exception:  # optional knowledge; the DICOM header is the fallback
        return {}


def _dicom_view(path: str) -> str:
    try:
        import pydicom  # here: only RSNA's DICOM headers need it (~0.2 s to import)

        return str(pydicom.dcmread(path, stop_before_pixels=True).get("ViewPosition", "") or "")
    except Exception:
        return ""


def run(ctx: ImportContext) -> pd.DataFrame:
    root = ctx.root
    labels_csv = root / "stage_2_train_labels.csv"
    df = read_csv_checked(labels_csv, ["patientId", "Target"], "RSNA labels")
    images_dir = root / "stage_2_train_images"
    if not images_dir.is_dir():
        raise UserError(f"RSNA images folder not found: {images_dir}")
    detail_path = root / "stage_2_detailed_class_info.csv"
    detail = None
    if detail_path.exists():
        d = read_csv_checked(detail_path, ["patientId", "class"], "RSNA detailed class info")
        detail = dict(zip(d["patientId"], d["class"]))
    target: dict[str, int] = {}
    for i, (pid, t) in enumerate(zip(df["patientId"], df["Target"])):
        if pid.strip() == "" or t.strip() not in ("0", "1"):
            ctx.rejects.bad(labels_csv, i, f"patientId {pid!r} / Target {t!r}: expected an id and 0 or 1")
            continue
        target[pid] = max(target.get(pid, 0), int(t))
    views = _bundled_views()
    rows = []
    for pid in sorted(target):
        path = images_dir / f"{pid}.dcm"
        if not path.is_file():
            ctx.rejects.bad(labels_csv, pid, f"image not found: {path}")
            continue
        if target[pid] == 1:
            cls, labels = "Pneumonia", {**blank_labels(), "Pneumonia": 1, "Lung Opacity": 1, "No Finding": 0}
        elif detail is None:
            cls, labels = "No Pneumonia", {**blank_labels(), "Pneumonia": 0, "Lung Opacity": 0}
        elif detail.get(pid, "") == "Normal":
            cls, labels = "Normal", normal_labels()
        else:
            cls, labels = "Not Normal", {**blank_labels(), "Pneumonia": 0, "Lung Opacity": 0, "No Finding": 0}
        view = views.get(pid) or _dicom_view(str(path))
        rows.append(
            {
                "path": str(path),
                "source": "rsna",
                "patient_id": pid,
                "study_id": pid,
                "view": view,
                "split": "",
                "class": cls,
                **labels,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        raise UserError(f"no RSNA images found for the rows of {labels_csv}")
    if ctx.opt("balanced", True):
        out = balance(
            out, "No Pneumonia" if detail is None else "Normal", ctx.opt("per_class"), ctx.opt("seed", 0)
        )
    return assign_split(out, ctx.opt("fractions", DEFAULT_FRACTIONS), int(ctx.opt("seed", 0)))


DEFAULT_FRACTIONS = "0.7,0.15,0.15"


def assign_split(df: pd.DataFrame, fractions: str, seed: int) -> pd.DataFrame:
    """The challenge's labels cover only its training set, so there is no official split: assign a seeded,
    patient-disjoint train/val/test split here (`--fractions`, `--seed`) so that `eval probe` / `finetune`
    (train on train, score on test) work on the manifest as imported. `medflip data split --overwrite`
    can still replace it."""
    try:
        fr = [float(x) for x in str(fractions).split(",")]
    except ValueError as e:
        raise UserError(f"--fractions must be numbers like 0.7,0.15,0.15, got {fractions!r}") from e
    return patient_split(df, fr, seed=seed)


def balance(df: pd.DataFrame, negative: str, per_class: int | None, seed: int) -> pd.DataFrame:
    """Pneumonia vs `negative`, n of each (default: the smaller class), seeded; row order by id."""
    pos, neg = df[df["class"] == "Pneumonia"], df[df["class"] == negative]
    n = min(len(pos), len(neg)) if per_class is None else int(per_class)
    if n > min(len(pos), len(neg)):
        raise UserError(
            f"--per-class {n}: only {len(pos)} pneumonia and {len(neg)} {negative.lower()} images"
        )
    rng = np.random.default_rng(seed)
    keep = np.concatenate(
        [
            rng.choice(pos.index.to_numpy(), n, replace=False),
            rng.choice(neg.index.to_numpy(), n, replace=False),
        ]
    )
    return df.loc[np.sort(keep)].reset_index(drop=True)
