"""Grounding: where in the image does a phrase point? The patch x word similarity behind the SVD loss, as a map.

The SVD loss compares every projected image patch with every projected word token in one space
(M_ij = P_i T_j^T). For one image and one phrase, that matrix *is* a set of heatmaps: column w of
P T^T, reshaped to the patch grid, says how much each patch looks like word w.

    image [1, C, H, W] --ViT (no masking)--> patches [L, Dv] --image_proj, L2--> P [L, E]
    phrase            --text encoder------> tokens  [T, Dt] --text_proj,  L2--> T [T, E]   (special tokens dropped)
    S = P T^T [L, T] -> word pieces averaged into words [L, W] -> reshaped [W, H_p, W_p]
    map = mean over words [H_p, W_p]

Values are cosine similarities (in [-1, 1]); no temperature, no normalisation per image, so maps of
different phrases on one image share a scale and can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # the model module imports this one
    from medflip.model.medflip import MedFLIP


@dataclass
class Grounding:
    words: list[str]  # the phrase's words (word pieces joined), in order
    word_maps: torch.Tensor  # [W, H_p, W_p] cosine similarity of each patch with each word
    map: torch.Tensor  # [H_p, W_p] mean over words
    similarity: float  # pooled image-text cosine similarity (what zero-shot and retrieval rank by)


def phrase_words(
    tokenizer, text: str, max_length: int
) -> tuple[dict[str, torch.Tensor], list[list[int]], list[str]]:
    """Tokenise `text`; group the non-special token positions by word.

    Returns (encoding with input_ids / attention_mask [1, T], positions of each word, the words' text).
    A fast tokenizer knows which word each piece belongs to; otherwise every piece is its own word.
    """
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(
        [text], truncation=True, max_length=max_length, return_tensors="pt", return_offsets_mapping=fast
    )
    ids = enc["input_ids"][0].tolist()
    special = set(tokenizer.all_special_ids)
    groups: dict[int, list[int]] = {}
    spans: dict[int, tuple[int, int]] = {}
    if fast:
        for pos, (wid, (a, b)) in enumerate(zip(enc.word_ids(0), enc["offset_mapping"][0].tolist())):
            if wid is None or ids[pos] in special:
                continue
            groups.setdefault(wid, []).append(pos)
            lo, hi = spans.get(wid, (a, b))
            spans[wid] = (min(lo, a), max(hi, b))
        words = [text[spans[w][0] : spans[w][1]] for w in groups]
    else:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        for pos, tid in enumerate(ids):
            if tid not in special:
                groups[pos] = [pos]
        words = [pieces[p] for p in groups]
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return out, list(groups.values()), words


@torch.no_grad()
def ground(model: MedFLIP, image, text: str) -> Grounding:
    """image: a normalised tensor [C, H, W] or [1, C, H, W], or a file / PIL image / array (prepared by
    `model.preprocess`, as training saw it); text: a phrase.

    Raises ValueError when the phrase has no word (empty, or special tokens only).
    """
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        image = model.preprocess(image)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image [C, H, W] or [1, C, H, W], got {tuple(image.shape)}")
    enc, groups, words = phrase_words(model.tokenizer, text, model.cfg.text.max_length)
    if not groups:
        raise ValueError(f"the phrase {text!r} has no words to ground")
    was_training = model.training
    model.eval()
    try:
        device = model.device
        pooled_v, patches, _ = model.vision(image.to(device).float())  # [1, Dv], [1, L, Dv]
        pooled_t, tokens = model.text(enc["input_ids"].to(device), enc["attention_mask"].to(device))
    finally:
        model.train(was_training)
    p = F.normalize(model.image_proj(patches[0]).float(), dim=-1)  # [L, E]
    t = F.normalize(model.text_proj(tokens[0]).float(), dim=-1)  # [T, E]
    s = p @ t.t()  # [L, T]
    per_word = torch.stack([s[:, g].mean(1) for g in groups], 0)  # [W, L]
    grid = model.vision.vit.patch_embed.grid_size
    word_maps = per_word.reshape(len(groups), *grid).cpu()
    sim = (
        F.normalize(model.image_proj(pooled_v).float(), dim=-1)
        @ F.normalize(model.text_proj(pooled_t).float(), dim=-1).t()
    )
    return Grounding(words=words, word_maps=word_maps, map=word_maps.mean(0), similarity=float(sim))
