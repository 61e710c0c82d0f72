"""The 14 CheXpert observations and the label-vector conventions shared by every module.

Label values everywhere: 1 positive, 0 negative, -1 uncertain, None / NaN not mentioned.
A *label vector* (what the losses see) is float [K] in {0, 1}: not-mentioned -> 0, and uncertain
mapped by the policy: "positive" (default, as MedCLIP), "negative" (-> 0), or "ignore" (-> NaN: unknown; the
label cosine of the soft targets then leaves that dimension out for every pair it is in,
`medflip.losses.semantic.label_similarity`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
NUM_OBSERVATIONS = len(OBSERVATIONS)
COMPETITION_TASKS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
)
UNCERTAIN_POLICIES = ("positive", "negative", "ignore")


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def to_label_vector(values: Sequence[object], uncertain: str = "positive") -> np.ndarray:
    """Map 14 raw values (1 / 0 / -1 / None / NaN) to a float32 vector [K]: {0, 1}, and NaN for an
    uncertain value under the "ignore" policy (an unknown dimension, masked out of the label cosine)."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    if len(values) != NUM_OBSERVATIONS:
        raise ValueError(f"expected {NUM_OBSERVATIONS} label values, got {len(values)}")
    import numpy as np  # here, not at the top: `import medflip` (the CLI's start) must not pay for numpy

    out = np.zeros(NUM_OBSERVATIONS, dtype=np.float32)
    for k, v in enumerate(values):
        if _is_missing(v):
            continue
        v = int(v)
        if v == 1 or (v == -1 and uncertain == "positive"):
            out[k] = 1.0
        elif v == -1 and uncertain == "ignore":
            out[k] = np.nan
    return out


def single_class(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """labels [N, 14] -> [N]: index into `classes` of the row's only positive class, -1 if not exactly one.

    Positive means > 0, so raw labels (1 / 0 / -1 / NaN) and label vectors give the same answer; with the
    five COMPETITION_TASKS this is the CheXpert-5x200 rule.
    """
    import numpy as np  # see to_label_vector

    sub = np.asarray(labels)[:, [OBSERVATIONS.index(c) for c in classes]] > 0
    return np.where(sub.sum(1) == 1, sub.argmax(1), -1)
