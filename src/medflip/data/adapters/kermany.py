"""Kermany paediatric pneumonia (Cell 2018; Kaggle "Chest X-Ray Images (Pneumonia)").

Layout: ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (any subset of the split folders; the
official split is kept). Labels (the dataset's class stays in ``class``; bacterial / viral in ``subtype``):

- NORMAL: No Finding = 1, the other 13 = 0 (a normal film has none of them).
- PNEUMONIA: Pneumonia = 1, No Finding = 0, the rest blank. Lung Opacity is left blank on purpose: viral
  pneumonia in children is often interstitial rather than an airspace opacity, and the dataset only
  states the diagnosis.

Patients: ``personN_bacteria_M.jpeg`` -> ``personN``; ``IM-NNNN-MMMM.jpeg`` and
``NORMAL2-IM-NNNN-MMMM.jpeg`` -> ``IM-NNNN`` (the two normal batches are merged on the IM number: if they
are different people this only makes groups larger, which can never leak a patient across splits).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from medflip.data.adapters._common import ImportContext, blank_labels, list_images, normal_labels
from medflip.errors import UserError

SPLIT_DIRS = {"train": "train", "val": "val", "test": "test"}
CLASSES = ("NORMAL", "PNEUMONIA")
_PERSON = re.compile(r"^(person\d+)_", re.I)
_IM = re.compile(r"^(?:NORMAL2-)?(IM-\d+)", re.I)


def patient_of(name: str) -> str:
    m = _PERSON.match(name) or _IM.match(name)
    return m.group(1).lower() if m and m.re is _PERSON else (m.group(1).upper() if m else "")


def dataset_root(root: Path) -> Path:
    """ROOT itself, or the Kaggle zip's ``chest_xray/`` (possibly nested twice) below it."""
    for cand in (root, root / "chest_xray", root / "chest_xray" / "chest_xray"):
        if any((cand / d / c).is_dir() for d in SPLIT_DIRS for c in CLASSES):
            return cand
    return root


def run(ctx: ImportContext) -> pd.DataFrame:
    rows = []
    root = dataset_root(ctx.root)
    for folder, split in SPLIT_DIRS.items():
        for cls in CLASSES:
            for path in list_images(root / folder / cls):
                patient = patient_of(path.name)
                if not patient:
                    ctx.rejects.bad(
                        path, path.name, "file name has no Kermany patient id (personN_ / IM-NNNN-)"
                    )
                    continue
                labels = (
                    normal_labels()
                    if cls == "NORMAL"
                    else {**blank_labels(), "Pneumonia": 1, "No Finding": 0}
                )
                subtype = (
                    "normal" if cls == "NORMAL" else ("virus" if "virus" in path.name.lower() else "bacteria")
                )
                rows.append(
                    {
                        "path": str(path),
                        "source": "kermany",
                        "patient_id": patient,
                        "study_id": path.stem,
                        "view": "AP",
                        "split": split,
                        "class": cls,
                        "subtype": subtype,
                        **labels,
                    }
                )
    if not rows:
        raise UserError(
            f"no Kermany images under {ctx.root}: expected {{train,val,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg"
        )
    return pd.DataFrame(rows)
