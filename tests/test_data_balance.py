"""Class-balanced rows and sentence corpora (data.streams.balanced_rows / TextCorpus.balanced_sentences),
checked by counting with plain loops, and the `--data.balance_text` option of `medflip pretrain`."""

import numpy as np
import pytest

from medflip.data.sources import balance_text_corpus
from medflip.data.streams import TextCorpus, balanced_rows
from medflip.errors import UserError
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS, single_class

COLS = [OBSERVATIONS.index(c) for c in COMPETITION_TASKS]


def _vec(*names):
    v = np.zeros(len(OBSERVATIONS), np.float32)
    for n in names:
        v[OBSERVATIONS.index(n)] = 1
    return v


def test_single_class_by_hand():
    rows = np.stack([_vec("Edema"), _vec("Edema", "Atelectasis"), _vec(), _vec("Edema", "Fracture")])
    assert single_class(rows, COMPETITION_TASKS).tolist() == [3, -1, -1, 3]


def test_balanced_rows_counts_by_hand():
    labels = (np.random.default_rng(0).random((300, len(OBSERVATIONS))) < 0.15).astype(np.float32)
    ids = np.arange(0, 300, 2)  # only even rows may be drawn
    rows = balanced_rows(labels, ids, per_class=20, rng=np.random.default_rng(1), single_share=0.5)
    assert len(rows) == 20 * (len(COLS) + 1) and set(rows.tolist()) <= set(ids.tolist())
    for k, c in enumerate(COLS):
        block = rows[20 * k : 20 * k + 20]  # 10 rows where c is the only competition finding, then 10 with c
        assert all(labels[r, c] == 1 and sum(labels[r, j] for j in COLS) == 1 for r in block[:10])
        assert all(labels[r, c] == 1 for r in block[10:])


def _corpus():
    reports = [
        (["Small left effusion.", "Heart is enlarged."], [_vec("Pleural Effusion"), _vec("Cardiomegaly")]),
        (["Cardiomegaly and edema."], [_vec("Cardiomegaly", "Edema")]),
        (["Basilar atelectasis."], [_vec("Atelectasis")]),
        (["No acute disease."], [_vec("No Finding")]),
    ]
    return TextCorpus(
        [" ".join(s) for s, _ in reports],
        [s for s, _ in reports],
        [np.stack(v) for _, v in reports],
        np.stack([np.max(np.stack(v), 0) for _, v in reports]),
    )


def test_balanced_sentences_by_hand():
    corpus = _corpus()
    truth = {t: lab for ss, ls in zip(corpus.sentences, corpus.sentence_labels) for t, lab in zip(ss, ls)}
    bal = corpus.balanced_sentences(6, np.random.default_rng(0))
    # no sentence is positive for Consolidation: 4 classes x 6 + 6 random
    assert len(bal) == 6 * 4 + 6
    for text, sents, labs, rep in zip(bal.reports, bal.sentences, bal.sentence_labels, bal.report_labels):
        assert sents == [text] and np.array_equal(labs[0], truth[text]) and np.array_equal(rep, truth[text])
    r = bal.reports
    # blocks in class order; Consolidation has none, Edema no single-class sentence (its one co-names Cardiomegaly)
    assert r[0:6] == ["Basilar atelectasis."] * 6
    assert r[6:9] == ["Heart is enlarged."] * 3
    assert set(r[9:12]) <= {"Heart is enlarged.", "Cardiomegaly and edema."}
    assert r[12:18] == ["Cardiomegaly and edema."] * 6
    assert r[18:24] == ["Small left effusion."] * 6


def test_balance_text_option(capsys):
    with pytest.raises(UserError, match="decoupled"):
        balance_text_corpus(_corpus(), 4, COMPETITION_TASKS, paired=True, seed=0)
    with pytest.raises(UserError, match="text_mode sentence"):
        balance_text_corpus(_corpus(), 4, COMPETITION_TASKS, paired=False, seed=0, text_mode="report")
    with pytest.raises(UserError, match="valid: No Finding"):
        balance_text_corpus(_corpus(), 4, ("Edema", "Oedema"), paired=False, seed=0)
    bal = balance_text_corpus(_corpus(), 4, COMPETITION_TASKS, paired=False, seed=0)
    assert len(bal) == 4 * 4 + 4
    out = capsys.readouterr().out
    assert "Consolidation 0" in out and "no sentence is positive for Consolidation" in out
    bal = balance_text_corpus(_corpus(), 3, ("No Finding", "Edema"), paired=False, seed=0)
    assert bal.reports[:6] == ["No acute disease."] * 3 + ["Cardiomegaly and edema."] * 3 and len(bal) == 9


def test_pretrain_batches_with_balanced_iu_text(tmp_path):
    """`medflip pretrain --data.texts iu --data.balance_text 10` on an image cache: a 60-sentence corpus whose
    first 50 are 10 positives per competition class (the IU reports mention all five)."""
    from medflip.config import from_dict
    from medflip.data.sources import build_batches
    from medflip.train.config import PretrainConfig
    from test_eval_supervised import chexpert5_cache

    cfg = from_dict(  # the way a YAML file / flags arrive: comma-separated class names
        PretrainConfig, {"data": {"balance_classes": ",".join(COMPETITION_TASKS), "balance_text": 10}}
    )
    cfg.data.cache, cfg.data.texts = str(chexpert5_cache(tmp_path / "c")), "iu"
    cfg.data.batch_size, cfg.model.vision.image_size = 8, 32
    batches = build_batches(cfg, "cpu")
    labels = batches.corpus.report_labels
    assert len(batches.corpus) == 60
    for k, c in enumerate(COLS):
        assert (labels[10 * k : 10 * k + 10, c] > 0).all()
    assert len(batches.batch(0).texts) == 8
