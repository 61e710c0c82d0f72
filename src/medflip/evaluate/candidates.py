"""Candidate texts for category-level retrieval, grouped by class with the same count per class.

The paper's retrieval protocol (MedCLIP's, on CheXpert-5x200): every query image has a class, every candidate
text has a class, and the candidate pool holds the *same number of texts per class*. With a balanced pool,
chance P@K is 1 / n_classes for every query class, so P@K compares across classes and across models; a pool
sampled at random from report sentences would be dominated by the common findings (effusion sentences
outnumber consolidation ones several times in MIMIC), and P@K would then reward guessing the common class.

Two candidate sources:

- report sentences (`--texts paired | iu | CSV/JSONL`): labelled by medflip's report labeler, a sentence
  is a candidate of class c when it names exactly class c of the task (chexpert5: exactly one of the five
  competition findings positive; binary: the positive finding, or a normal sentence). Identical sentences
  (after whitespace / case folding) count once. Then `per_class` of each class, seeded.
- prompts (`--texts prompts`): `per_class` class prompts per class from the zero-shot prompt generator.

The protocol actually used is returned as a dict and written into the retrieval JSON.
"""

from __future__ import annotations

import numpy as np

from medflip.errors import UserError
from medflip.evaluate.tasks import binary_targets, chexpert5_targets


def sentence_candidates(
    sentences: list[list[str]], sentence_labels: list[np.ndarray], task: str, positive: str | None
) -> tuple[list[str], np.ndarray, int]:
    """Report sentences [R][S_r] with labels [S_r, 14] -> (texts, class index [T], duplicates dropped).

    A sentence is kept when its labels name exactly one class of the task (`tasks.chexpert5_targets` /
    `tasks.binary_targets`, the same rules as for images)."""
    texts: list[str] = []
    cats: list[int] = []
    seen: set[str] = set()
    duplicates = 0
    for sents, labs in zip(sentences, sentence_labels):
        labs = np.nan_to_num(np.asarray(labs, dtype=np.float32))  # an uncertain (NaN) finding is not positive
        if task == "chexpert5":
            y, keep = chexpert5_targets(labs)
        else:
            y, keep = binary_targets(labs, np.array([""] * len(labs)), str(positive))
        for k, c in zip(keep, y):
            key = " ".join(sents[k].lower().split())
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            texts.append(sents[k])
            cats.append(int(c))
    return texts, np.asarray(cats, dtype=np.int64), duplicates


def balanced_pick(cats: np.ndarray, n_classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Seeded indices of the same number of candidates per class: min(per_class, smallest class count).

    Returns (sorted indices, count per class). A class without any candidate is an error (P@K would be 0
    for its images by construction, not by the model)."""
    counts = np.bincount(cats, minlength=n_classes)
    if per_class <= 0:
        raise ValueError("per_class must be > 0")
    if n_classes == 0 or counts.min() == 0:
        raise UserError(
            "retrieval: no candidate text for class index(es) "
            f"{[c for c in range(n_classes) if counts[c] == 0]} (counts per class: {counts.tolist()})"
        )
    take = int(min(per_class, counts.min()))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(cats == c), take, replace=False) for c in range(n_classes)]
    return np.sort(np.concatenate(picked)), take
