"""Multi-process training in real processes (CPU, gloo): torchrun runs of `pretrain` against one-process runs.

One module fixture launches the runs (tests/dist_worker.py; tiny ViT at 32 px, MiniLM with 5 of 6 layers
frozen, global batch 8, 6 steps, every loss term on, one thread per process):
    ref1     one process x 8
    g2, l2   torchrun 2 processes x 4, global loss / local loss
    broken   2 processes, local loss, rank 1 raises at step 4 (after the checkpoint of step 4)
    broken   resumed on 2 processes;   one: a copy of broken's checkpoint resumed on 1 process
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medflip.losses import LossConfig, MedFLIPObjective, SimulatedWorld
from medflip.model.medflip import MedFLIP
from medflip.train.checkpoint import latest_checkpoint

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def torchrun(*jobs: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(TESTS / "dist_worker.py"), *jobs]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def step_losses(run: Path) -> list[float]:
    terms = json.loads((run / "losses.json").read_text())
    return [terms[str(s)]["loss"] for s in range(len(terms))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import dist_worker

    root = tmp_path_factory.mktemp("dist")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dist_worker.run_job(f"{root / 'ref1'}:local")
    finally:
        torch.set_num_threads(n)
    unbroken = torchrun(f"{root / 'g2'}:global", f"{root / 'l2'}:local")
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    broken = torchrun(f"{root / 'broken'}:local:fail=4")
    exited = time.time()
    after_failure = latest_checkpoint(root / "broken")
    MedFLIP.from_pretrained(after_failure)  # complete and loadable
    shutil.copytree(root / "broken", root / "one")
    resumed = torchrun(f"{root / 'broken'}:local:resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    torch.set_num_threads(1)
    try:
        dist_worker.run_job(f"{root / 'one'}:local:resume")
    finally:
        torch.set_num_threads(n)
    return types.SimpleNamespace(
        root=root, broken=broken, broken_exit=exited, after_failure=after_failure.name
    )


@pytest.mark.parametrize("mode", ["g2", "l2"])
def test_two_ranks_train_exactly_like_one(runs, mode):
    """2 ranks x B/2 (global loss, then local loss) == 1 rank x B: per-step losses and final weights."""
    ref, run = runs.root / "ref1", runs.root / mode
    assert len(step_losses(run)) == 6
    for a, b in zip(step_losses(ref), step_losses(run), strict=True):
        assert abs(a - b) <= 1e-5, (step_losses(ref), step_losses(run))
    w1, w2 = weights(ref), weights(run)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6), k
    # the run moved: the comparison is not between two untouched initialisations
    import dist_worker

    init = dist_worker.tiny_model(dist_worker.tiny_config("unused")).state_dict()
    assert not torch.allclose(w1["image_proj.weight"], init["image_proj.weight"], rtol=1e-4, atol=1e-6)


def test_shards_are_disjoint_and_make_the_one_rank_batch():
    import dist_worker

    cfg = dist_worker.tiny_config("unused")
    batches = dist_worker.tiny_batches(cfg)
    for step in (0, 4):
        whole = batches.batch(step)
        parts = [batches.batch(step, r, 2) for r in range(2)]
        assert not set(parts[0].image_index) & set(parts[1].image_index)
        assert np.array_equal(np.concatenate([p.image_index for p in parts]), whole.image_index)
        assert torch.equal(torch.cat([p.images for p in parts]), whole.images)  # same augmentation
        assert parts[0].texts + parts[1].texts == whole.texts
        assert torch.equal(torch.cat([p.text_labels for p in parts]), whole.text_labels)
        assert all(p.all_texts == whole.texts for p in parts)  # each rank tokenizes the global batch
    with pytest.raises(Exception, match="not divisible"):
        batches.batch(0, 0, 3)


def test_failing_rank_ends_the_group_and_keeps_the_checkpoint(runs):
    broken = runs.broken
    assert broken.returncode != 0
    assert "injected failure on rank 1 at step 4" in broken.stdout + broken.stderr
    failed_at = float((runs.root / "broken" / "failed_at").read_text())
    assert runs.broken_exit - failed_at < 60
    assert runs.after_failure == "step_00000004"  # the last checkpoint before the failure, loadable


def test_resume_on_two_ranks_is_bit_identical(runs):
    w_unbroken, w_resumed = weights(runs.root / "l2"), weights(runs.root / "broken")
    for k in w_unbroken:
        assert torch.equal(w_unbroken[k], w_resumed[k]), k


def test_two_rank_checkpoint_resumes_on_one(runs):
    w_unbroken, w_one = weights(runs.root / "l2"), weights(runs.root / "one")
    for k in w_unbroken:
        assert torch.allclose(w_unbroken[k], w_one[k], rtol=1e-4, atol=1e-6), k
    state = json.loads((latest_checkpoint(runs.root / "one") / "state.json").read_text())
    assert state["step"] == 6 and state["world_size"] == 1


# --- the objective alone: float64 features, gradients per feature (DDP's averaging applied by hand) ----------

N, E, V, T, K = 8, 16, 3, 5, 14


def _features():
    g = torch.Generator().manual_seed(0)
    f64 = torch.float64
    feats = [
        F.normalize(torch.randn(N, E, generator=g, dtype=f64), dim=-1),
        F.normalize(torch.randn(N, E, generator=g, dtype=f64), dim=-1),
        F.normalize(torch.randn(N, V, E, generator=g, dtype=f64), dim=-1),
        F.normalize(torch.randn(N, T, E, generator=g, dtype=f64), dim=-1),
    ]
    mask = torch.ones(N, T)
    mask[1, 3:] = 0
    mask[6, 2:] = 0
    labels = (torch.rand(2, N, K, generator=g) < 0.3).float()
    return feats, mask, labels


def _objective_grads(rows: slice, world: int, local: bool, comm=None):
    feats, mask, labels = _features()
    leaves = [x[rows].clone().requires_grad_() for x in feats]
    out = types.SimpleNamespace(
        image_embeds=leaves[0],
        text_embeds=leaves[1],
        image_tokens=leaves[2],
        text_tokens=leaves[3],
        text_mask=mask[rows],
        logit_scale=torch.tensor(math.log(10.0)),
        ids_keep=None,
    )
    objective = MedFLIPObjective(LossConfig(local_loss=local, beta_svd=1.0), comm)
    result = objective(out, labels[0][rows], labels[1][rows])
    result.loss.backward()
    return result.terms, [x.grad / world for x in leaves]


def _spawned(rank, world, port, local, queue):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = N // world
    terms, grads = _objective_grads(slice(rank * n, (rank + 1) * n), world, local)
    queue.put((rank, terms, [g.numpy() for g in grads]))  # plain arrays: no shared-memory handles
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("local", [False, True])
def test_objective_gradients_match_one_process(local):
    """All terms with SVD: 2 gloo ranks' per-feature gradients (averaged as DDP does) == 1 process."""
    import socket

    import torch.multiprocessing as mp

    ref_terms, ref_grads = _objective_grads(slice(0, N), 1, local)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_spawned, args=(r, 2, port, local, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((r, (t, g)) for r, t, g in (queue.get(timeout=300) for _ in procs))
    for p in procs:
        p.join(60)
    grads = [torch.from_numpy(np.concatenate([got[0][1][i], got[1][1][i]])) for i in range(4)]
    for name in ("sm", "neg", "svd", "loss"):
        assert got[0][0][name] == pytest.approx(ref_terms[name], abs=1e-5)
        assert got[1][0][name] == pytest.approx(ref_terms[name], abs=1e-5)
    for a, b in zip(ref_grads, grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_simulated_rank_costs_one_rank_but_computes_the_same_loss():
    """The benchmark's stand-in for rank r of W: identical features on every 'rank' give the 1-process loss."""
    feats, mask, labels = _features()
    n = N // 4
    rows = slice(0, n)
    rep = lambda x: x[rows].repeat(4, *([1] * (x.dim() - 1)))  # noqa: E731 - the global batch W copies of it
    out1 = types.SimpleNamespace(
        image_embeds=rep(feats[0]),
        text_embeds=rep(feats[1]),
        image_tokens=rep(feats[2]),
        text_tokens=rep(feats[3]),
        text_mask=rep(mask),
        logit_scale=torch.tensor(2.0),
        ids_keep=None,
    )
    cfg = LossConfig(local_loss=True, beta_svd=1.0)
    whole = MedFLIPObjective(cfg)(out1, rep(labels[0]), rep(labels[1])).terms
    out_r = types.SimpleNamespace(
        image_embeds=feats[0][rows],
        text_embeds=feats[1][rows],
        image_tokens=feats[2][rows],
        text_tokens=feats[3][rows],
        text_mask=mask[rows],
        logit_scale=torch.tensor(2.0),
        ids_keep=None,
    )
    sim = MedFLIPObjective(cfg, SimulatedWorld(rank=0, world=4))(
        out_r, labels[0][rows], labels[1][rows]
    ).terms
    for k in ("sm", "neg", "svd"):
        assert sim[k] == pytest.approx(whole[k], rel=1e-5)
