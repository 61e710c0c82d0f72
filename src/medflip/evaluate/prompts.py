"""Zero-shot prompts: CheXpert class prompts (severity x subtype x location) and binary prompt sets.

The CheXpert generator follows the MedCLIP / GLoRIA recipe: a class prompt is "<severity> <subtype>
<location>", and a class is represented by a seeded sample of such combinations. Sampling is seeded
and the prompts used are written to the output, so a zero-shot number can always be reproduced.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import yaml

from medflip.errors import UserError
from medflip.evaluate.tasks import canonical_class

CHEXPERT_PROMPT_PARTS: dict[str, dict[str, list[str]]] = {
    "Atelectasis": {
        "severity": ["", "mild", "minimal", "subsegmental", "small"],
        "subtype": [
            "atelectasis",
            "linear atelectasis",
            "plate-like atelectasis",
            "discoid atelectasis",
            "volume loss with atelectasis",
        ],
        "location": [
            "",
            "at the left lung base",
            "at the right lung base",
            "at the lung bases",
            "in the left lower lobe",
            "in the right lower lobe",
        ],
    },
    "Cardiomegaly": {
        "severity": ["", "mild", "moderate", "severe", "stable"],
        "subtype": [
            "cardiomegaly",
            "enlarged cardiac silhouette",
            "enlargement of the heart",
            "enlarged heart",
            "increased heart size",
        ],
        "location": [""],
    },
    "Consolidation": {
        "severity": ["", "focal", "dense", "patchy", "extensive"],
        "subtype": [
            "consolidation",
            "airspace consolidation",
            "lobar consolidation",
            "consolidation with air bronchograms",
        ],
        "location": [
            "",
            "in the right upper lobe",
            "in the right lower lobe",
            "in the left lower lobe",
            "in the left upper lobe",
            "in the right middle lobe",
        ],
    },
    "Edema": {
        "severity": ["", "mild", "moderate", "severe", "acute"],
        "subtype": [
            "pulmonary edema",
            "edema",
            "vascular congestion with edema",
            "interstitial edema",
            "perihilar edema",
        ],
        "location": ["", "bilaterally", "in both lungs"],
    },
    "Pleural Effusion": {
        "severity": ["", "small", "moderate", "large", "trace"],
        "subtype": [
            "pleural effusion",
            "effusion",
            "pleural fluid",
            "effusions with blunting of the costophrenic angle",
        ],
        "location": ["", "on the left", "on the right", "bilaterally"],
    },
    "Pneumonia": {
        "severity": ["", "focal", "patchy", "mild"],
        "subtype": [
            "pneumonia",
            "infiltrate consistent with pneumonia",
            "airspace disease concerning for pneumonia",
            "consolidation compatible with pneumonia",
        ],
        "location": [
            "",
            "in the right lower lobe",
            "in the left lower lobe",
            "in the right upper lobe",
            "bilaterally",
        ],
    },
    "Pneumothorax": {
        "severity": ["", "small", "moderate", "large", "apical"],
        "subtype": ["pneumothorax", "pneumothorax with visible pleural line"],
        "location": ["", "on the left", "on the right"],
    },
    "Lung Lesion": {
        "severity": ["", "small", "large", "well-circumscribed"],
        "subtype": ["nodule", "mass", "pulmonary nodule", "lung mass"],
        "location": ["", "in the right upper lobe", "in the left upper lobe", "in the right lower lobe"],
    },
}

# Binary tasks: the positive class and the "normal" class. Negation-free normal prompts: a text encoder
# reads "no pneumonia" close to "pneumonia", so the normal set describes normal anatomy instead.
NORMAL_PROMPTS = [
    "no acute cardiopulmonary abnormality",
    "the lungs are clear",
    "normal chest radiograph",
    "clear lungs and normal heart size",
    "no active disease",
    "normal heart and lungs",
    "the cardiomediastinal silhouette is normal and the lungs are clear",
]
BINARY_POSITIVE_PROMPTS = {
    "Pneumonia": [
        "pneumonia",
        "findings consistent with pneumonia",
        "airspace opacity compatible with pneumonia",
        "focal consolidation concerning for pneumonia",
        "patchy infiltrates consistent with pneumonia",
        "bilateral pneumonia",
        "lobar pneumonia",
    ],
    "COVID-19": [
        "covid-19 pneumonia",
        "bilateral peripheral ground-glass opacities",
        "multifocal viral pneumonia",
        "patchy bilateral airspace opacities",
        "findings consistent with covid-19",
    ],
}


def chexpert_prompts(classes: list[str], n_per_class: int = 10, seed: int = 0) -> dict[str, list[str]]:
    """Seeded sample of `n_per_class` "<severity> <subtype> <location>" prompts per class."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in classes:
        if name not in CHEXPERT_PROMPT_PARTS:
            raise KeyError(f"no prompt set for class {name!r}; known: {sorted(CHEXPERT_PROMPT_PARTS)}")
        parts = CHEXPERT_PROMPT_PARTS[name]
        combos = [
            " ".join(w for w in c if w)
            for c in itertools.product(parts["severity"], parts["subtype"], parts["location"])
        ]
        combos = sorted(set(combos))
        take = rng.choice(len(combos), size=min(n_per_class, len(combos)), replace=False)
        out[name] = [combos[i] for i in sorted(take)]
    return out


def binary_prompts(positive: str, normal_name: str = "Normal") -> dict[str, list[str]]:
    """{normal_name: NORMAL_PROMPTS, positive: its prompts} (CheXpert generator prompts if no fixed set)."""
    fixed = {canonical_class(k): v for k, v in BINARY_POSITIVE_PROMPTS.items()}
    if canonical_class(positive) in fixed:  # "COVID-19", "covid-19" and "COVID" share one prompt set
        pos = fixed[canonical_class(positive)]
    elif positive in CHEXPERT_PROMPT_PARTS:
        pos = chexpert_prompts([positive], n_per_class=10)[positive]
    else:
        raise KeyError(
            f"no prompt set for {positive!r}; known: {sorted(set(BINARY_POSITIVE_PROMPTS) | set(CHEXPERT_PROMPT_PARTS))}"
        )
    return {normal_name: list(NORMAL_PROMPTS), positive: list(pos)}


NORMAL_NAMES = ("normal", "no finding", "no_finding", "healthy")


def prompts_for_classes(classes: list[str], n_per_class: int = 10, seed: int = 0) -> dict[str, list[str]]:
    """Curated prompts for class names: CheXpert observations (seeded generator), the binary sets
    (Pneumonia, COVID-19, ...), "Normal" / "No Finding" (the normal-anatomy set); any other name is its
    own single prompt (lower-cased), so free-form classes still work."""
    out: dict[str, list[str]] = {}
    for c in classes:
        if c.strip().lower() in NORMAL_NAMES:
            out[c] = list(NORMAL_PROMPTS)
        elif canonical_class(c) in {canonical_class(k) for k in BINARY_POSITIVE_PROMPTS}:
            out[c] = binary_prompts(c)[c]
        elif c in CHEXPERT_PROMPT_PARTS:
            out[c] = chexpert_prompts([c], n_per_class=n_per_class, seed=seed)[c]
        else:
            out[c] = [c.strip().lower()]
    return out


def load_prompts(path, classes: list[str] | None = None) -> dict[str, list[str]]:
    """Read a prompt file: JSON or YAML mapping class -> list of prompts (a single string is one prompt).

    classes: when given (the task's classes), the file must cover exactly these names; the result is in
    this order. Every problem raises one UserError naming the file and the offending keys.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
        raise UserError(
            f"prompt file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {e}"
        ) from e
    if not isinstance(data, dict) or not data:
        raise UserError(
            f"prompt file {path} must be a non-empty mapping class -> list of prompts, "
            f'e.g. {{"Normal": ["the lungs are clear"], "Pneumonia": ["pneumonia"]}}'
        )
    out: dict[str, list[str]] = {}
    problems = []
    for cls, value in data.items():
        if not isinstance(cls, str) or not cls.strip():
            problems.append(f"class name {cls!r} is not a non-empty string")
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            problems.append(f"{cls!r}: expected a non-empty list of prompts, got {value!r}")
            continue
        bad = [p for p in items if not isinstance(p, str) or not p.strip()]
        if bad:
            problems.append(f"{cls!r}: prompts must be non-empty strings, got {bad[:3]}")
            continue
        out[cls] = [p.strip() for p in items]
    if classes is not None:
        missing = [c for c in classes if c not in data]
        extra = [c for c in data if c not in classes]
        if missing:
            problems.append(f"missing class(es) {missing}")
        if extra:
            problems.append(f"class(es) {extra} are not in this task (classes: {list(classes)})")
    if problems:
        raise UserError(f"prompt file {path}: " + "; ".join(problems))
    return {c: out[c] for c in classes} if classes is not None else out
