"""Training loop: step-exact resume, NaN handling, optimizer groups, schedule, overfitting a tiny batch."""

import csv
import math

import numpy as np
import pytest
import torch

from medflip.data.augment import AugmentConfig
from medflip.data.streams import DecoupledBatches, TextCorpus
from medflip.model.medflip import MedFLIP
from medflip.train import loop
from medflip.train.checkpoint import latest_checkpoint, list_checkpoints
from medflip.train.config import PretrainConfig
from medflip.train.loop import TrainingDiverged, build_optimizer, pretrain, warmup_cosine

K = 14


def tiny_config(out, steps=4) -> PretrainConfig:
    cfg = PretrainConfig()
    cfg.model.vision.size = "tiny"
    cfg.model.vision.image_size = 32
    cfg.model.embed_dim = 32
    cfg.model.text.freeze_layers = 5
    cfg.data.batch_size = 4
    cfg.train.steps = steps
    cfg.train.log_every = 1
    cfg.train.ckpt_every = 2
    cfg.train.out = str(out)
    cfg.optim.warmup_steps = 1
    return cfg


def tiny_data(n=8, seed=0, size=40):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = np.zeros((n, K), np.float32)
    labels[np.arange(n), np.arange(n) % K] = 1
    sentences = [[f"finding number {i}", f"another sentence {i}"] for i in range(n)]
    corpus = TextCorpus(
        [" ".join(s) for s in sentences],
        sentences,
        [np.repeat(labels[i : i + 1], 2, 0) for i in range(n)],
        labels,
    )
    return images, labels, corpus


def make_batches(cfg, data, augment=True):
    images, labels, corpus = data
    return DecoupledBatches(
        images,
        labels,
        corpus,
        cfg.data.batch_size,
        cfg.model.vision.image_size,
        seed=cfg.train.seed,
        augment=AugmentConfig() if augment else None,
    )


def test_batches_are_deterministic_per_step():
    cfg = tiny_config("unused")
    b1 = make_batches(cfg, tiny_data())
    b2 = make_batches(cfg, tiny_data())
    x, y = b1.batch(5), b2.batch(5)
    assert torch.equal(x.images, y.images) and x.texts == y.texts
    assert not torch.equal(b1.batch(4).images, x.images)
    # An epoch visits every image once (drop-last aside).
    seen = np.concatenate([b1.batch(s).image_index for s in range(b1.batches_per_epoch)])
    assert sorted(seen.tolist()) == list(range(8))


def test_resume_is_step_exact(tmp_path):
    data = tiny_data()
    torch.manual_seed(0)
    straight = MedFLIP(tiny_config(tmp_path / "a").model)
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    pretrain(
        straight,
        make_batches(tiny_config(tmp_path / "a"), data),
        tiny_config(tmp_path / "a", steps=4),
        progress=False,
    )

    interrupted = MedFLIP(tiny_config(tmp_path / "b").model)
    interrupted.load_state_dict(init)
    cfg_b = tiny_config(tmp_path / "b", steps=4)
    torch.manual_seed(123)  # resume must restore RNG state, not depend on the caller's

    def stop_after_two(*args, _count=[0], **kwargs):  # noqa: B006 - a call counter
        _count[0] += 1
        if _count[0] > 2:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    real_step = loop.train_step_losses
    loop.train_step_losses = stop_after_two
    try:
        with pytest.raises(KeyboardInterrupt):
            pretrain(interrupted, make_batches(cfg_b, data), cfg_b, progress=False)
    finally:
        loop.train_step_losses = real_step
    assert latest_checkpoint(tmp_path / "b").name == "step_00000002"

    resumed = MedFLIP(cfg_b.model)
    pretrain(resumed, make_batches(cfg_b, data), cfg_b, resume=True, progress=False)
    for k, v in straight.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k
    with open(tmp_path / "b" / "log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]  # no duplicated rows after the resume


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, steps=6)
    model = MedFLIP(cfg.model)
    real = loop.train_step_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 3:
            result.terms["loss"] = float("nan")
        return result

    monkeypatch.setattr(loop, "train_step_losses", poisoned)
    with pytest.raises(TrainingDiverged, match="not finite at step 2.*step_00000002"):
        pretrain(model, make_batches(cfg, tiny_data()), cfg, progress=False)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


def test_optimizer_groups_skip_decay_on_norms_biases_temperature():
    cfg = tiny_config("unused")
    model = MedFLIP(cfg.model)
    opt = build_optimizer(model, cfg.optim)
    decay_ids = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["logit_scale"]) not in decay_ids
    assert id(named["vision.vit.norm.weight"]) not in decay_ids
    assert id(named["vision.vit.blocks.0.attn.qkv.bias"]) not in decay_ids
    assert id(named["vision.vit.blocks.0.attn.qkv.weight"]) in decay_ids
    text_lrs = {
        g["lr"]
        for g in opt.param_groups
        if any(p is named["text.model.encoder.layer.5.output.dense.weight"] for p in g["params"])
    }
    assert text_lrs == {cfg.optim.text_lr}
    frozen = named["text.model.encoder.layer.0.output.dense.weight"]
    assert not frozen.requires_grad and all(p is not frozen for g in opt.param_groups for p in g["params"])


def test_warmup_cosine_schedule():
    f = warmup_cosine(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1)


def test_tiny_batch_overfits(tmp_path):
    """Four images with distinct labels and their four sentences: the model must learn to match them."""
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path, steps=60)
    cfg.model.vision.image_size = 64
    cfg.train.ckpt_every = 1000
    cfg.optim.lr = 2e-3
    cfg.optim.text_lr = 2e-3
    cfg.loss.beta_svd = 0.0
    cfg.loss.tau_s = 0.05  # near one-hot targets: with tau_s = 1 the floor of the loss is far above zero
    _, labels, _ = tiny_data(n=4)
    # Each image is recognisable from any subset of its patches (masking hides a random half).
    rng = np.random.default_rng(0)
    images = np.stack(
        [np.full((64, 64), 30 + 60 * i) + rng.integers(0, 20, (64, 64)) for i in range(4)]
    ).astype(np.uint8)
    texts = [
        "mild cardiomegaly",
        "small left pleural effusion",
        "right apical pneumothorax",
        "healed rib fracture",
    ]
    corpus = TextCorpus(texts, [[t] for t in texts], [labels[i : i + 1] for i in range(4)], labels)
    batches = DecoupledBatches(images, labels, corpus, 4, 64, seed=0, paired=True, augment=None)
    model = MedFLIP(cfg.model)
    pretrain(model, batches, cfg, progress=False)
    with open(tmp_path / "log.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < 0.5 * losses[0]
    from medflip.data.augment import normalize

    sim = model.similarity(normalize(torch.from_numpy(images).unsqueeze(1), 64), texts)
    assert torch.equal(sim.argmax(1), torch.arange(4))


def test_schedule_follows_wall_clock_budget():
    frac = {"v": 0.0}
    f = warmup_cosine(total_steps=10_000, warmup_steps=2, time_fraction=lambda: frac["v"])
    assert f(5) == pytest.approx(1.0, abs=1e-3)  # few steps, no time used: start of the cosine
    frac["v"] = 0.5
    assert f(5) == pytest.approx(0.5)  # half the budget used: half-way down, whatever the step count
    frac["v"] = 2.0
    assert f(5) == pytest.approx(0.0)
