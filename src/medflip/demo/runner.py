"""`medflip demo`: pre-train a small MedFLIP model on built-in data, then evaluate it. Nothing is downloaded.

Text is REAL: the 3,955 Indiana University chest X-ray reports shipped inside torchxrayvision, labelled by
medflip's report labeler. Images are SYNTHETIC: phantom radiographs rendered so that each one shows its
report's findings (medflip.demo.phantom). Images and texts are drawn independently (decoupled): an image
and a sentence are positives when their label vectors agree, not because they were paired.
Held-out data and class balance: medflip.demo.data. Grounding check: medflip.demo.grounding.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from medflip.data.augment import AugmentConfig
from medflip.data.streams import DecoupledBatches
from medflip.demo.config import DemoConfig
from medflip.demo.data import build_demo_data
from medflip.demo.grounding import grounding_figures, grounding_scores
from medflip.evaluate.plots import plot_confusion, plot_loss_curve
from medflip.evaluate.prompts import chexpert_prompts
from medflip.evaluate.zeroshot import encode_images, retrieval, zero_shot
from medflip.model.medflip import MedFLIP
from medflip.model.preprocess import PreprocessConfig
from medflip.observations import COMPETITION_TASKS
from medflip.runtime import resolve_device
from medflip.train.card import write_model_card
from medflip.train.config import PretrainConfig
from medflip.train.loop import pretrain


def cpu_has_bf16() -> bool:
    """Native bf16 matmuls on this CPU (AVX512-BF16 or AMX); elsewhere bf16 autocast is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def small_attention_kernel(device: torch.device):
    """On CPU, PyTorch's plain-math attention instead of its flash kernel while the demo trains.

    The demo's ViT sees 9 tokens (8 visible patches + class token); for sequences that short the CPU flash
    kernel's bf16 backward costs ~10x its forward and ~40% of a step. Measured (one thread, interleaved, same
    load): 0.296 CPU-s per step fp32, 0.253 bf16, 0.155 bf16 + math attention.
    """
    if device.type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def demo_precision(requested: str, device: torch.device) -> str:
    if requested != "auto":
        return requested
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()) else "fp32"


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict:
    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        "medflip demo: the report TEXT is real (Indiana University reports, labelled by medflip's labeler);"
    )
    print("              the IMAGES are SYNTHETIC phantoms rendered to show each report's findings.")
    data = build_demo_data(cfg, progress)
    print(f"data: {json.dumps(data['info'])}")

    pc = PretrainConfig()
    pc.model.vision.size = cfg.vit
    pc.model.vision.image_size = cfg.image_size
    pc.model.vision.pool = cfg.pool
    pc.model.text.freeze_layers = cfg.freeze_text_layers
    pc.data.batch_size = cfg.batch_size
    pc.train.steps = cfg.steps
    pc.train.mask_ratio = cfg.mask_ratio
    pc.train.ckpt_every = cfg.steps
    pc.train.seed = cfg.seed
    pc.train.out = str(out)
    pc.optim.lr = cfg.lr
    pc.loss.tau_s = cfg.tau_s
    pc.optim.warmup_steps = max(1, cfg.steps // 10)
    torch.manual_seed(cfg.seed)
    device = resolve_device(pc.train.device)
    pc.train.precision = precision = demo_precision(cfg.precision, device)
    print(
        f"training: {cfg.steps} steps of {cfg.batch_size} on {device} ({precision}, {torch.get_num_threads()} threads)"
    )
    batches = DecoupledBatches(
        data["train_images"],
        data["train_labels"],
        data["train_corpus"],
        cfg.batch_size,
        cfg.image_size,
        seed=cfg.seed,
        augment=AugmentConfig(),
        device=device,
    )
    model = MedFLIP(pc.model)
    model.preprocess_cfg = PreprocessConfig(cache_size=int(data["train_images"].shape[-1]))  # for medflip.load
    t_train = time.perf_counter()
    with small_attention_kernel(device):
        pretrain(model, batches, pc, progress=progress, overwrite=True)  # a rerun replaces the last demo
    t_train = time.perf_counter() - t_train

    model.eval()
    prompts = chexpert_prompts(list(COMPETITION_TASKS), n_per_class=10, seed=cfg.seed)
    img_emb = encode_images(model, data["test_images"], precision=precision)
    zs = zero_shot(model, data["test_images"], data["test_y"], prompts, image_embeds=img_emb, seed=cfg.seed)
    txt_emb = model.encode_text(data["retrieval_texts"]).float().cpu()
    ret = retrieval(img_emb, data["test_y"], txt_emb, data["retrieval_cats"])
    classes = list(COMPETITION_TASKS)
    ground = grounding_scores(model, data["test_images"], data["test_y"], data["test_masks"], classes)
    figures = grounding_figures(model, data["test_images"], data["test_y"], classes, out, data["test_masks"])
    metrics = {
        "zero_shot": zs,
        "retrieval": ret,
        "grounding": ground,
        "data": {**data["info"], "images": "synthetic phantoms", "text": "real IU reports"},
        "train": {
            "steps": cfg.steps,
            "train_seconds": round(t_train, 1),
            "device": str(device),
            "precision": precision,
            "threads": torch.get_num_threads(),
        },
        "config": cfg.__dict__,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    card_data = {
        "cache": "synthetic phantom images rendered in memory (medflip.demo.phantom)",
        "split": "train",
        "images": int(len(data["train_images"])),
        "manifest_sha256": "none (built-in demo data)",
        "texts": "Indiana University reports bundled with torchxrayvision (decoupled)",
    }
    write_model_card(out / "model", pc, out, card_data)
    plot_loss_curve(out / "log.csv", out / "loss.png")
    plot_confusion(
        zs["confusion"], zs["classes"], out / "zero_shot_confusion.png", "demo zero-shot (synthetic images)"
    )
    print(
        f"zero-shot ({len(COMPETITION_TASKS)} classes, {zs['n']} held-out synthetic images): "
        f"accuracy {zs['accuracy']:.3f} (95% CI {zs['ci95']['accuracy'][0]:.3f}-{zs['ci95']['accuracy'][1]:.3f}), "
        f"macro-F1 {zs['macro_f1']:.3f}, AUROC {zs['auroc']:.3f}"
    )
    print(
        f"retrieval (image->text, {ret['n_texts']} held-out report sentences): "
        + ", ".join(f"P@{k} {ret[f'p@{k}']:.3f}" for k in (1, 2, 5, 10))
    )
    print(
        "grounding (class name on its held-out phantoms; map inside the drawn finding > outside / pointing game): "
        + ", ".join(
            f"{c} {ground[c]['inside_beats_outside']:.2f}/{ground[c]['pointing_game']:.2f}"
            for c in classes
            if c in ground
        )
    )
    print(
        f"total {metrics['total_seconds']:.0f} s (wall); run folder: {out} (model/, metrics.json, loss.png, "
        f"zero_shot_confusion.png, {len(figures)} grounding_*.png)"
    )
    print(f"look at what it learned:  medflip serve --model {out / 'model'}")
    return metrics


def score_demo_model(model_dir: str | Path, cfg: DemoConfig) -> dict:
    """Re-score a trained demo model on its held-out phantoms: zero-shot accuracy and grounding, no training."""
    data = build_demo_data(cfg, progress=False, train=False)
    model = MedFLIP.from_pretrained(model_dir).eval()
    prompts = chexpert_prompts(list(COMPETITION_TASKS), n_per_class=10, seed=cfg.seed)
    precision = demo_precision(cfg.precision, model.device)
    img_emb = encode_images(model, data["test_images"], precision=precision)
    zs = zero_shot(model, data["test_images"], data["test_y"], prompts, image_embeds=img_emb, seed=cfg.seed)
    classes = list(COMPETITION_TASKS)
    ground = grounding_scores(model, data["test_images"], data["test_y"], data["test_masks"], classes)
    print(
        f"{model_dir}: zero-shot accuracy {zs['accuracy']:.3f} on {zs['n']} held-out phantoms (seed {cfg.seed})"
    )
    print("grounding per class (n, inside > outside, pointing game, finding's share of the image):")
    for c in [*classes, "all"]:
        if c in ground:
            r = ground[c]
            print(
                f"  {c:17s} n={r['n']:3d}  inside>outside {r['inside_beats_outside']:.3f}  "
                f"pointing {r['pointing_game']:.3f}" + (f"  area {r['area']:.3f}" if "area" in r else "")
            )
    return {"model": str(model_dir), "zero_shot_accuracy": zs["accuracy"], "grounding": ground}
