"""`--loss.uncertain ignore`: an uncertain finding is an unknown dimension, left out of the label cosine
of each pair it is in (not mapped to 0 like `negative`). Checked against a by-hand loop, and end to end
from the image cache and the report labeler to the soft targets."""

from __future__ import annotations

import math

import numpy as np
import torch

from medflip.data.streams import TextCorpus
from medflip.losses import (
    label_similarity,
    negative_suppression_loss,
    semantic_matching_loss,
    soft_targets,
)
from medflip.observations import OBSERVATIONS, to_label_vector

NAN = float("nan")


def masked_cosine_by_hand(a: list[float], b: list[float]) -> float:
    """Cosine over the dimensions known (not NaN) in both vectors; 0 when either is zero there."""
    dims = [k for k in range(len(a)) if not math.isnan(a[k]) and not math.isnan(b[k])]
    dot = sum(a[k] * b[k] for k in dims)
    na = math.sqrt(sum(a[k] ** 2 for k in dims))
    nb = math.sqrt(sum(b[k] ** 2 for k in dims))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def test_masked_label_cosine_matches_a_loop():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, (7, 14)).astype(np.float32)
    b = rng.integers(0, 2, (9, 14)).astype(np.float32)
    a[rng.random(a.shape) < 0.2] = np.nan
    b[rng.random(b.shape) < 0.2] = np.nan
    a[0] = np.nan  # all unknown: similar to nothing
    b[1] = 0.0  # all negative: similar to nothing
    s = label_similarity(torch.from_numpy(a), torch.from_numpy(b))
    ref = [[masked_cosine_by_hand(list(x), list(y)) for y in b] for x in a]
    assert torch.isfinite(s).all()
    assert torch.allclose(s, torch.tensor(ref), atol=1e-6)


def test_small_example_by_hand():
    # image: Cardiomegaly 1, Edema uncertain; text: Cardiomegaly 1, Edema 1.
    # ignore: cosine over {Cardiomegaly} only -> 1; negative: cos((1,0), (1,1)) = 1/sqrt(2); positive: 1.
    img = torch.tensor([[1.0, NAN]])
    txt = torch.tensor([[1.0, 1.0]])
    assert label_similarity(img, txt).item() == 1.0
    assert math.isclose(
        label_similarity(torch.tensor([[1.0, 0.0]]), txt).item(), 1 / math.sqrt(2), rel_tol=1e-6
    )
    # the mask is per pair: the same image against a text with Edema 0 keeps Cardiomegaly only as well
    assert label_similarity(img, torch.tensor([[1.0, 0.0]])).item() == 1.0
    # and an uncertain text dimension is dropped for that text only
    s = label_similarity(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, NAN], [1.0, 0.0]]))
    assert torch.allclose(s, torch.tensor([[1.0, 1 / math.sqrt(2)]]))


def test_without_nan_it_is_the_plain_cosine():
    a, b = torch.rand(5, 14), torch.rand(6, 14)
    ref = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).t()
    assert torch.allclose(label_similarity(a, b), ref, atol=1e-6)


def test_ignore_differs_from_negative_in_the_loss():
    torch.manual_seed(0)
    raw_img = [None] * 14
    raw_img[OBSERVATIONS.index("Cardiomegaly")] = 1
    raw_img[OBSERVATIONS.index("Edema")] = -1
    raw_txt = [None] * 14
    raw_txt[OBSERVATIONS.index("Cardiomegaly")] = 1
    raw_txt[OBSERVATIONS.index("Edema")] = 1
    raw_other = [None] * 14
    raw_other[OBSERVATIONS.index("Pneumothorax")] = 1
    emb_i, emb_t = (
        torch.nn.functional.normalize(torch.randn(2, 8), dim=1),
        torch.nn.functional.normalize(torch.randn(2, 8), dim=1),
    )
    out = {}
    for policy in ("negative", "ignore"):
        il = torch.from_numpy(
            np.stack([to_label_vector(raw_img, policy), to_label_vector(raw_other, policy)])
        )
        tl = torch.from_numpy(
            np.stack([to_label_vector(raw_txt, policy), to_label_vector(raw_other, policy)])
        )
        s, y, y_t = soft_targets(il, tl, tau_s=1.0)
        assert torch.isfinite(y).all() and torch.isfinite(y_t).all()
        logits = 10.0 * emb_i @ emb_t.t()
        losses = {"sm": semantic_matching_loss(logits, y, y_t), "neg": negative_suppression_loss(logits, s)}
        out[policy] = (s, losses)
    assert out["ignore"][0][0, 0].item() == 1.0
    assert math.isclose(out["negative"][0][0, 0].item(), 1 / math.sqrt(2), rel_tol=1e-6)
    assert all(torch.isfinite(v) for v in out["ignore"][1].values())
    assert not torch.isclose(out["ignore"][1]["sm"], out["negative"][1]["sm"])


def test_labeler_sentences_carry_nan_under_ignore_only():
    reports = ["Possible left lower lobe pneumonia. Mild cardiomegaly.", "No pneumothorax."]
    pn = OBSERVATIONS.index("Pneumonia")
    ign = TextCorpus.from_reports(reports, uncertain="ignore")
    neg = TextCorpus.from_reports(reports, uncertain="negative")
    pos = TextCorpus.from_reports(reports, uncertain="positive")
    assert np.isnan(ign.report_labels[0, pn])
    assert neg.report_labels[0, pn] == 0 and pos.report_labels[0, pn] == 1
    # the sentence whose only finding is uncertain is unlabeled under ignore (dropped) as under negative
    assert ign.sentences[0] == neg.sentences[0] == ["Mild cardiomegaly."]
    assert pos.sentences[0] == ["Possible left lower lobe pneumonia.", "Mild cardiomegaly."]


def test_pretraining_runs_with_uncertain_dimensions_masked(tmp_path, one_thread):
    """NaN (ignored) labels go through batching, the objective and the optimizer: finite losses, a model."""
    import csv

    from medflip.model.medflip import MedFLIP
    from medflip.train.loop import pretrain
    from test_train import make_batches, tiny_config, tiny_data

    cfg = tiny_config(tmp_path / "run", steps=2)
    cfg.loss.uncertain = "ignore"
    images, labels, corpus = tiny_data()
    labels[::2, OBSERVATIONS.index("Edema")] = np.nan  # uncertain on half the images
    for s in corpus.sentence_labels[1::2]:
        s[:, OBSERVATIONS.index("Edema")] = np.nan  # and on half the texts
    run = pretrain(MedFLIP(cfg.model), make_batches(cfg, (images, labels, corpus)), cfg, progress=False)
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)
    assert (run / "model" / "config.json").is_file()
