"""Zero-shot classification and image-text retrieval with a trained MedFLIP model (docs/evaluation.md)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medflip.evaluate.inference import map_images
from medflip.evaluate.metrics import bootstrap_all, classification_metrics, confusion, precision_recall_at_k
from medflip.model.medflip import MedFLIP


def encode_images(
    model: MedFLIP,
    images_u8: np.ndarray,
    batch_size: int = 64,
    progress: bool = False,
    precision: str = "auto",
) -> torch.Tensor:
    """images_u8: [N, H, W] uint8 (array or memory map) -> [N, E] unit vectors (CPU, float32).

    precision: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16" or "fp32" (see `map_images`).
    """
    return map_images(
        model.encode_image,
        images_u8,
        model.cfg.vision.image_size,
        model.device,
        model.cfg.embed_dim,
        batch_size=batch_size,
        precision=precision,
        progress=progress,
        desc="encode images",
    )


@torch.inference_mode()
def class_embeddings(model: MedFLIP, prompts: dict[str, list[str]]) -> torch.Tensor:
    """CLIP-style prompt ensembling: per class the normalised mean of its normalised prompt embeddings. [C, E]."""
    return torch.stack(
        [F.normalize(model.encode_text(p).float().mean(0), dim=-1).cpu() for p in prompts.values()]
    )


def zero_shot(
    model: MedFLIP,
    images_u8: np.ndarray,
    y_true: np.ndarray,
    prompts: dict[str, list[str]],
    image_embeds: torch.Tensor | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Classify each image by its most similar class embedding. y_true: [N] indices into `prompts`' classes."""
    classes = list(prompts)
    img = image_embeds if image_embeds is not None else encode_images(model, images_u8)
    cls = class_embeddings(model, prompts)
    logits = model.logit_scale.detach().clamp(max=np.log(100)).exp().cpu().float() * img @ cls.t()
    probs = logits.softmax(-1).numpy()
    y_true = np.asarray(y_true)
    result = classification_metrics(y_true, probs)
    ci = bootstrap_all(y_true, probs, n_boot=n_boot, seed=seed)
    result.update(
        ci95=ci,
        n=int(len(y_true)),
        classes=classes,
        support=[int((y_true == c).sum()) for c in range(len(classes))],
        confusion=confusion(y_true, probs.argmax(1), len(classes)),
        prompts=prompts,
    )
    return result


def retrieval(
    image_embeds: torch.Tensor,
    image_cat: np.ndarray,
    text_embeds: torch.Tensor,
    text_cat: np.ndarray,
    ks: tuple[int, ...] = (1, 2, 5, 10),
) -> dict:
    """Image->text and text->image Precision@K / Recall@K by category. Embeddings: [N, E], [M, E]."""
    sim = (image_embeds.float() @ text_embeds.float().t()).numpy()
    i2t = precision_recall_at_k(sim, np.asarray(image_cat), np.asarray(text_cat), ks)
    t2i = precision_recall_at_k(sim.T, np.asarray(text_cat), np.asarray(image_cat), ks)
    out = {k: v for k, v in i2t.items() if k.startswith("p@")}  # the paper's Table 2 numbers, top level
    out.update(image_to_text=i2t, text_to_image=t2i, n_images=int(sim.shape[0]), n_texts=int(sim.shape[1]))
    return out
