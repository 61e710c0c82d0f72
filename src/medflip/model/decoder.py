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
        # timm (seconds to import) when a model is built: configs import the model modules
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
        """visible: [N, L_keep, width] encoder patch tokens, ids_keep: [N, L_keep] -> pixels [N, L, p*p*C].

        Under autocast the embedded tokens come out in bf16: the mask tokens are cast to their dtype before
        the scatter (scatter_ needs one dtype on both sides).
        """
        n, keep, _ = visible.shape
        length = self.pos_embed.shape[1]
        emb = self.embed(visible)
        x = self.mask_token.to(emb.dtype).expand(n, length, -1).clone()
        x = x.scatter(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), emb)
        x = self.blocks(x + self.pos_embed.to(x.dtype))
        return self.pred(self.norm(x))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """Per-patch-normalised pixels (MAE's best target): images [N, C, H, W] -> [N, L, p*p*C], float32."""
        target = patchify(images.float(), self.patch)
        return (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()

    @staticmethod
    def masked(ids_keep: torch.Tensor, length: int) -> torch.Tensor:
        """[N, L_keep] visible indices -> [N, L] float mask, 1 on the dropped (to be reconstructed) patches."""
        masked = torch.ones(ids_keep.shape[0], length, device=ids_keep.device)
        return masked.scatter(1, ids_keep, 0.0)

    def loss(self, images: torch.Tensor, visible: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """MSE on per-patch-normalised pixels of the masked patches. images: [N, C, H, W]."""
        target = self.target(images)
        pred = self.forward(visible, ids_keep)
        masked = self.masked(ids_keep, target.shape[1])
        per_patch = (pred.float() - target).pow(2).mean(-1)
        return (per_patch * masked).sum() / masked.sum().clamp(min=1.0)
