"""Losses against independent reference computations (docs/method.md, "Losses")."""

import math

import pytest
import torch
import torch.nn.functional as F

from medflip.losses import (
    LossConfig,
    MedFLIPObjective,
    label_similarity,
    negative_suppression_loss,
    semantic_matching_loss,
    soft_targets,
    svd_loss,
    top_singular_values,
)


def test_soft_targets_by_hand():
    a = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 0]])
    b = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    s, y, y_t = soft_targets(a, b, tau_s=0.5)
    r = 1 / math.sqrt(2)
    expected_s = torch.tensor([[1.0, 0.0], [r, r], [0.0, 0.0]])  # an all-zero vector is similar to nothing
    assert torch.allclose(s, expected_s, atol=1e-6)
    e = math.exp
    assert torch.allclose(y[0], torch.tensor([e(2) / (e(2) + 1), 1 / (e(2) + 1)]), atol=1e-6)
    assert torch.allclose(y[1], torch.tensor([0.5, 0.5]), atol=1e-6)
    assert torch.allclose(y[2], torch.tensor([0.5, 0.5]), atol=1e-6)
    # text 0 -> images: s column 0 = [1, r, 0] / 0.5
    col = torch.tensor([2.0, 2 * r, 0.0])
    assert torch.allclose(y_t[0], col.exp() / col.exp().sum(), atol=1e-6)


def test_identity_targets_give_clip_loss():
    torch.manual_seed(0)
    logits = torch.randn(6, 6) * 3
    _, y, y_t = soft_targets(None, None, tau_s=1.0, n=6)
    ours = semantic_matching_loss(logits, y, y_t)
    # CLIP's symmetric cross-entropy, written independently.
    labels = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    assert torch.allclose(ours, clip, atol=1e-6)


def test_one_hot_labels_with_sharp_tau_approach_clip():
    torch.manual_seed(1)
    logits = torch.randn(5, 5)
    eye = torch.eye(5)
    _, y, y_t = soft_targets(eye, eye, tau_s=0.01)
    clip = 0.5 * (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.t(), torch.arange(5)))
    assert torch.allclose(semantic_matching_loss(logits, y, y_t), clip, atol=1e-4)


def test_negative_suppression_matches_formula():
    torch.manual_seed(2)
    n = 5
    logits = torch.randn(n, n) * 2
    labels_a = (torch.rand(n, 14) < 0.3).float()
    labels_b = (torch.rand(n, 14) < 0.3).float()
    s = label_similarity(labels_a, labels_b)
    p = torch.softmax(logits, dim=1)
    ref = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                ref -= (1 - s[i, j]) * math.log(1 - p[i, j])
    assert torch.allclose(negative_suppression_loss(logits, s), (ref / n).float(), atol=1e-5)


def test_negative_suppression_pushes_negatives_apart():
    # The sign is corrected (docs/method.md, deviation 1): raising a dissimilar pair's logit must raise the loss.
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    low = negative_suppression_loss(torch.tensor([[5.0, 0.0], [0.0, 5.0]]), s)
    high = negative_suppression_loss(torch.tensor([[5.0, 4.0], [0.0, 5.0]]), s)
    assert high > low


def _tokens_with_spectrum(sigmas, n_v, n_t, e, dtype=torch.float64, seed=0):
    """P [n_v, E], T [n_t, E] with P T^T = U diag(sigmas) V^T (exactly known singular values)."""
    g = torch.Generator().manual_seed(seed)
    k = len(sigmas)
    u, _ = torch.linalg.qr(torch.randn(n_v, k, generator=g, dtype=dtype))
    v, _ = torch.linalg.qr(torch.randn(n_t, k, generator=g, dtype=dtype))
    q, _ = torch.linalg.qr(torch.randn(e, k, generator=g, dtype=dtype))
    p = u @ torch.diag(torch.tensor(sigmas, dtype=dtype)) @ q.t()
    t = v @ q.t()
    return p, t


def _reference_sigma(p, t, mask):
    out = torch.zeros(p.shape[0], t.shape[0], dtype=torch.float64)
    for i in range(p.shape[0]):
        for j in range(t.shape[0]):
            real = t[j][mask[j].bool()]
            m = p[i].double() @ real.double().t() / math.sqrt(p.shape[1] * real.shape[0])
            out[i, j] = torch.linalg.svdvals(m)[0]
    return out


@pytest.mark.parametrize("n_v", [20, 4])  # power iteration on the text side, then on the patch side
def test_top_singular_value_matches_svdvals_random(n_v):
    torch.manual_seed(3)
    p = F.normalize(torch.randn(5, n_v, 32), dim=-1)
    t = F.normalize(torch.randn(4, 9, 32), dim=-1)
    mask = torch.ones(4, 9)
    mask[1, 6:] = 0  # padding must be excluded
    mask[3, 2:] = 0
    sigma = top_singular_values(p, t, mask)
    assert sigma.shape == (5, 4)
    assert torch.allclose(sigma.double(), _reference_sigma(p, t, mask), atol=1e-4)


@pytest.mark.parametrize("gap", [0.0, 1e-6, 1e-3, 3e-2])
def test_top_singular_value_near_degenerate(gap):
    p, t = _tokens_with_spectrum([2.0 + gap, 2.0, 1.0, 0.5], n_v=12, n_t=7, e=16, seed=4)
    mask = torch.ones(1, 7)
    for dtype in (torch.float32, torch.float64):
        sigma = top_singular_values(p[None].to(dtype), t[None].to(dtype), mask)
        expected = (2.0 + gap) / math.sqrt(12 * 7)
        assert abs(float(sigma) - expected) < 1e-4 * max(1.0, expected)
        assert torch.allclose(sigma.double(), _reference_sigma(p[None], t[None], mask), atol=1e-4)


def test_svd_gradcheck():
    torch.manual_seed(5)
    p = F.normalize(torch.randn(3, 6, 5, dtype=torch.float64), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(2, 4, 5, dtype=torch.float64), dim=-1).requires_grad_()
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: top_singular_values(a, b, mask), (p, t))
    y = torch.softmax(torch.randn(3, 2, dtype=torch.float64), 1)
    y_t = torch.softmax(torch.randn(2, 3, dtype=torch.float64), 1)
    assert torch.autograd.gradcheck(lambda a, b: svd_loss(a, b, mask, y, y_t, tau=0.1), (p, t))


def _out(v, t, scale, **extra):
    import types

    fields = dict(image_tokens=None, text_tokens=None, text_mask=None, ids_keep=None)
    return types.SimpleNamespace(image_embeds=v, text_embeds=t, logit_scale=scale, **{**fields, **extra})


def test_objective_terms_and_disabling():
    torch.manual_seed(6)
    v = F.normalize(torch.randn(4, 8), dim=-1)
    t = F.normalize(torch.randn(4, 8), dim=-1)
    labels = (torch.rand(4, 14) < 0.3).float()
    scale = torch.tensor(math.log(10.0))
    cfg = LossConfig(beta_svd=0.0)
    terms = MedFLIPObjective(cfg)(_out(v, t, scale), labels, labels).terms
    assert set(terms) == {"sm", "neg", "loss", "logit_scale"}
    off = MedFLIPObjective(LossConfig(lambda_neg=0, beta_svd=0.0))(_out(v, t, scale), labels, labels).terms
    assert "neg" not in off
    # L_sm by hand with the module's targets
    _, y, y_t = soft_targets(labels, labels, cfg.tau_s)
    z = 10.0 * v @ t.t()
    ref = 0.5 * (-(y * z.log_softmax(1)).sum(1).mean() - (y_t * z.t().log_softmax(1)).sum(1).mean())
    assert terms["sm"] == pytest.approx(float(ref), abs=1e-5)
    s = label_similarity(labels, labels)
    assert terms["neg"] == pytest.approx(float(negative_suppression_loss(z, s)), abs=1e-5)
    assert terms["loss"] == pytest.approx(terms["sm"] + terms["neg"], abs=1e-6)


def test_identity_targets_are_clip():
    torch.manual_seed(7)
    v = F.normalize(torch.randn(5, 8), dim=-1)
    t = F.normalize(torch.randn(5, 8), dim=-1)
    cfg = LossConfig(targets="identity", lambda_neg=0.0, beta_svd=0.0)
    terms = MedFLIPObjective(cfg)(_out(v, t, torch.tensor(math.log(10.0))), None, None).terms
    z = 10.0 * v @ t.t()
    clip = 0.5 * (F.cross_entropy(z, torch.arange(5)) + F.cross_entropy(z.t(), torch.arange(5)))
    assert terms["sm"] == pytest.approx(float(clip), abs=1e-5)


def test_objective_svd_term_matches_svd_loss_and_missing_heads_are_errors():
    from medflip.errors import UserError

    torch.manual_seed(8)
    v, t = F.normalize(torch.randn(3, 8), dim=-1), F.normalize(torch.randn(3, 8), dim=-1)
    p, w = F.normalize(torch.randn(3, 6, 8), dim=-1), F.normalize(torch.randn(3, 4, 8), dim=-1)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    labels = (torch.rand(3, 14) < 0.4).float()
    cfg = LossConfig(beta_svd=0.5)
    out = _out(v, t, torch.tensor(2.0), image_tokens=p, text_tokens=w, text_mask=mask)
    terms = MedFLIPObjective(cfg)(out, labels, labels).terms
    _, y, y_t = soft_targets(labels, labels, cfg.tau_s)
    assert terms["svd"] == pytest.approx(float(svd_loss(p, w, mask, y, y_t, cfg.svd_tau)), abs=1e-5)
    with pytest.raises(UserError, match="beta_svd"):
        MedFLIPObjective(cfg)(_out(v, t, torch.tensor(2.0)), labels, labels)
    with pytest.raises(UserError, match="reconstruction decoder"):
        no_decoder = _out(v, t, torch.tensor(2.0), ids_keep=torch.zeros(3, 2, dtype=torch.long))
        MedFLIPObjective(LossConfig(beta_svd=0, recon_weight=1.0))(no_decoder, labels, labels)
    with pytest.raises(UserError, match="MLM head"):
        no_head = _out(v, t, torch.tensor(2.0), mlm_targets=torch.tensor([5, 7]))
        MedFLIPObjective(LossConfig(beta_svd=0, mlm_weight=1.0))(no_head, labels, labels)


def test_one_training_step_with_every_term_under_cpu_bf16_autocast(tmp_path, one_thread):
    """Reconstruction (decoder scatter), MLM and SVD under CPU bf16 autocast: finite loss, gradients flow."""
    import dist_worker  # tests/ is on sys.path (pytest's rootdir-relative import)
    from medflip.train.step import TrainingForward, train_step_losses

    cfg = dist_worker.tiny_config(tmp_path).resolved()
    cfg.train.precision = "bf16"
    model = dist_worker.tiny_model(cfg).train()
    batch = dist_worker.tiny_batches(cfg).batch(0)
    result = train_step_losses(TrainingForward(model), MedFLIPObjective(cfg.loss), batch, cfg, 0.5, 0)
    assert {"sm", "neg", "svd", "recon", "mlm"} <= set(result.terms)
    assert all(math.isfinite(v) for v in result.terms.values())
    result.loss.backward()
    for name in ("decoder.mask_token", "mlm.bias", "vision.vit.cls_token", "text_proj.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
