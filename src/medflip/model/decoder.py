"""Light MAE decoder for the optional image-reconstruction term (paper Eq. 9; docs/method.md).

Mask tokens fill the dropped positions, a few transformer blocks run over the full grid, and a
linear layer predicts each patch's pixels. The loss is MSE on per-patch-normalised pixels, on the
masked patches only (MAE's best setting).
"""

from __future__ import annotations

import torch
from torch import nn


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """images: [N, C, H, W] -> patches [N, L, patch*patch*C] in timm's row-major patch order."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


class MAEDecoder(nn.Module):
    def __init__(
        self, width: int, num_patches: int, patch: int, in_chans: int, dim: int = 192, depth: int = 2
    ):
        from timm.models.vision_transformer import Block

        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(width, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads=max(1, dim // 64)) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch * patch * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, visible: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """visible: [N, L_keep, width] encoder patch tokens, ids_keep: [N, L_keep] -> pixels [N, L, p*p*C]."""
        n, keep, _ = visible.shape
        length = self.pos_embed.shape[1]
        x = self.mask_token.expand(n, length, -1).clone()
        x.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), self.embed(visible))
        x = self.blocks(x + self.pos_embed)
        return self.pred(self.norm(x))

    def loss(self, images: torch.Tensor, visible: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """MSE on per-patch-normalised pixels of the masked patches. images: [N, C, H, W]."""
        target = patchify(images, self.patch)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        pred = self.forward(visible, ids_keep)
        masked = torch.ones(target.shape[:2], device=images.device)
        masked.scatter_(1, ids_keep, 0.0)
        per_patch = (pred.float() - target).pow(2).mean(-1)
        return (per_patch * masked).sum() / masked.sum().clamp(min=1.0)
