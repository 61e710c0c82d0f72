"""Cell results -> per-method metric summaries (mean +- sd over seeds, bootstrap CI) and paired comparisons."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from medflip.study import stats
from medflip.study.plan import METHODS, StudyConfig, cells


@dataclass(frozen=True)
class Metric:
    """One number of the study: task (probe@F / finetune / zeroshot / retrieval), its metric, a label."""

    task: str  # "probe", "finetune", "zeroshot", "retrieval"
    metric: str  # a stats.CLASSIFICATION key, or "p@K" for retrieval
    fraction: float = 1.0  # label fraction (probe)

    @property
    def label(self) -> str:
        names = {
            "bal_acc": "balanced accuracy",
            "auroc": "macro AUROC",
            "accuracy": "accuracy",
            "macro_f1": "macro-F1",
            "normal_fpr": "normals called pneumonia",
        }
        if self.task == "probe":
            return f"probe {self.fraction * 100:g}% {names.get(self.metric, self.metric)}"
        if self.task == "finetune":
            return f"fine-tune 10% {names.get(self.metric, self.metric)}"
        if self.task == "zeroshot":
            return f"zero-shot {names.get(self.metric, self.metric)}"
        return f"retrieval {self.metric.upper()}"


def load_results(cfg: StudyConfig) -> dict[str, dict]:
    """Finished cells of the plan whose results were made with these settings: name -> result (arrays)."""
    out = {}
    for c in cells(cfg):
        p = c.folder(cfg) / "result.json"
        if not p.is_file():
            continue
        r = json.loads(p.read_text())
        if r.get("config_key") != cfg.key():
            continue
        r["zeroshot"]["test"]["probs"] = np.asarray(r["zeroshot"]["test"]["probs"])
        r["zeroshot"]["test"]["y"] = np.asarray(r["zeroshot"]["test"]["y"])
        r["zeroshot"]["val"]["probs"] = np.asarray(r["zeroshot"]["val"]["probs"])
        r["zeroshot"]["val"]["y"] = np.asarray(r["zeroshot"]["val"]["y"])
        r["y3_test"] = np.asarray(r["y3_test"])
        for v in r["probe"].values():
            v["probs"] = np.asarray(v["probs"])
        if "finetune" in r:
            r["finetune"]["probs"] = np.asarray(r["finetune"]["probs"])
        r["retrieval"]["hits"] = np.asarray(r["retrieval"]["hits"])
        out[c.name] = r
    return out


def _closure(r: dict, m: Metric):
    """(n test images, metric(idx)) for one cell's result, or None when the cell lacks this task."""
    if m.task == "retrieval":
        j = r["retrieval"]["ks"].index(int(m.metric[2:]))
        h = r["retrieval"]["hits"][:, j]
        return len(h), lambda idx: float(h[idx].mean())
    if m.task == "zeroshot":
        y, p = r["zeroshot"]["test"]["y"], r["zeroshot"]["test"]["probs"]
    elif m.task == "probe":
        if f"{m.fraction:g}" not in r["probe"]:
            return None
        y, p = r["y3_test"], r["probe"][f"{m.fraction:g}"]["probs"]
    else:
        if "finetune" not in r:
            return None
        y, p = r["y3_test"], r["finetune"]["probs"]
    f = stats.CLASSIFICATION[m.metric]
    return len(y), lambda idx: f(y[idx], p[idx])


class Aggregate:
    """Summaries over seeds for (method, pre-training fraction) groups, on shared bootstrap resamples."""

    def __init__(self, cfg: StudyConfig, results: dict[str, dict]):
        self.cfg, self.results = cfg, results
        self._idx: dict[int, np.ndarray] = {}
        self._cache: dict = {}

    def group(self, method: str, fraction: float = 1.0) -> list[dict]:
        return sorted(
            (r for r in self.results.values() if r["method"] == method and r["fraction"] == fraction),
            key=lambda r: r["seed"],
        )

    def _boot(self, method: str, fraction: float, m: Metric):
        key = (method, fraction, m)
        if key not in self._cache:
            cl = [c for c in (_closure(r, m) for r in self.group(method, fraction)) if c is not None]
            if not cl:
                self._cache[key] = None
            else:
                n = cl[0][0]
                if n not in self._idx:
                    self._idx[n] = stats.resamples(n, self.cfg.n_boot)
                full = np.arange(n)
                values = [f(full) for _, f in cl]
                self._cache[key] = (values, stats.seed_mean_boot([f for _, f in cl], self._idx[n]))
        return self._cache[key]

    def summary(self, method: str, m: Metric, fraction: float = 1.0) -> dict | None:
        b = self._boot(method, fraction, m)
        return None if b is None else stats.summarize(*b)

    def compare(self, a: str, b: str, m: Metric, fraction: float = 1.0) -> dict | None:
        ba, bb = self._boot(a, fraction, m), self._boot(b, fraction, m)
        if ba is None or bb is None:
            return None
        return stats.compare(stats.summarize(*ba), stats.summarize(*bb), ba[1] - bb[1])

    def throughput(self, method: str, fraction: float = 1.0) -> dict | None:
        """Pre-training steps per clock minute, mean +- sd over seeds."""
        rs = self.group(method, fraction)
        rates = [
            r["train"]["steps"] / max(r["train"]["elapsed_s"], 1e-9) * 60 for r in rs if r["train"]["steps"]
        ]
        if not rates:
            return None
        return {
            "mean": float(np.mean(rates)),
            "sd": float(np.std(rates, ddof=1)) if len(rates) > 1 else float("nan"),
            "steps": [r["train"]["steps"] for r in rs],
        }


def fmt(s: dict | None, digits: int = 3) -> str:
    """ "0.812 +- 0.010 [0.790-0.833] (3)": mean +- sd over seeds [95% CI over test images] (seeds)."""
    if s is None:
        return "not run"
    sd = "" if not np.isfinite(s["sd"]) else f" ± {s['sd']:.{digits}f}"
    lo, hi = s["ci95"]
    return f"{s['mean']:.{digits}f}{sd} [{lo:.{digits}f}-{hi:.{digits}f}] ({s['n_seeds']})"


def fmt_cmp(c: dict | None) -> str:
    if c is None:
        return "not run"
    lo, hi = c["ci95"]
    why = f"; {c['why']}" if c["why"] else ""
    return f"{c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] → {c['verdict']}{why}"


def label(method: str) -> str:
    return METHODS[method][0]
