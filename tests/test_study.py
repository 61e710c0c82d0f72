"""The reproduction study: metrics against scikit-learn, the "better" rule, and a smoke run of the whole
pipeline (pre-train -> evaluate -> report) on a tiny synthetic study, killed and resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from medflip.cli import main
from medflip.study import stats
from medflip.study.plan import Cell, StudyConfig, cells, pretrain_argv
from test_eval_supervised import write_cache

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ metrics
@pytest.mark.parametrize("k", [2, 3])
def test_fast_metrics_match_sklearn(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 300)
    probs = rng.dirichlet(np.ones(k), 300) + np.eye(k)[y] * 0.3
    probs[:20] = np.round(probs[:20], 1)  # ties
    pred = probs.argmax(1)
    assert stats.accuracy(y, probs) == pytest.approx(accuracy_score(y, pred))
    assert stats.balanced_accuracy(y, probs) == pytest.approx(balanced_accuracy_score(y, pred))
    assert stats.macro_f1(y, probs) == pytest.approx(f1_score(y, pred, average="macro"))
    ref = (
        roc_auc_score(y, probs[:, 1])
        if k == 2
        else np.mean([roc_auc_score(y == c, probs[:, c]) for c in range(k)])
    )
    assert stats.macro_auroc(y, probs) == pytest.approx(ref)
    normals = y == 0
    assert stats.normals_called_positive(y, probs) == pytest.approx(np.mean(pred[normals] != 0))


def test_ece_of_a_calibrated_and_an_overconfident_score():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)  # calibrated by construction
    assert stats.ece(y, p)[0] < 0.02
    assert stats.ece(y, (p > 0.5).astype(float))[0] > 0.2  # 0/1 scores on the same labels


def test_better_needs_both_the_ci_and_the_seed_spread():
    idx = stats.resamples(5, 10)
    a = {"mean": 0.80, "sd": 0.01, "n_seeds": 3}
    b = {"mean": 0.70, "sd": 0.01, "n_seeds": 3}
    assert stats.compare(a, b, np.full(200, 0.1))["verdict"] == "better"
    assert stats.compare(b, a, np.full(200, -0.1))["verdict"] == "worse"
    noisy = {**b, "sd": 0.2}  # seeds disagree: the CI alone is not enough
    assert stats.compare(a, noisy, np.full(200, 0.1))["why"] == "seed spread"
    wide = np.linspace(-0.05, 0.25, 200)  # test-image CI straddles 0
    assert stats.compare(a, b, wide)["verdict"] == "no difference shown"
    one = {**a, "n_seeds": 1, "sd": float("nan")}
    assert stats.compare(one, b, np.full(200, 0.1))["why"] == "fewer than 2 seeds"
    assert idx.shape == (10, 5)


def test_plan_is_seed_major_and_commands_carry_the_method():
    cfg = StudyConfig(seeds=(0, 1), methods=("medclip", "medflip"), pretrain_fractions=(0.1,))
    names = [c.name for c in cells(cfg)]
    assert names[:5] == ["medclip_f1_s0", "medflip_f1_s0", "medclip_f1_s1", "medflip_f1_s1", "medclip_f0.1_s0"]
    argv = pretrain_argv(cfg, Cell("medclip", 1, 0.1))
    assert argv[argv.index("--train.mask_ratio") + 1] == "0" and argv[argv.index("--data.fraction") + 1] == "0.1"
    assert argv[argv.index("--train.budget_clock") + 1] == "cpu"


# ------------------------------------------------------------------------------------------ smoke study
SIZE = 32
SUBTYPES = ("normal", "bacteria", "virus")


def _split(n: int, split: str, seed: int):
    y = np.arange(n) % 3
    rng = np.random.default_rng(seed)
    images = np.clip(40 + 60 * y[:, None, None] + rng.integers(-20, 21, (n, SIZE, SIZE)), 0, 255)
    rows = []
    for i, c in enumerate(y):
        normal = c == 0
        rows.append(
            {
                "path": f"/x/{split}/{i}.jpeg",
                "source": "synthetic",
                "patient_id": f"{split}{i}",
                "split": split,
                "class": "NORMAL" if normal else "PNEUMONIA",
                "subtype": SUBTYPES[c],
                "No Finding": 1 if normal else 0,
                "Pneumonia": 0 if normal else 1,
            }
        )
    return images, rows


def _corpus(path: Path) -> Path:
    pos = [
        "Right lower lobe pneumonia.",
        "Left lower lobe pneumonia.",
        "Findings consistent with pneumonia in the right upper lobe.",
        "Patchy left basilar pneumonia.",
        "Lingular pneumonia.",
        "Bilateral lower lobe pneumonia.",
    ]
    neg = [
        "No acute cardiopulmonary abnormality.",
        "The lungs are clear.",
        "Normal chest.",
        "No acute disease.",
        "Heart size normal. Lungs clear.",
        "No active disease.",
    ]
    reports = [f"{p} Heart size is normal." for p in pos] + neg * 2
    pd.DataFrame({"report": reports}).to_csv(path, index=False)
    return path


def test_cell_commands_run_as_subprocesses_with_one_thread(tmp_path):
    """The real launcher: a subprocess of this interpreter, its command line logged, failures raised."""
    from medflip.errors import UserError
    from medflip.study.runner import _run

    cfg = StudyConfig(threads=1)
    _run(["--version"], cfg, tmp_path / "c" / "x.log")
    assert (tmp_path / "c" / "x.log").read_text().startswith("medflip ")
    assert (tmp_path / "c" / "commands.txt").read_text() == "OMP_NUM_THREADS=1 medflip --version\n"
    with pytest.raises(UserError, match="failed"):
        _run(["no-such-command"], cfg, tmp_path / "c" / "y.log")


def test_unmasked_tuning_by_time_and_the_cpu_budget_clock(tmp_path, monkeypatch):
    """train.unmasked_fraction: once that share of the budget is left, steps run with mask 0; the budget is
    counted on the chosen clock (a fake CPU clock here: every reading advances 1 s, and a step reads it twice)."""
    import itertools

    import medflip.train.loop as loop
    from test_train import make_batches, tiny_config, tiny_data

    ticks = itertools.count()
    monkeypatch.setattr(loop.time, "process_time", lambda: float(next(ticks)))
    seen = []
    real = loop.train_step_losses
    monkeypatch.setattr(
        loop, "train_step_losses", lambda *a: seen.append(a[-2]) or real(*a)
    )
    cfg = tiny_config(tmp_path / "run", steps=100)
    cfg.train.time_budget_min, cfg.train.budget_clock, cfg.train.unmasked_fraction = 10 / 60, "cpu", 0.3
    cfg.train.ckpt_every = 100
    from medflip.model.medflip import MedFLIP

    loop.pretrain(MedFLIP(cfg.model), make_batches(cfg, tiny_data()), cfg, progress=False)
    assert seen == [0.5] * 7 + [0.0] * 3  # 10 one-second steps; the last 30% of the budget unmasked


def _in_process(argv, env, log):
    """The study's cell commands through medflip.cli.main in this process (no interpreter start-up)."""
    return main(argv)


def test_smoke_study_runs_resumes_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("medflip.study.runner.launch", _in_process)
    cache = write_cache(
        tmp_path / "cache",
        {s: _split(n, s, i) for i, (s, n) in enumerate((("train", 30), ("val", 12), ("test", 12)))},
    )
    out = tmp_path / "study"
    flags = [
        "--cache", str(cache), "--texts", str(_corpus(tmp_path / "reports.csv")), "--out", str(out),
        "--methods", "medclip,medflip", "--seeds", "0", "--pretrain_fractions", "0.5",
        "--pretrain_fraction_methods", "medflip", "--budget_min", "0.004", "--image_size", str(SIZE),
        "--embed_dim", "32", "--batch_size", "4", "--warmup_steps", "1", "--ckpt_every", "1",
        "--ckpt_every_other", "1", "--curve_checkpoints", "2", "--probe_fractions", "0.1,1",
        "--finetune_methods", "medclip", "--finetune_epochs", "1", "--n_boot", "20", "--jobs", "1",
        "--retrieval_holdout", "0.5", "--precision", "fp32", "--no-prune",
    ]  # fmt: skip
    flags[flags.index("--no-prune")] = "--prune_checkpoints"
    flags.insert(flags.index("--prune_checkpoints") + 1, "false")
    assert main(["study", "run", *flags]) == 0
    first = capsys.readouterr().out
    assert "3 to run" in first and "0 failed" in first
    names = ["medclip_f1_s0", "medflip_f1_s0", "medflip_f0.5_s0"]
    results = {n: json.loads((out / "cells" / n / "result.json").read_text()) for n in names}
    r = results["medclip_f1_s0"]
    assert len(r["zeroshot"]["test"]["probs"]) == 12 and set(r["probe"]) == {"0.1", "1"}
    assert "finetune" in r and "finetune" not in results["medflip_f1_s0"]
    # at most --curve_checkpoints points; how many checkpoints a 0.24 s CPU budget leaves depends on the machine
    assert 1 <= len(r["curve"]) <= 2 and "curve" not in results["medflip_f0.5_s0"]
    assert r["retrieval"]["n_texts"] % 2 == 0 and np.asarray(r["retrieval"]["hits"]).shape == (12, 4)
    cfg = json.loads((out / "cells/medflip_f1_s0/run/config.json").read_text())
    assert cfg["train"]["mask_ratio"] == 0.5 and cfg["train"]["budget_clock"] == "cpu"
    assert cfg["data"]["texts"].endswith("texts_train.csv")  # the held-out reports are not trained on

    # a killed study: one cell lost its evaluation and final model mid-way; finished cells are skipped
    killed = out / "cells" / "medflip_f1_s0"
    (killed / "result.json").unlink()
    shutil.rmtree(killed / "run" / "model")
    kept = (out / "cells" / "medclip_f1_s0" / "result.json").stat().st_mtime_ns
    assert main(["study", "run", *flags]) == 0
    second = capsys.readouterr().out
    assert "2 finished (skipped), 1 to run" in second
    assert "medflip_f1_s0: resumed pre-training, evaluated" in second
    assert (out / "cells" / "medclip_f1_s0" / "result.json").stat().st_mtime_ns == kept

    doc, img = tmp_path / "docs" / "reproduction.md", tmp_path / "docs" / "img"
    assert main(["study", "report", "--out", str(out), "--doc", str(doc), "--img", str(img)]) == 0
    text = doc.read_text()
    assert "3 of 3 cells finished" in text and "## Claims" in text and "open (1 seed)" in text
    for png in ("study_time.png", "study_label_fraction.png", "study_pretrain_fraction.png",
                "study_zeroshot_reliability.png"):
        assert (img / png).stat().st_size > 1000, png
    assert "medflip pretrain" in text and "--train.mask_ratio 0.5" in text


def test_probe_on_label_columns_keeps_single_positive_images():
    """MIMIC-CXR has no class column: `--probe_column labels` takes the one positive among the probe classes."""
    from medflip.errors import UserError
    from medflip.observations import OBSERVATIONS
    from medflip.study.cell import probe_targets
    from medflip.study.plan import StudyConfig

    def row(**pos):
        r = {o: None for o in OBSERVATIONS}
        r.update(pos)
        return r

    rows = pd.DataFrame(
        [
            row(Edema=1.0),  # kept: Edema
            row(Edema=1.0, Atelectasis=1.0),  # two positives: dropped
            row(Atelectasis=1.0, Edema=0.0, Cardiomegaly=-1.0),  # kept: Atelectasis (0 / -1 are not positive)
            row(**{"No Finding": 1.0}),  # none of the probe classes: dropped
        ]
    )
    cfg = StudyConfig(probe_column="labels", probe_classes=("Atelectasis", "Edema"))
    y, keep = probe_targets(rows, cfg)
    assert keep.tolist() == [0, 2] and y.tolist() == [1, 0]
    with pytest.raises(UserError, match="Cardiomegaly"):
        probe_targets(rows, StudyConfig(probe_column="labels", probe_classes=("Atelectasis", "Cardiomegaly")))
    with pytest.raises(UserError, match="not observation labels"):
        probe_targets(rows, StudyConfig(probe_column="labels", probe_classes=("Atelectasis", "Lungs")))
