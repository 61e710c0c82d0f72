"""Data preparation and the evaluation of one study cell (a pre-trained model) on every task.

Per-image outputs (probabilities, retrieval hits) are stored, not only summary metrics, so the report can
bootstrap any metric and any *paired difference* between methods over the same test images.

Tasks (all scored on the test split; the validation split is used only for the zero-shot calibration fix):
- probe: 3 classes (normal / bacterial / viral, manifest column `subtype`), logistic regression on frozen
  features, trained on stratified seeded 1% / 10% / 100% of the train split;
- finetune: the image encoder + a linear head on 10% of the train split (selected methods);
- zeroshot: pneumonia vs normal with the binary prompt ensembles;
- retrieval: image -> text against held-out IU sentences labelled Pneumonia or No Finding (equal counts);
- curve: zero-shot AUROC and 10%-probe balanced accuracy at evenly spaced checkpoints (seed-0 cells).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medflip.data.cache import open_cache
from medflip.data.manifest import label_values
from medflip.errors import UserError
from medflip.evaluate.tasks import binary_targets
from medflip.labeler.iu_reports import load_iu_reports
from medflip.observations import OBSERVATIONS
from medflip.study.plan import Cell, StudyConfig, is_curve_cell, retrieval_pool_path, text_corpus_path


# ------------------------------------------------------------------------------------------ data preparation
def load_reports(source: str) -> list[str]:
    """Report texts: "iu" (torchxrayvision's bundled IU reports) or a CSV/JSONL file with a `report` column."""
    if source == "iu":
        return [r.text for r in load_iu_reports() if r.text]
    path = Path(source)
    if not path.is_file():
        raise UserError(f"texts: {source!r} is neither 'iu' nor an existing CSV/JSONL file")
    df = (
        pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".json") else pd.read_csv(path, dtype=str)
    )
    if "report" not in df.columns:
        raise UserError(f"{path} has no column 'report' (columns: {', '.join(map(str, df.columns))})")
    texts = df["report"].fillna("").astype(str).str.strip()
    return texts[texts != ""].tolist()


def prepare_texts(cfg: StudyConfig) -> dict:
    """Split the text corpus by report into the pre-training corpus and a held-out retrieval pool.

    Held out: a seeded `retrieval_holdout` share of the reports with a sentence positive for `positive`,
    plus as many other reports. The pool takes every positive sentence of the held-out reports and as many
    distinct No Finding sentences of them (equal counts). Writes texts_train.csv and retrieval_pool.csv.
    """
    from medflip.data.streams import TextCorpus

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_p, pool_p = text_corpus_path(cfg), retrieval_pool_path(cfg)
    info_p = out / "texts_info.json"
    if train_p.is_file() and pool_p.is_file() and info_p.is_file():
        return json.loads(info_p.read_text())
    reports = load_reports(cfg.texts)
    corpus = TextCorpus.from_reports(reports)
    rng = np.random.default_rng([0, 11])
    cats = []  # per report: sentence categories (1 positive, 0 normal, -1 neither)
    for labs in corpus.sentence_labels:
        y, keep = binary_targets(labs, np.array([""] * len(labs)), cfg.positive)
        c = np.full(len(labs), -1)
        c[keep] = y
        cats.append(c)
    has_pos = np.array([(c == 1).any() for c in cats])
    pos_ids = np.flatnonzero(has_pos)
    n_hold = max(1, int(round(cfg.retrieval_holdout * len(pos_ids))))
    held_pos = rng.choice(pos_ids, n_hold, replace=False) if len(pos_ids) else np.zeros(0, int)
    others = np.flatnonzero(~has_pos)
    held_other = rng.choice(others, min(len(others), max(n_hold, 1)), replace=False)
    held = np.sort(np.concatenate([held_pos, held_other]))
    pos_s = sorted({corpus.sentences[r][i] for r in held for i in np.flatnonzero(cats[r] == 1)})
    neg_s = sorted({corpus.sentences[r][i] for r in held for i in np.flatnonzero(cats[r] == 0)} - set(pos_s))
    n = min(len(pos_s), len(neg_s))
    if n == 0:
        raise UserError(
            f"retrieval pool: no held-out sentence positive for {cfg.positive!r} or No Finding in {cfg.texts!r}"
        )
    pos_s = [pos_s[i] for i in np.sort(rng.choice(len(pos_s), n, replace=False))]
    neg_s = [neg_s[i] for i in np.sort(rng.choice(len(neg_s), n, replace=False))]
    keep = np.setdiff1d(np.arange(len(reports)), held)
    pd.DataFrame({"report": [reports[i] for i in keep]}).to_csv(train_p, index=False)
    pd.DataFrame({"sentence": pos_s + neg_s, "category": [1] * n + [0] * n}).to_csv(pool_p, index=False)
    train_sents = {s for r in keep for s in corpus.sentences[r]}
    info = {
        "reports": len(reports),
        "held_out_reports": int(len(held)),
        "train_reports": int(len(keep)),
        "pool_per_class": n,
        "pool_sentences_also_in_training_reports": int(sum(s in train_sents for s in pos_s + neg_s)),
    }
    info_p.write_text(json.dumps(info, indent=2))
    return info


def probe_targets(rows: pd.DataFrame, cfg: StudyConfig) -> tuple[np.ndarray, np.ndarray]:
    """(y [n] index into probe_classes, kept rows) from the manifest column `probe_column`.

    probe_column "labels": the probe classes are observation label columns (e.g. the CheXpert competition
    five on MIMIC-CXR, whose `class` column is blank); an image is kept when exactly one of them is positive
    (1), as in CheXpert-5x200, and that one is its class.
    """
    if cfg.probe_column == "labels":
        return _single_positive_targets(rows, cfg.probe_classes)
    if cfg.probe_column not in rows.columns:
        raise UserError(
            f"the cache rows have no column {cfg.probe_column!r} (re-import with the current adapter: "
            "`medflip data import kermany` writes `subtype`)"
        )
    col = rows[cfg.probe_column].fillna("").astype(str).str.lower().to_numpy()
    classes = [c.lower() for c in cfg.probe_classes]
    keep = np.flatnonzero(np.isin(col, classes))
    y = np.array([classes.index(v) for v in col[keep]], dtype=int)
    missing = [c for i, c in enumerate(classes) if not (y == i).any()]
    if missing:
        raise UserError(f"probe task: no image of class(es) {missing} in column {cfg.probe_column!r}")
    return y, keep


def _single_positive_targets(rows: pd.DataFrame, classes) -> tuple[np.ndarray, np.ndarray]:
    lower = {o.lower(): i for i, o in enumerate(OBSERVATIONS)}
    unknown = [c for c in classes if c.lower() not in lower]
    if unknown:
        raise UserError(f"probe task: {unknown} are not observation labels ({', '.join(OBSERVATIONS)})")
    pos = label_values(rows)[:, [lower[c.lower()] for c in classes]] == 1  # NaN (blank) is not positive
    keep = np.flatnonzero(pos.sum(1) == 1)
    y = pos[keep].argmax(1)
    missing = [c for i, c in enumerate(classes) if not (y == i).any()]
    if missing:
        raise UserError(f"probe task: no image with {missing} as its only positive among {list(classes)}")
    return y, keep


# ------------------------------------------------------------------------------------------ evaluation
# The evaluation below imports torch, the model and the evaluators in the functions that use them:
# `medflip study status` / `report` import this module (through the runner) and must run without torch.
def _zero_shot_probs(model, img_emb, prompts) -> np.ndarray:
    """Softmax over the prompt-ensemble class embeddings at the model's temperature. [N, C]."""
    from medflip.evaluate.zeroshot import class_embeddings

    cls = class_embeddings(model, prompts)
    scale = model.logit_scale.detach().clamp(max=np.log(100)).exp().cpu().float()
    return (scale * img_emb @ cls.t()).softmax(-1).numpy()


def _embed(model, pooled: np.ndarray):
    """Pooled ViT features [N, D] -> unit image embeddings [N, E] (what MedFLIP.encode_image returns)."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        proj = model.image_proj(torch.from_numpy(pooled).to(model.device))
        return F.normalize(proj.float(), dim=-1).cpu()


def _retrieval_hits(img_emb, y_img: np.ndarray, txt_emb, cat_txt: np.ndarray, ks=(1, 2, 5, 10)) -> np.ndarray:
    """Per-image precision@K [N, len(ks)]: share of the top-K sentences whose category is the image's."""
    sim = (img_emb.float() @ txt_emb.float().t()).numpy()
    order = np.argsort(-sim, axis=1, kind="stable")
    rel = cat_txt[order] == y_img[:, None]
    return np.stack([rel[:, : min(k, rel.shape[1])].mean(1) for k in ks], 1)


def _probe(f_train, y_train, f_test, fractions, seed: int, n_classes: int) -> dict:
    from medflip.evaluate.supervised import fit_linear_probe, predict_proba, stratified_subset

    out = {}
    for frac in fractions:
        sub = stratified_subset(y_train, frac, seed)
        clf, c = fit_linear_probe(f_train[sub], y_train[sub], seed=seed)
        out[f"{frac:g}"] = {
            "probs": predict_proba(clf, f_test, n_classes).round(5).tolist(),
            "C": c,
            "n_train": int(len(sub)),
        }
    return out


def _splits(cfg: StudyConfig):
    from medflip.evaluate.supervised import IndexedImages

    caches = {s: open_cache(cfg.cache, s) for s in ("train", "val", "test")}
    d = {}
    for s, c in caches.items():
        y3, k3 = probe_targets(c.rows, cfg)

        yb, kb = binary_targets(label_values(c.rows), c.rows["class"].fillna("").to_numpy(), cfg.positive)
        d[s] = {
            "cache": c,
            "y3": y3,
            "k3": k3,
            "yb": yb,
            "kb": kb,
            "img3": IndexedImages(c.images, k3),
            "imgb": IndexedImages(c.images, kb),
            "all": IndexedImages(c.images, np.arange(len(c.rows))),  # reads copy rows out of the memory map
        }
    return d


def evaluate_cell(cfg: StudyConfig, cell: Cell, progress: bool = False) -> dict:
    """Every task on the cell's final model (+ the checkpoint curve for seed 0). Writes result.json."""
    import torch

    from medflip.evaluate.prompts import binary_prompts
    from medflip.evaluate.supervised import (
        FinetuneConfig,
        IndexedImages,
        classifier_proba,
        extract_features,
        finetune,
        stratified_subset,
    )
    from medflip.model.medflip import MedFLIP

    t0 = time.process_time()
    folder = cell.folder(cfg)
    run = folder / "run"
    if not (run / "model").is_dir():
        raise UserError(f"{run}/model does not exist: pre-train the cell first")
    device = torch.device(cfg.device)
    sp = _splits(cfg)
    prompts = binary_prompts(cfg.positive)
    pool = pd.read_csv(retrieval_pool_path(cfg))
    model = MedFLIP.from_pretrained(run / "model", map_location=device).eval()
    size, prec = model.cfg.vision.image_size, cfg.precision
    res: dict = {
        "cell": cell.name,
        "method": cell.method,
        "seed": cell.seed,
        "fraction": cell.fraction,
        "config_key": cfg.key(),
    }
    # one forward pass per split: pooled features (probe) and, through the projection, embeddings (zero-shot)
    feats = {s: extract_features(model.vision, sp[s]["all"], size, device, precision=prec) for s in sp}
    embs = {s: _embed(model, feats[s]) for s in ("val", "test")}
    res["zeroshot"] = {
        s: {
            "probs": _zero_shot_probs(model, embs[s][sp[s]["kb"]], prompts).round(5).tolist(),
            "y": sp[s]["yb"].tolist(),
        }
        for s in ("val", "test")
    }
    txt = model.encode_text(pool["sentence"].tolist()).float().cpu()
    hits = _retrieval_hits(embs["test"][sp["test"]["kb"]], sp["test"]["yb"], txt, pool["category"].to_numpy())
    res["retrieval"] = {"ks": [1, 2, 5, 10], "hits": hits.round(4).tolist(), "n_texts": int(len(pool))}
    # 3-class linear probe
    f_tr, f_te = feats["train"][sp["train"]["k3"]], feats["test"][sp["test"]["k3"]]
    res["probe"] = _probe(
        f_tr, sp["train"]["y3"], f_te, cfg.probe_fractions, cell.seed, len(cfg.probe_classes)
    )
    res["y3_test"] = sp["test"]["y3"].tolist()
    if cell.method in cfg.finetune_methods and cell.fraction == 1.0:
        sub = stratified_subset(sp["train"]["y3"], cfg.finetune_fraction, cell.seed)
        ft_cfg = FinetuneConfig(epochs=cfg.finetune_epochs, precision=prec, seed=cell.seed)
        clf, info = finetune(
            model.vision,
            IndexedImages(sp["train"]["img3"], sub),
            sp["train"]["y3"][sub],
            len(cfg.probe_classes),
            size,
            device,
            ft_cfg,
        )
        res["finetune"] = {
            "probs": classifier_proba(clf, sp["test"]["img3"], size, device, precision=prec)
            .round(5)
            .tolist(),
            "fraction": cfg.finetune_fraction,
            **info,
        }
    if is_curve_cell(cfg, cell):
        res["curve"] = checkpoint_curve(cfg, run, sp, prompts, device)
    res["train"] = train_summary(run)
    res["eval_cpu_s"] = round(time.process_time() - t0, 1)
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(res))
    tmp.replace(folder / "result.json")  # atomic: a killed evaluation leaves no half result
    if cfg.prune_checkpoints:  # 150 MB each (the locked text tower is saved too); the curve is measured

        shutil.rmtree(run / "checkpoints", ignore_errors=True)
    return res


def checkpoint_curve(cfg: StudyConfig, run: Path, sp: dict, prompts, device) -> list[dict]:
    """Zero-shot AUROC and 10%-probe balanced accuracy at evenly spaced checkpoints of one run."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from medflip.evaluate.efficiency import _elapsed, thin
    from medflip.evaluate.supervised import IndexedImages, extract_features, stratified_subset
    from medflip.model.medflip import MedFLIP
    from medflip.train.checkpoint import list_checkpoints

    seed = min(cfg.seeds)
    sub = stratified_subset(sp["train"]["y3"], 0.1, seed)
    tr_imgs = IndexedImages(sp["train"]["img3"], sub)
    points = []
    for ckpt in thin(list_checkpoints(run), cfg.curve_checkpoints):
        step, elapsed = _elapsed(ckpt)
        m = MedFLIP.from_pretrained(ckpt, map_location=device).eval()
        size = m.cfg.vision.image_size
        f_test = extract_features(m.vision, sp["test"]["all"], size, device, precision=cfg.precision)
        p = _zero_shot_probs(m, _embed(m, f_test)[sp["test"]["kb"]], prompts)
        f_tr = extract_features(m.vision, tr_imgs, size, device, precision=cfg.precision)
        f_te = f_test[sp["test"]["k3"]]
        pr = _probe(f_tr, sp["train"]["y3"][sub], f_te, (1.0,), seed, len(cfg.probe_classes))["1"]["probs"]
        points.append(
            {
                "step": step,
                "elapsed_s": elapsed,
                "zeroshot_auroc": float(roc_auc_score(sp["test"]["yb"], p[:, 1])),
                "probe10_bal_acc": float(balanced_accuracy_score(sp["test"]["y3"], np.argmax(pr, 1))),
            }
        )
    return points


def train_summary(run: Path) -> dict:
    """Steps, training clock seconds and the clock used, from the run's log and last checkpoint."""
    from medflip.evaluate.efficiency import _elapsed
    from medflip.train.checkpoint import list_checkpoints

    ckpts = list_checkpoints(run)
    step, elapsed = _elapsed(ckpts[-1]) if ckpts else (0, 0.0)
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    return {"steps": step, "elapsed_s": round(elapsed, 1), "clock": cfg.get("train", {}).get("budget_clock")}
