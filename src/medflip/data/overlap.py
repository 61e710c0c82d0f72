"""Patients (and images) shared between a training set and an evaluation set: a leak check.

CheXpert-5x200 is drawn from CheXpert's train.csv, so a model pre-trained on the CheXpert training
manifest has seen its evaluation images (GLoRIA and MedCLIP remove those patients before pre-training;
`medflip data import chexpert --exclude 5x200.csv` does). The same holds for any evaluation split built
from the pre-training data. The check compares patient ids (`splits.patient_key`: patient_id, falling back
to study / image path) and image paths; it warns, since patient ids of two different datasets can collide
by chance.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medflip.data.cache import _read_meta, open_cache
from medflip.data.splits import patient_key
from medflip.errors import UserError


@dataclass
class Overlap:
    patients: list[str]  # shared patient keys, sorted
    images: int  # rows of the evaluation set whose image path is also a training image
    eval_rows: int  # evaluation rows of a shared patient

    def __bool__(self) -> bool:
        return bool(self.patients) or self.images > 0


def overlap(train_rows: pd.DataFrame, eval_rows: pd.DataFrame) -> Overlap:
    """Shared patients / images of two manifests (or cache splits' rows)."""
    train_keys = set(patient_key(train_rows))
    eval_keys = patient_key(eval_rows)
    shared = eval_keys.isin(train_keys)
    same_image = eval_rows["path"].astype(str).isin(set(train_rows["path"].astype(str)))
    return Overlap(sorted(set(eval_keys[shared])), int(same_image.sum()), int(shared.sum()))


def warn_overlap(
    train_rows: pd.DataFrame, eval_rows: pd.DataFrame, train_name: str, eval_name: str
) -> Overlap:
    """Print one warning line (stderr) when the two share patients or images; returns the overlap."""
    o = overlap(train_rows, eval_rows)
    if o:
        shown = ", ".join(o.patients[:5]) + (" ..." if len(o.patients) > 5 else "")
        print(
            f"WARNING: {train_name} and {eval_name} share {len(o.patients)} patient(s) ({shown}): "
            f"{o.eval_rows} of {len(eval_rows)} evaluation images are of a training patient, {o.images} are "
            "training images themselves; scores on them are not held-out "
            "(CheXpert-5x200: import the training set with `medflip data import chexpert --exclude 5x200.csv`)",
            file=sys.stderr,
        )
    return o


def warn_cache_overlap(train_rows: pd.DataFrame, train_name: str, eval_caches) -> list[Overlap]:
    """warn_overlap against every split of each evaluation cache folder in `eval_caches`."""
    out = []
    for folder in eval_caches:
        meta = _read_meta(Path(folder))
        if meta is None:
            raise UserError(f"{folder} is not a medflip image cache (no meta.json)")
        for split in meta["splits"]:
            rows = open_cache(folder, split).rows
            out.append(warn_overlap(train_rows, rows, train_name, f"{folder} [{split}]"))
    return out
