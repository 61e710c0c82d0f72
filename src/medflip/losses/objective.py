"""The MedFLIP training objective as one module (in the manner of open_clip's ClipLoss): it gathers what the
loss needs from every rank, builds the soft targets once, and returns the weighted total and every term.

    out (one rank's share of the global batch: n of N = n * world rows)
      image_embeds [n, E], text_embeds [n, E], logit_scale []     -> L_sm, L_neg   (all-gathered with grad)
      image_tokens [n, V, E], text_tokens [n, T, E], text_mask    -> L_svd         (text tokens gathered)
      recon_pred / recon_target [n, L, P], recon_mask [n, L]      -> L_rec         (local)
      mlm_logits [s, vocab], mlm_targets [s]                      -> L_mlm         (local, global count)

How the gradient stays the single-process gradient. Every rank r returns a loss T_r such that the loss of
the global batch is L = (1/W) sum_r T_r. Gathers keep gradients and send them back to the rank that owns each
feature (the backward of all_gather sums over ranks), and DDP averages parameter gradients over ranks, so the
update is exactly d L / d theta: the single-process update on the global batch (tests/test_distributed.py).

- global mode (local_loss=False): every rank computes L_sm, L_neg and L_svd over all N x N pairs (T_r = L).
- local mode (local_loss=True, open_clip's local_loss): rank r computes only its rows: its n images against
  all N texts and its n texts against all N images; T_r is the mean over its rows, so (1/W) sum_r T_r = L.
  Cost per rank grows as n x N, not N x N.
- L_svd in both modes: each rank computes sigma for its own n images against the N gathered texts (the costly
  part: n x N top singular values), and the [n, N] blocks of scalars are gathered with gradients into the full
  [N, N] matrix for the text -> image direction. Exact, and never N x N singular values on one rank.
- L_rec is a mean over masked patches (the same count in every image) and L_mlm a sum over masked tokens
  divided by the global count, so both split over ranks as above without gathering anything large.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from medflip.errors import UserError
from medflip.losses.semantic import label_similarity
from medflip.losses.svd import top_singular_values


class Comm:
    """The ranks the objective gathers over. This base class is one process (world 1)."""

    rank, world = 0, 1

    def all_gather(self, x: torch.Tensor, grad: bool) -> torch.Tensor:
        """[n, ...] on each rank -> [world * n, ...] in rank order; with grad, backward returns to the owner."""
        return x

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, no gradient."""
        return x

    def max_int(self, value: int) -> int:
        return value


class TorchDistributed(Comm):
    """The default torch.distributed process group (gloo on CPU, NCCL on CUDA)."""

    def __init__(self) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def all_gather(self, x: torch.Tensor, grad: bool) -> torch.Tensor:
        if grad:
            return _GatherWithGrad.apply(x)
        return _gather(x)

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().clone()
        dist.all_reduce(x)
        return x

    def max_int(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())


def _gather(x: torch.Tensor) -> torch.Tensor:
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's rows (a reduce-scatter).

    Our own rather than torch.distributed.nn.functional.all_gather: its gloo backward scatters the incoming
    gradient without making it contiguous, and einsum's gradients of [n, T, E] token tensors are not; the
    result was silently wrong token gradients on CPU.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        return _gather(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        rank, n = dist.get_rank(), ctx.rows
        if dist.get_backend() == "nccl":
            out = grad.new_empty(n, *grad.shape[1:])
            dist.reduce_scatter_tensor(out, grad)
            return out
        dist.all_reduce(grad)  # gloo has no reduce-scatter: sum everything, keep our rows
        return grad[rank * n : (rank + 1) * n].clone()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class SimulatedWorld(Comm):
    """One process standing in for rank `rank` of `world` (benchmarks): the other ranks' shares are copies of
    this rank's tensors without gradient, so the arithmetic (and its cost) is that of one real rank."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def all_gather(self, x: torch.Tensor, grad: bool) -> torch.Tensor:
        parts = [x if (grad and i == self.rank) else x.detach() for i in range(self.world)]
        return torch.cat(parts, dim=0)

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach() * self.world


def default_comm() -> Comm:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return TorchDistributed()
    return Comm()


@dataclass
class ObjectiveResult:
    loss: torch.Tensor  # this rank's T_r, to call backward() on
    terms: dict[str, float] = field(
        default_factory=dict
    )  # global-batch values of every term (all ranks agree)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean over rows of -sum_j targets_ij log_softmax_j(logits_ij). logits, targets: [R, C]."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def _pad_tokens(x: torch.Tensor, length: int) -> torch.Tensor:
    """[n, T, ...] -> [n, length, ...] with zeros (ranks may tokenize to different lengths)."""
    if x.shape[1] == length:
        return x
    pad = x.new_zeros(x.shape[0], length - x.shape[1], *x.shape[2:])
    return torch.cat([x, pad], dim=1)


class MedFLIPObjective(nn.Module):
    """L = L_sm + lambda_neg L_neg + beta_svd L_svd + recon_weight L_rec + mlm_weight L_mlm (see module doc).

    cfg: a LossConfig. comm: where to gather from (default: the torch.distributed group if one is running).
    """

    def __init__(self, cfg, comm: Comm | None = None):
        super().__init__()
        if cfg.targets not in ("labels", "identity"):
            raise UserError(f"loss.targets must be 'labels' or 'identity', got {cfg.targets!r}")
        self.cfg = cfg
        self.comm = comm

    def forward(
        self, out, image_labels: torch.Tensor | None, text_labels: torch.Tensor | None
    ) -> ObjectiveResult:
        """out: the model's training output (attributes in the module doc; missing heads are None).

        image_labels / text_labels: this rank's [n, K] label vectors (unused with loss.targets identity).
        """
        comm = self.comm or default_comm()
        device = out.image_embeds.device
        # The losses run in float32 whatever the autocast around them: softmax over thousands of logits and the
        # power iteration of the SVD term lose too much in bf16. The towers (the cost) ran under autocast.
        with torch.autocast(device.type, enabled=False):
            terms, total = self._terms(out, image_labels, text_labels, comm)
        values = torch.stack([t.detach().float() for t in terms.values()])
        values = comm.all_reduce_sum(values) / comm.world
        logged = {k: float(v) for k, v in zip(terms, values.tolist(), strict=True)}
        logged["loss"] = sum(self._weight(k) * v for k, v in logged.items())
        logged["logit_scale"] = float(out.logit_scale.detach().exp())
        return ObjectiveResult(loss=total, terms=logged)

    def _weight(self, term: str) -> float:
        c = self.cfg
        return {
            "sm": 1.0,
            "neg": c.lambda_neg,
            "svd": c.beta_svd,
            "recon": c.recon_weight,
            "mlm": c.mlm_weight,
        }[term]

    def _terms(
        self, out, image_labels, text_labels, comm: Comm
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        cfg = self.cfg
        local = cfg.local_loss and comm.world > 1
        img = out.image_embeds.float()
        txt = out.text_embeds.float()
        n = img.shape[0]
        if txt.shape[0] != n:
            raise ValueError(f"{n} images but {txt.shape[0]} texts in this rank's batch")
        img_all = comm.all_gather(img, grad=True)  # [N, E]
        txt_all = comm.all_gather(txt, grad=True)
        big_n = img_all.shape[0]
        offset = comm.rank * n if local else 0  # global index of this rank's first row
        img_rows, txt_rows = (img, txt) if local else (img_all, txt_all)
        rows = img_rows.shape[0]

        # Soft targets, once per step: y [R, N] over texts for each image row, y_t [R, N] over images per text row.
        if cfg.targets == "identity":
            s = torch.zeros(rows, big_n, device=img.device)
            s[torch.arange(rows), offset + torch.arange(rows)] = 1.0
            s_t = s
            y, y_t = s, s
        else:
            if image_labels is None or text_labels is None:
                raise UserError("loss.targets labels needs image and text label vectors")
            li = image_labels.to(img.device).float()
            lt = text_labels.to(img.device).float()
            li_all, lt_all = comm.all_gather(li, grad=False), comm.all_gather(lt, grad=False)
            li_rows, lt_rows = (li, lt) if local else (li_all, lt_all)
            s = label_similarity(li_rows, lt_all)  # [R, N]
            s_t = label_similarity(lt_rows, li_all)  # [R, N]
            y = F.softmax(s / cfg.tau_s, dim=1)
            y_t = F.softmax(s_t / cfg.tau_s, dim=1)

        scale = out.logit_scale.float().exp()
        logits = scale * img_rows @ txt_all.t()  # [R, N]: image rows against all texts
        logits_t = scale * txt_rows @ img_all.t()  # [R, N]: text rows against all images
        terms: dict[str, torch.Tensor] = {
            "sm": 0.5 * (soft_cross_entropy(logits, y) + soft_cross_entropy(logits_t, y_t))
        }
        if cfg.lambda_neg:
            # L_neg = -1/N sum_i sum_{j != i} (1 - s_ij) log(1 - softmax_j(z)_ij); its sign corrected (docs/method.md).
            p = F.softmax(logits, dim=1)
            weight = (1.0 - s).clamp(min=0.0)
            weight[torch.arange(rows), offset + torch.arange(rows)] = 0.0
            terms["neg"] = -(weight * torch.log1p(-p.clamp(max=1 - 1e-6))).sum() / rows

        if cfg.beta_svd > 0:
            if out.image_tokens is None or out.text_tokens is None:
                raise UserError(
                    "loss.beta_svd > 0 needs the model's patch and word tokens (return_tokens=True)"
                )
            length = comm.max_int(out.text_tokens.shape[1])
            tok_all = comm.all_gather(_pad_tokens(out.text_tokens.float(), length), grad=True)  # [N, T, E]
            mask_all = comm.all_gather(_pad_tokens(out.text_mask.float(), length), grad=False)  # [N, T]
            sigma = top_singular_values(out.image_tokens.float(), tok_all, mask_all)  # [n, N]: the cost
            sigma_all = comm.all_gather(sigma, grad=True)  # [N, N] scalars
            if local:
                sig_rows, sig_cols = sigma, sigma_all[:, offset : offset + n].t()
            else:
                sig_rows, sig_cols = sigma_all, sigma_all.t()
            tau = cfg.svd_tau
            terms["svd"] = 0.5 * (
                soft_cross_entropy(sig_rows / tau, y) + soft_cross_entropy(sig_cols / tau, y_t)
            )

        if cfg.recon_weight > 0 and getattr(out, "ids_keep", None) is not None:  # masked step
            if getattr(out, "recon_pred", None) is None:
                raise UserError(
                    "loss.recon_weight > 0 but the model has no reconstruction decoder "
                    "(model.reconstruction_decoder true; PretrainConfig.resolved() sets it)"
                )
            per_patch = (out.recon_pred.float() - out.recon_target.float()).pow(2).mean(-1)  # [n, L]
            mask = out.recon_mask.float()
            terms["recon"] = (per_patch * mask).sum() / mask.sum().clamp(min=1.0)

        if cfg.mlm_weight > 0:
            targets = getattr(out, "mlm_targets", None)
            if targets is None:
                raise UserError("loss.mlm_weight > 0 needs masked text tokens (train.text_mask_ratio > 0)")
            if getattr(out, "mlm_logits", None) is None:
                raise UserError(
                    "loss.mlm_weight > 0 but the model has no MLM head "
                    "(model.mlm_head true; PretrainConfig.resolved() sets it)"
                )
            count = comm.all_reduce_sum(torch.tensor(float(targets.numel()), device=img.device))
            if float(count) > 0:  # the same decision on every rank: the count is global
                ce = F.cross_entropy(out.mlm_logits.float(), targets, reduction="sum")
                terms["mlm"] = ce * comm.world / count

        total = sum(self._weight(k) * v for k, v in terms.items())
        return terms, total
