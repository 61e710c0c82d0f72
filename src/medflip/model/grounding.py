"""Grounding: where in the image does a phrase point? The patch x word similarity behind the SVD loss, as a map.

The SVD loss compares every projected image patch with every projected word token in one space
(M_ij = P_i T_j^T). For one image and one phrase, that matrix *is* a set of heatmaps: column w of
P T^T, reshaped to the patch grid, says how much each patch looks like word w.

    image [1, C, H, W] --ViT (no masking)--> patches [L, Dv] --image_proj, L2--> P [L, E]
    phrase            --text encoder------> tokens  [T, Dt] --text_proj,  L2--> T [T, E]   (special tokens dropped)
    S = P T^T [L, T] -> word pieces averaged into words [L, W] -> reshaped [W, H_p, W_p]
    raw map = mean over words [H_p, W_p]
    map = raw map - mean over the reference phrases of their raw maps

Why subtract a reference. Much of every patch's similarity to any finding phrase is shared by all
phrases: the patch looks like "a chest radiograph" whatever finding is asked about (CLIP Surgery, Li et
al. 2023, calls these redundant features; they can even invert a raw map). The reference is a vocabulary
of phrases of the same kind (by default the 14 observation names the labeler and zero-shot use);
subtracting their mean map leaves what is specific to *this* phrase. Measured on the demo model (64 px,
4 x 4 patches; README): inside-the-drawn-finding > outside for 0.72 of validation phantoms with the raw map,
0.94 with the reference subtracted. `reference=()` returns the raw map.

Values are cosine similarities (in [-1, 1]; the map is a difference of them); no temperature, no
normalisation per image, so maps of different phrases on one image share a scale and can be compared.
Which patches a model can ground depends on its pooling: with `vision.pool="avg"` the image embedding is
the mean of the projected patches, so patch similarities are what the image-text score is made of; a
class-token model (`"cls"`) trains its patch tokens only through the SVD loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from medflip.observations import OBSERVATIONS

if TYPE_CHECKING:  # the model module imports this one
    from medflip.model.medflip import MedFLIP


# The default reference vocabulary: the observation names, as zero-shot prompts name them.
REFERENCE_PHRASES: tuple[str, ...] = tuple(o.lower() for o in OBSERVATIONS)


@dataclass
class Grounding:
    words: list[str]  # the phrase's words (word pieces joined), in order
    word_maps: torch.Tensor  # [W, H_p, W_p] cosine similarity of each patch with each word, minus reference_map
    map: torch.Tensor  # [H_p, W_p] mean over words, minus reference_map
    similarity: float  # pooled image-text cosine similarity (what zero-shot and retrieval rank by)
    reference_map: torch.Tensor  # [H_p, W_p] mean raw map of the reference phrases (zeros when none)
    reference: tuple[str, ...] = ()

    @property
    def raw_map(self) -> torch.Tensor:
        """[H_p, W_p] the phrase's own mean patch x word cosine similarity, nothing subtracted."""
        return self.map + self.reference_map


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


def _word_similarities(
    model: MedFLIP, p: torch.Tensor, texts: Sequence[str]
) -> list[tuple[torch.Tensor, list[str]]]:
    """p: [L, E] normalised projected patches; texts: phrases (one text-tower pass for all) ->
    per phrase (cosine similarity of each patch with each of its words [W, L], the words)."""
    encoded = [phrase_words(model.tokenizer, t, model.cfg.text.max_length) for t in texts]
    for text, (_, groups, _) in zip(texts, encoded):
        if not groups:
            raise ValueError(f"the phrase {text!r} has no words to ground")
    width = max(enc["input_ids"].shape[1] for enc, _, _ in encoded)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.full((len(texts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    for i, (enc, _, _) in enumerate(encoded):
        n = enc["input_ids"].shape[1]
        ids[i, :n], mask[i, :n] = enc["input_ids"][0], enc["attention_mask"][0]
    _, tokens = model.text(ids.to(model.device), mask.to(model.device))  # [R, T, Dt]; padding masked out
    t = F.normalize(model.text_proj(tokens).float(), dim=-1)  # [R, T, E]
    out = []
    for i, (_, groups, words) in enumerate(encoded):
        s = p @ t[i].t()  # [L, T]
        out.append((torch.stack([s[:, g].mean(1) for g in groups], 0), words))
    return out


@torch.no_grad()
def ground(
    model: MedFLIP, image, text: str, reference: Sequence[str] | None = None
) -> Grounding:
    """image: a normalised tensor [C, H, W] or [1, C, H, W], or a file / PIL image / array (prepared by
    `model.preprocess`, as training saw it); text: a phrase; reference: the phrases whose mean map is
    subtracted (default REFERENCE_PHRASES; `()` for the raw map).

    Raises ValueError when the phrase has no word (empty, or special tokens only).
    """
    reference = REFERENCE_PHRASES if reference is None else tuple(reference)
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        image = model.preprocess(image)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image [C, H, W] or [1, C, H, W], got {tuple(image.shape)}")
    was_training = model.training
    model.eval()
    try:
        pooled_v, patches, _ = model.vision(image.to(model.device).float())  # [1, Dv], [1, L, Dv]
        p = F.normalize(model.image_proj(patches[0]).float(), dim=-1)  # [L, E]
        (per_word, words), *refs = _word_similarities(model, p, [text, *reference])  # [W, L], ...
        ref = torch.zeros(p.shape[0], device=p.device)
        if refs:
            ref = torch.stack([r.mean(0) for r, _ in refs]).mean(0)  # each reference's raw map, averaged
        sim = F.normalize(model.image_proj(pooled_v).float(), dim=-1) @ model.encode_text([text]).t()
    finally:
        model.train(was_training)
    grid = model.vision.vit.patch_embed.grid_size
    word_maps = (per_word - ref).reshape(len(words), *grid).cpu()
    return Grounding(
        words=words,
        word_maps=word_maps,
        map=word_maps.mean(0),
        similarity=float(sim),
        reference_map=ref.reshape(*grid).cpu(),
        reference=reference,
    )
