"""DDP: the loss on all-gathered features gives the single-process gradient (2 CPU ranks over gloo)."""

import math
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from medflip.losses import LossConfig, contrastive_losses
from medflip.train.distributed import gather_no_grad, gather_with_grad

N, E, K = 8, 16, 14


def _data():
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(N, E, generator=g), dim=-1)
    t = F.normalize(torch.randn(N, E, generator=g), dim=-1)
    labels_v = (torch.rand(N, K, generator=g) < 0.3).float()
    labels_t = (torch.rand(N, K, generator=g) < 0.3).float()
    return v, t, labels_v, labels_t


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    v, t, lv, lt = _data()
    part = slice(rank * N // world, (rank + 1) * N // world)
    v_local = v[part].clone().requires_grad_()
    t_local = t[part].clone().requires_grad_()
    terms = contrastive_losses(
        gather_with_grad(v_local),
        gather_with_grad(t_local),
        torch.tensor(math.log(10.0)),
        gather_no_grad(lv[part]),
        gather_no_grad(lt[part]),
        LossConfig(),
    )
    loss = terms["sm"] + terms["neg"]
    loss.backward()
    # DDP averages parameter gradients over ranks; features' grads are summed by all_gather's backward.
    out[rank] = (float(loss), (v_local.grad / world).clone(), (t_local.grad / world).clone())
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_loss_matches_single_process():
    v, t, lv, lt = _data()
    v1, t1 = v.clone().requires_grad_(), t.clone().requires_grad_()
    terms = contrastive_losses(v1, t1, torch.tensor(math.log(10.0)), lv, lt, LossConfig())
    (terms["sm"] + terms["neg"]).backward()

    world = 2
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(world, _free_port(), out), nprocs=world, join=True)
    for rank in range(world):
        loss, gv, gt = out[rank]
        part = slice(rank * N // world, (rank + 1) * N // world)
        assert math.isclose(loss, float((terms["sm"] + terms["neg"]).detach()), rel_tol=1e-5)
        assert torch.allclose(gv, v1.grad[part], atol=1e-6)
        assert torch.allclose(gt, t1.grad[part], atol=1e-6)
