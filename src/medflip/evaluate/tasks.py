"""Evaluation tasks on a cache split: which rows count and their class index.

chexpert5  the five CheXpert competition classes, rows with exactly one of them positive (CheXpert-5x200)
binary     one positive class against normal studies (RSNA pneumonia, COVID, Kermany)
"""

from __future__ import annotations

import numpy as np

from medflip.data.manifest import label_values
from medflip.errors import UserError
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS, single_class

NORMAL_CLASS_NAMES = {"normal", "no finding", "no_finding", "negative"}
# Other spellings of a class name -> the one name medflip uses (manifests written before the COVID adapter
# named its class COVID-19 say COVID). Compared lower-case.
CLASS_ALIASES = {"covid": "covid-19", "covid19": "covid-19", "covid_19": "covid-19"}


def canonical_class(name: str) -> str:
    """Lower-case class name with aliases resolved: "COVID" and "covid-19" -> "covid-19"."""
    low = str(name).strip().lower()
    return CLASS_ALIASES.get(low, low)


def chexpert5_targets(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values: raw labels [N, 14] (1/0/-1/NaN) -> (y [n] index into COMPETITION_TASKS, kept rows [n]).

    A row counts when exactly one of the five competition tasks is positive (the CheXpert-5x200 rule).
    """
    task = single_class(values, COMPETITION_TASKS)
    keep = np.flatnonzero(task >= 0)
    return task[keep], keep


def binary_targets(values: np.ndarray, classes: np.ndarray, positive: str) -> tuple[np.ndarray, np.ndarray]:
    """Positive vs normal. Positive: the label column `positive` is 1 (or, for names outside the 14
    observations such as COVID-19, the `class` column equals it, case and aliases aside). Normal: No Finding is 1 (or class is
    normal). Returns (y [n] 0 = normal / 1 = positive, kept rows)."""
    cls = np.array([canonical_class(c) for c in np.asarray(classes, dtype=str)], dtype=str)
    if positive in OBSERVATIONS:
        pos = values[:, OBSERVATIONS.index(positive)] == 1
    else:
        pos = cls == canonical_class(positive)
    normal = (
        (values[:, OBSERVATIONS.index("No Finding")] == 1) | np.isin(cls, list(NORMAL_CLASS_NAMES))
    ) & ~pos
    keep = np.flatnonzero(pos | normal)
    return pos[keep].astype(int), keep


def resolve_task(rows, task: str, positive: str | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, y, kept row indices) for a task on a cache split; clear errors when labels do not fit."""
    values = label_values(rows)
    if task == "chexpert5":
        names = list(COMPETITION_TASKS)
        y, keep = chexpert5_targets(values)
    elif task == "binary":
        if not positive:
            raise UserError("--task binary needs --positive CLASS (e.g. Pneumonia, COVID-19)")
        names = ["Normal", positive]
        y, keep = binary_targets(values, rows["class"].fillna("").to_numpy(), positive)
    else:
        raise UserError(f"unknown task {task!r}: use chexpert5 or binary")
    counts = np.bincount(y, minlength=len(names)) if len(y) else np.zeros(len(names), int)
    empty = [n for n, c in zip(names, counts) if c == 0]
    if empty:
        raise UserError(
            f"task {task}: no images of class(es) {', '.join(empty)} in this split ({len(rows)} rows)"
        )
    skipped = len(rows) - len(keep)
    if skipped:
        print(
            f"task {task}: {len(keep)} of {len(rows)} images fit the task; {skipped} skipped (not exactly one class)"
        )
    return names, y, keep
