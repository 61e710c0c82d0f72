"""Metrics fast enough to bootstrap thousands of times, seed aggregation, and the "better" rule.

Every metric is computed from per-image outputs stored by the cell evaluation, so one set of bootstrap
resamples of the test images serves every method: the CI of a *difference* between two methods is then a
paired interval (the same images in both), which is what "is A better than B on this test set" asks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _auroc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half. NaN when a side is empty."""
    if len(pos_scores) == 0 or len(neg_scores) == 0:
        return float("nan")
    allv = np.concatenate([pos_scores, neg_scores])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[: len(pos_scores)].sum()
    n1, n0 = len(pos_scores), len(neg_scores)
    return float((r_pos - n1 * (n1 + 1) / 2) / (n1 * n0))


def macro_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUROC of the last column; multi-class: one-vs-rest macro mean over present classes."""
    if probs.shape[1] == 2:
        return _auroc(probs[y == 1, 1], probs[y == 0, 1])
    vals = [_auroc(probs[y == c, c], probs[y != c, c]) for c in range(probs.shape[1]) if (y == c).any()]
    return float(np.nanmean(vals)) if vals else float("nan")


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def balanced_accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    cm = _confusion(y, probs.argmax(1), probs.shape[1])
    support = cm.sum(1)
    return float(np.mean(np.diag(cm)[support > 0] / support[support > 0]))


def accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == y))


def macro_f1(y: np.ndarray, probs: np.ndarray) -> float:
    cm = _confusion(y, probs.argmax(1), probs.shape[1])
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def normals_called_positive(y: np.ndarray, probs: np.ndarray) -> float:
    """Share of class-0 (normal) images whose argmax is another class: the false-positive rate."""
    neg = y == 0
    return float(np.mean(probs[neg].argmax(1) != 0)) if neg.any() else float("nan")


CLASSIFICATION: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "bal_acc": balanced_accuracy,
    "auroc": macro_auroc,
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "normal_fpr": normals_called_positive,
}


def ece(y: np.ndarray, p_pos: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error of P(positive) and the reliability bins (mean predicted, observed, n)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p_pos, edges[1:-1]), 0, bins - 1)
    out, total = [], 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            conf, freq = float(p_pos[sel].mean()), float(y[sel].mean())
            total += sel.mean() * abs(conf - freq)
            out.append(
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "mean_p": conf,
                    "observed": freq,
                    "n": int(sel.sum()),
                }
            )
    return float(total), out


def resamples(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """[n_boot, n] bootstrap index sets over n test images (the same for every method)."""
    return np.random.default_rng([seed, 7]).integers(0, n, (n_boot, n))


def seed_mean_boot(per_seed: list[Callable[[np.ndarray], float]], idx: np.ndarray) -> np.ndarray:
    """Per resample: the mean over seeds of metric(indices). per_seed: one metric(idx) closure per seed."""
    return np.array([np.nanmean([f(r) for f in per_seed]) for r in idx])


def summarize(values: list[float], boot: np.ndarray) -> dict:
    """mean +- sd over seeds and the percentile 95% CI of the seed mean over test-image resamples."""
    v = np.asarray(values, float)
    b = boot[np.isfinite(boot)]
    return {
        "mean": float(np.mean(v)),
        "sd": float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
        "n_seeds": int(len(v)),
        "values": [float(x) for x in v],
        "ci95": [float(np.quantile(b, 0.025)), float(np.quantile(b, 0.975))] if len(b) else [np.nan, np.nan],
    }


def compare(a: dict, b: dict, diff_boot: np.ndarray, min_seeds: int = 2) -> dict:
    """Is A better than B? diff_boot: bootstrap of (seed-mean A - seed-mean B) on shared resamples.

    Verdict "better" / "worse" only when both say so: the paired 95% CI of the difference excludes 0, and
    the difference exceeds twice its seed standard error sqrt(sd_A^2/n_A + sd_B^2/n_B) (needs >= min_seeds
    seeds on both sides). Otherwise "no difference shown" (with the reason).
    """
    d = a["mean"] - b["mean"]
    finite = diff_boot[np.isfinite(diff_boot)]
    lo, hi = np.quantile(finite, [0.025, 0.975]) if len(finite) else (np.nan, np.nan)
    ci_says = bool(lo > 0 or hi < 0)
    if min(a["n_seeds"], b["n_seeds"]) < min_seeds:
        se, seeds_say, why = float("nan"), False, f"fewer than {min_seeds} seeds"
    else:
        se = float(np.sqrt(a["sd"] ** 2 / a["n_seeds"] + b["sd"] ** 2 / b["n_seeds"]))
        seeds_say = abs(d) > 2 * se
        why = "" if seeds_say and ci_says else ("seed spread" if not seeds_say else "test-image CI")
    if ci_says and seeds_say:
        verdict = "better" if d > 0 else "worse"
    else:
        verdict = "no difference shown"
    return {"diff": float(d), "ci95": [float(lo), float(hi)], "seed_se": se, "verdict": verdict, "why": why}
