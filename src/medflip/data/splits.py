"""Patient-disjoint, seeded train/val/test splitting for datasets without an official split.

Why patient-level: one patient often has several films (follow-ups, PA + lateral); if they land in both
train and test the test score measures recognition of the patient, not of the disease.

Determinism: the unique patient ids are sorted before the seeded permutation, so the result depends only on
(the set of patients and their image counts, fractions, seed), not on the row order of the manifest.
Patients are then taken in permuted order and assigned to the split whose share of *images* is furthest
below its target, which hits the image fractions closely even when patients have very different numbers
of images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medflip.data.manifest import SPLITS
from medflip.errors import UserError


def patient_key(df: pd.DataFrame) -> pd.Series:
    """The grouping key: patient_id; rows without one fall back to study_id, then to the image path
    (each such row is then its own 'patient': documented, since nothing better is known)."""
    key = (
        df["patient_id"].astype(str)
        if "patient_id" in df.columns
        else pd.Series([""] * len(df), index=df.index)
    )
    for fallback in ("study_id", "path"):
        if fallback in df.columns:
            empty = key.str.strip() == ""
            key = key.where(~empty, fallback + ":" + df[fallback].astype(str))
    return key


def patient_split(
    df: pd.DataFrame,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    names: Sequence[str] = SPLITS,
) -> pd.DataFrame:
    """Return a copy of `df` with ``split`` filled so that no patient is in two splits.

    fractions: image fractions for `names` (default train/val/test), non-negative, summing to 1.
    """
    fr = np.asarray(list(fractions), dtype=np.float64)
    if len(fr) != len(names):
        raise UserError(f"need {len(names)} fractions for splits {list(names)}, got {list(fractions)}")
    if (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise UserError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    out = df.copy()
    if len(out) == 0:
        out["split"] = pd.Series(dtype=object)
        return out
    key = patient_key(out)
    counts = key.value_counts().sort_index()
    patients = counts.index.to_numpy()
    sizes = counts.to_numpy()
    order = np.random.default_rng(seed).permutation(len(patients))
    target = fr * len(out)
    filled = np.zeros(len(fr))
    assign: dict[str, str] = {}
    for p in order:
        deficit = np.where(fr > 0, (target - filled) / np.maximum(target, 1e-9), -np.inf)
        k = int(np.argmax(deficit))
        assign[patients[p]] = names[k]
        filled[k] += sizes[p]
    out["split"] = key.map(assign).astype(str)
    return out


def check_disjoint(df: pd.DataFrame) -> None:
    """Raise UserError if any patient appears in more than one split (used by tests and `data split`)."""
    key = patient_key(df)
    per = pd.DataFrame({"k": key, "s": df["split"].astype(str)}).groupby("k")["s"].nunique()
    leaked = per[per > 1]
    if len(leaked):
        raise UserError(f"{len(leaked)} patients are in more than one split, e.g. {list(leaked.index[:3])}")
