"""Supervised evaluation of a pre-trained image encoder (docs/evaluation.md): linear probe and full fine-tuning.

Both train on a class-stratified, seeded fraction of a labelled training split (1%, 10%, 100% by default)
and are scored on another split with the same metrics as zero-shot (accuracy, macro-F1, AUROC, bootstrap
95% intervals, confusion matrix).

- **Linear probe**: the frozen image encoder's pooled features (the ViT class token after the final norm,
  i.e. *before* the contrastive projection, as in CLIP's linear-probe protocol) are standardised and fed to
  an L2-regularised multinomial logistic regression (scikit-learn, L-BFGS). Why scikit-learn rather than a
  torch linear layer: the problem is convex, so L-BFGS reaches the optimum deterministically with no
  learning-rate / epoch schedule to tune, and on a few hundred feature dimensions it takes seconds even for
  100k images. The regularisation strength C is chosen by 3-fold stratified cross-validation on (at most
  4096 images of) the training subset, unless given.
- **Fine-tuning**: the whole image encoder plus a linear head, AdamW (head at 10x the encoder learning
  rate), warmup + cosine, cross-entropy, the pre-training augmentation (`augment_batch`), bf16 autocast on
  CUDA (`autocast_context`); no masking.

Subsets are nested: for one seed the 1% subset is inside the 10% subset, which is inside 100%, so the curve
over fractions measures the amount of data, not the luck of the draw.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from medflip.data.augment import augment_batch, normalize
from medflip.data.views import IndexedImages  # noqa: F401 - re-exported: its old home
from medflip.errors import UserError
from medflip.evaluate.inference import map_images
from medflip.evaluate.metrics import bootstrap_all, classification_metrics, confusion
from medflip.evaluate.plots import plt, save_figure
from medflip.runtime import adamw_param_groups, autocast_context, warmup_cosine

DEFAULT_FRACTIONS = (0.01, 0.1, 1.0)
PROBE_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
PROBE_CV_MAX = 4096


def stratified_subset(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified `fraction` of `y` (class indices).

    Each class keeps round(fraction * its count) images, at least 1. Nested across fractions: each class's
    images are permuted once per seed and a prefix is taken.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"data fraction must be in (0, 1], got {fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        perm = members[rng.permutation(len(members))]
        picked.append(perm[: max(1, int(round(fraction * len(members))))])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------ metrics
def score(
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Accuracy, macro-F1, AUROC with percentile-bootstrap 95% intervals, support and confusion matrix."""
    y_true = np.asarray(y_true)
    out = classification_metrics(y_true, probs)
    out["ci95"] = bootstrap_all(y_true, probs, n_boot, seed)
    out.update(
        n=int(len(y_true)),
        classes=list(classes),
        support=[int((y_true == c).sum()) for c in range(len(classes))],
        confusion=confusion(y_true, probs.argmax(1), len(classes)),
    )
    return out


# ------------------------------------------------------------------------------------------ features
def extract_features(
    vision: nn.Module,
    images,
    image_size: int,
    device: torch.device,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
) -> np.ndarray:
    """images: uint8 [N, H, W] (array, memory map or IndexedImages) -> float32 [N, D] pooled ViT features."""
    vision.eval()
    return map_images(
        lambda x: vision(x)[0],  # (pooled, tokens, ids) -> pooled
        images,
        image_size,
        device,
        getattr(vision, "width", 0),
        batch_size=batch_size,
        precision=precision,
        progress=progress,
        desc="features",
    ).numpy()


# ------------------------------------------------------------------------------------------ probe
def fit_linear_probe(
    x: np.ndarray, y: np.ndarray, c: float | None = None, seed: int = 0, max_iter: int = 1000
):
    """Standardise + L2 logistic regression (L-BFGS). c=None: choose C by 3-fold stratified CV on <= 4096
    training images when every class has >= 3 of them (else C = 1). Returns (fitted pipeline, C used)."""
    # scikit-learn (~1 s to import) only when a probe is fitted: zero-shot and retrieval import this module
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make(cv: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=cv, max_iter=max_iter))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if c is None:
            c = 1.0
            counts = np.bincount(y)
            if len(counts[counts > 0]) > 1 and counts[counts > 0].min() >= 3:
                sub = np.arange(len(y))
                if len(y) > PROBE_CV_MAX:
                    sub = stratified_subset(y, PROBE_CV_MAX / len(y), seed)
                folds = StratifiedKFold(3, shuffle=True, random_state=seed)
                cv_acc = [cross_val_score(make(cv), x[sub], y[sub], cv=folds).mean() for cv in PROBE_C_GRID]
                c = float(PROBE_C_GRID[int(np.argmax(cv_acc))])
        clf = make(c).fit(x, y)
    return clf, c


def predict_proba(clf, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities [N, n_classes] (columns for classes absent from the training subset are 0)."""
    p = clf.predict_proba(x)
    out = np.zeros((len(x), n_classes), np.float64)
    out[:, clf.classes_] = p
    return out


# ------------------------------------------------------------------------------------------ fine-tuning
@dataclass
class FinetuneConfig:
    epochs: int = 5
    min_steps: int = 50  # tiny subsets (1%) still get this many optimizer steps
    batch_size: int = 32
    lr: float = 1e-4  # image encoder
    head_lr: float = 1e-3  # linear head
    weight_decay: float = 0.05
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 autocast on CUDA) | bf16 | fp32
    augment: bool = True
    seed: int = 0


class ImageClassifier(nn.Module):
    """Image encoder (MaskedViT, no masking) + linear head on the pooled feature."""

    def __init__(self, vision: nn.Module, n_classes: int):
        super().__init__()
        self.vision = vision
        self.head = nn.Linear(vision.width, n_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled, _, _ = self.vision(images)
        return self.head(pooled)


def _optimizer(clf: ImageClassifier, cfg: FinetuneConfig) -> torch.optim.AdamW:
    def lr_of(name: str) -> float:
        return cfg.head_lr if name.startswith("head.") else cfg.lr

    groups = adamw_param_groups(clf.named_parameters(), lr_of, cfg.weight_decay, ("pos_embed", "cls_token"))
    return torch.optim.AdamW(groups)


def finetune(
    vision: nn.Module,
    train_images,
    y_train: np.ndarray,
    n_classes: int,
    image_size: int,
    device: torch.device,
    cfg: FinetuneConfig | None = None,
    progress: bool = False,
) -> tuple[ImageClassifier, dict]:
    """Fine-tune a *copy* of `vision` + a linear head on uint8 images [N, H, W] with labels y_train.

    Steps = max(epochs * ceil(N / batch), min_steps); each epoch is a seeded permutation. Returns the
    trained classifier (eval mode) and a summary (steps, final loss).
    """
    cfg = cfg or FinetuneConfig()
    torch.manual_seed(cfg.seed)
    clf = ImageClassifier(copy.deepcopy(vision), n_classes).to(device).train()
    n = len(train_images)
    bs = min(cfg.batch_size, n)
    per_epoch = math.ceil(n / bs)
    steps = max(cfg.epochs * per_epoch, cfg.min_steps)
    opt = _optimizer(clf, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, int(cfg.warmup_frac * steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    y_all = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    perm = np.zeros(0, np.int64)
    losses = []
    for step in tqdm(range(steps), disable=not progress, desc="fine-tune", unit="step"):
        if step % per_epoch == 0:
            perm = rng.permutation(n)
        idx = np.sort(perm[(step % per_epoch) * bs : (step % per_epoch + 1) * bs])
        u8 = torch.from_numpy(np.ascontiguousarray(train_images[idx])).unsqueeze(1).to(device)
        target = y_all[idx].to(device)
        x = augment_batch(u8, image_size, gen) if cfg.augment else normalize(u8, image_size)
        with autocast_context(device, cfg.precision):
            logits = clf(x)
        loss = F.cross_entropy(logits.float(), target)
        if not torch.isfinite(loss):
            raise UserError(f"fine-tuning diverged at step {step} (loss {loss.item()}); lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(clf.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    clf.eval()
    tail = losses[-max(1, per_epoch) :]
    return clf, {"steps": steps, "final_loss": float(np.mean(tail)) if tail else float("nan")}


def classifier_proba(
    clf: ImageClassifier,
    images,
    image_size: int,
    device: torch.device,
    batch_size: int = 64,
    precision: str = "auto",
) -> np.ndarray:
    """Class probabilities [N, C] of a fine-tuned classifier on uint8 images [N, H, W]."""
    clf.eval()
    return map_images(
        lambda x: clf(x).float().softmax(-1),
        images,
        image_size,
        device,
        clf.head.out_features,
        batch_size=batch_size,
        precision=precision,
    ).numpy()


# ------------------------------------------------------------------------------------------ driver
def run_supervised(
    mode: str,
    vision: nn.Module,
    image_size: int,
    train_images,
    y_train: np.ndarray,
    eval_images,
    y_eval: np.ndarray,
    classes: list[str],
    fractions=DEFAULT_FRACTIONS,
    device: torch.device | str = "cpu",
    seed: int = 0,
    n_boot: int = 1000,
    batch_size: int = 64,
    probe_c: float | None = None,
    finetune_cfg: FinetuneConfig | None = None,
    progress: bool = False,
) -> dict:
    """Linear probe (mode "probe") or fine-tuning ("finetune") at each data fraction.

    train_images / eval_images: uint8 [N, H, W] already restricted to the task's rows (IndexedImages);
    y_*: class indices into `classes`. Returns {"mode", "classes", "results": [per fraction: fraction,
    n_train, train_support, accuracy, macro_f1, auroc, ci95, confusion, ...]}.
    """
    if mode not in ("probe", "finetune"):
        raise ValueError(f"mode must be probe or finetune, got {mode!r}")
    device = torch.device(device)
    vision = vision.to(device)
    y_train, y_eval = np.asarray(y_train), np.asarray(y_eval)
    n_classes = len(classes)
    results = []
    if mode == "probe":
        f_train = extract_features(vision, train_images, image_size, device, batch_size, progress=progress)
        f_eval = extract_features(vision, eval_images, image_size, device, batch_size, progress=progress)
    for frac in fractions:
        sub = stratified_subset(y_train, frac, seed)
        extra: dict = {}
        if mode == "probe":
            clf, c_used = fit_linear_probe(f_train[sub], y_train[sub], c=probe_c, seed=seed)
            probs = predict_proba(clf, f_eval, n_classes)
            extra["C"] = c_used
        else:
            cfg = copy.copy(finetune_cfg or FinetuneConfig())
            cfg.seed = seed
            model, info = finetune(
                vision,
                IndexedImages(train_images, sub),
                y_train[sub],
                n_classes,
                image_size,
                device,
                cfg,
                progress,
            )
            probs = classifier_proba(model, eval_images, image_size, device, batch_size, cfg.precision)
            extra.update(info)
            del model
        m = score(y_eval, probs, classes, n_boot=n_boot, seed=seed)
        m.update(
            fraction=float(frac),
            n_train=int(len(sub)),
            train_support=np.bincount(y_train[sub], minlength=n_classes).tolist(),
            **extra,
        )
        results.append(m)
        if progress:
            print(
                f"{mode} {frac:g}: n_train={len(sub)} accuracy={m['accuracy']:.3f} "
                f"macro_f1={m['macro_f1']:.3f} auroc={m['auroc']:.3f}"
            )
    return {"mode": mode, "classes": list(classes), "results": results}


def plot_fractions(result: dict, out_png, title: str = ""):
    """Accuracy, macro-F1 and AUROC (with 95% CI bars) against the training fraction, log x axis."""
    rs = result["results"]
    x = [r["fraction"] * 100 for r in rs]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("auroc", "AUROC")):
        y = np.array([r[key] for r in rs], dtype=float)
        lo = np.array([r["ci95"][key][0] for r in rs], dtype=float)
        hi = np.array([r["ci95"][key][1] for r in rs], dtype=float)
        err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0).clip(min=0)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}%" for v in x])
    ax.set_xlabel("training data (% of the training split)")
    ax.set_ylabel("score (95% CI)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or result["mode"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_png)
