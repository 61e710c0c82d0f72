"""Zero-shot prompts: CheXpert class prompts (severity x subtype x location) and binary prompt sets.

The CheXpert generator follows the MedCLIP / GLoRIA recipe: a class prompt is "<severity> <subtype>
<location>", and a class is represented by a seeded sample of such combinations. Sampling is seeded
and the prompts used are written to the output, so a zero-shot number can always be reproduced.
"""

from __future__ import annotations

import itertools

import numpy as np

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
