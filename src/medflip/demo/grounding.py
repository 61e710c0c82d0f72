"""Does the demo model look at the right place? Grounding scored against where the phantom drew each finding.

For each held-out phantom of a class, the class name ("pleural effusion") is grounded in the image
(medflip.model.grounding) and the map, upsampled to the phantom, is compared with the finding's mask
(medflip.demo.phantom returns it):

- inside > outside: the mean map value inside the drawn finding beats the mean outside it;
- pointing game: the map's maximum falls inside the drawn finding.

Both are reported per class as a fraction of that class's held-out phantoms (chance level for the pointing
game is the finding's share of the image, listed as `area`).
"""

from __future__ import annotations

import numpy as np

from medflip.evaluate.explain import inside_outside, model_input, plot_grounding
from medflip.model.grounding import ground
from medflip.model.medflip import MedFLIP


def grounding_scores(
    model: MedFLIP, images: np.ndarray, y: np.ndarray, masks: list[dict[str, np.ndarray]], classes: list[str]
) -> dict:
    """images: uint8 [N, S, S]; y: [N] class index; masks[i][class name]: bool [S, S] -> per-class scores."""
    per: dict[str, dict] = {}
    for i, k in enumerate(np.asarray(y)):
        name = classes[int(k)]
        mask = masks[i].get(name)
        if mask is None or not mask.any() or mask.all():
            continue  # nothing drawn for it (cannot happen for the demo classes; counted below anyway)
        x, _ = model_input(images[i], model)
        g = ground(model, x, name.lower())
        inside, outside, hit = inside_outside(g.map, mask)
        r = per.setdefault(
            name, {"n": 0, "inside_beats_outside": 0, "pointing_hits": 0, "area": 0.0, "gap": 0.0}
        )
        r["n"] += 1
        r["inside_beats_outside"] += inside > outside
        r["pointing_hits"] += hit
        r["area"] += float(mask.mean())
        r["gap"] += inside - outside
    out = {}
    for name, r in per.items():
        n = r["n"]
        out[name] = {
            "n": n,
            "inside_beats_outside": round(r["inside_beats_outside"] / n, 3),
            "pointing_game": round(r["pointing_hits"] / n, 3),
            "area": round(r["area"] / n, 3),
            "mean_inside_minus_outside": round(r["gap"] / n, 4),
        }
    total = sum(r["n"] for r in per.values())
    out["all"] = {
        "n": total,
        "inside_beats_outside": round(
            sum(r["inside_beats_outside"] for r in per.values()) / max(total, 1), 3
        ),
        "pointing_game": round(sum(r["pointing_hits"] for r in per.values()) / max(total, 1), 3),
    }
    return out


def grounding_figures(
    model: MedFLIP, images: np.ndarray, y: np.ndarray, classes: list[str], out_dir, masks=None
) -> list:
    """One figure per class: its first held-out phantom, the class name grounded (outline: where it was drawn)."""
    paths = []
    for k, name in enumerate(classes):
        idx = np.flatnonzero(np.asarray(y) == k)
        if not len(idx):
            continue
        i = int(idx[0])
        x, shown = model_input(images[i], model)
        g = ground(model, x, name.lower())
        path = plot_grounding(
            g,
            shown,
            name.lower(),
            out_dir / f"grounding_{name.lower().replace(' ', '_')}.png",
            title_extra=" (held-out synthetic phantom; white: where the finding was drawn)",
            outline=None if masks is None else masks[i].get(name),
        )
        paths.append(path)
    return paths
