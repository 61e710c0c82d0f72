"""Vision tower: a timm VisionTransformer with FLIP masking between position embedding and blocks.

We reuse timm's modules (and so its parameter names: MAE / timm / DINO checkpoints load as they are)
but run our own forward so that masking happens after the position embedding and before the class
token is prepended, and so that the visible indices and patch tokens come back to the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medflip.errors import UserError

VIT_SIZES = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}


@dataclass
class VisionConfig:
    size: str = "small"  # tiny | small | base (ViT-Ti/S/B with patch 16)
    image_size: int = 224  # any multiple of the patch size
    patch_size: int = 16
    in_chans: int = 1  # radiographs are grayscale; 3-channel checkpoints are folded on load
    drop_path: float = 0.0
    checkpoint: str = ""  # optional local timm / MAE / DINO weights file (safetensors, .pth, .bin)
    # How the image embedding is read out: "cls" (the class token, as CLIP / FLIP) or "avg" (the mean of the
    # patch tokens, as MAE fine-tuning). With "avg" the image embedding is exactly the mean of the projected
    # patch tokens, so each patch's share of the image-text similarity is a class activation map (grounding).
    pool: str = "cls"


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep a random subset of patches per sample (MAE / FLIP): the L_keep patches of lowest noise.

    x: [N, L, D] patch tokens (position embedding already added); noise: [N, L] or None (drawn here, on x's
    device, from the global RNG). Training passes noise drawn from (seed, step) for the global batch and sliced
    to this rank's rows, so the masks do not depend on the number of processes.
    Returns (x_visible [N, L_keep, D], ids_keep [N, L_keep]) with L_keep = floor(L * (1 - mask_ratio)).
    """
    n, length, dim = x.shape
    keep = int(math.floor(length * (1.0 - mask_ratio)))
    if not 0 < keep <= length:
        raise ValueError(f"mask_ratio={mask_ratio} leaves {keep} of {length} patches")
    if noise is None:
        noise = torch.rand(n, length, device=x.device)
    elif noise.shape != (n, length):
        raise ValueError(f"mask noise has shape {tuple(noise.shape)}, expected {(n, length)}")
    noise = noise.to(x.device)
    ids_keep = torch.argsort(noise, dim=1)[:, :keep]
    x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    return x_visible, ids_keep


class MaskedViT(nn.Module):
    """ViT encoder that can drop patches. Output width: `self.width`."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        if cfg.size not in VIT_SIZES:
            raise UserError(f"vision.size must be one of {sorted(VIT_SIZES)}, got {cfg.size!r}")
        if cfg.patch_size != 16:
            raise UserError("vision.patch_size: only 16 is supported (ViT-*/16)")
        if cfg.pool not in ("cls", "avg"):
            raise UserError(f"vision.pool must be 'cls' or 'avg', got {cfg.pool!r}")
        if cfg.image_size % cfg.patch_size:
            raise UserError(
                f"vision.image_size={cfg.image_size} is not a multiple of the patch size {cfg.patch_size}"
            )
        import timm  # imported here: `medflip --help` should not pay for it

        self.cfg = cfg
        self.vit = timm.create_model(
            VIT_SIZES[cfg.size],
            pretrained=False,  # never touches the network; weights come from cfg.checkpoint if given
            num_classes=0,
            img_size=cfg.image_size,
            in_chans=cfg.in_chans,
            drop_path_rate=cfg.drop_path,
        )
        self.width: int = self.vit.embed_dim
        self.num_patches: int = self.vit.patch_embed.num_patches
        if cfg.checkpoint:
            load_vision_checkpoint(self, cfg.checkpoint)

    def forward(
        self, images: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """images: [N, C, H, W] -> (pooled [N, D] (class token or patch mean: cfg.pool), visible patch tokens [N, L_keep, D], ids_keep [N, L_keep] or None).

        Masking is applied only in training mode; evaluation always sees every patch. noise: [N, L] masking
        noise (see `random_masking`), None to draw it here.
        """
        vit = self.vit
        x = vit.patch_embed(images)  # [N, L, D]
        if vit.no_embed_class:
            x = x + vit.pos_embed
            cls = vit.cls_token
        else:
            x = x + vit.pos_embed[:, 1:]
            cls = vit.cls_token + vit.pos_embed[:, :1]
        ids_keep = None
        if self.training and mask_ratio > 0:
            x, ids_keep = random_masking(x, mask_ratio, noise)
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)  # the class token is never masked
        x = vit.norm_pre(vit.pos_drop(x))
        x = vit.blocks(x)
        x = vit.norm(x)
        patches = x[:, 1:]
        pooled = patches.mean(1) if self.cfg.pool == "avg" else x[:, 0]  # avg: over the visible patches
        return pooled, patches, ids_keep


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only=True: never unpickle arbitrary objects from a file we did not write.
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    return obj


def load_vision_checkpoint(model: MaskedViT, path: str | Path) -> tuple[list[str], list[str]]:
    """Load timm / MAE / DINO ViT weights from a local file into `model.vit`.

    3-channel patch filters are summed over channels for grayscale input (timm's adapt_input_conv);
    position embeddings are resampled to this model's grid. Returns (missing, unexpected) keys.
    """
    from timm.layers import resample_abs_pos_embed
    from timm.models._manipulate import adapt_input_conv

    path = Path(path)
    if not path.is_file():
        raise UserError(f"vision checkpoint not found: {path}")
    state = _read_state_dict(path)
    cleaned: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone.", "encoder.", "visual.trunk.", "vit."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k.startswith(("decoder", "mask_token", "head", "fc_norm")):
            continue  # MAE decoder / classifier heads are not part of the encoder
        cleaned[k] = v
    vit = model.vit
    w = cleaned.get("patch_embed.proj.weight")
    if w is not None and w.shape[1] != model.cfg.in_chans:
        cleaned["patch_embed.proj.weight"] = adapt_input_conv(model.cfg.in_chans, w)
    pos = cleaned.get("pos_embed")
    if pos is not None and pos.shape != vit.pos_embed.shape:
        prefix_tokens = 0 if vit.no_embed_class else vit.num_prefix_tokens
        cleaned["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=vit.patch_embed.grid_size, num_prefix_tokens=prefix_tokens
        )
    result = vit.load_state_dict(cleaned, strict=False)
    if len(result.missing_keys) > len(vit.state_dict()) // 2:
        raise UserError(
            f"{path} does not look like a ViT checkpoint: {len(result.missing_keys)} keys missing"
        )
    return list(result.missing_keys), list(result.unexpected_keys)
