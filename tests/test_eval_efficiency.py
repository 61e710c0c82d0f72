"""Data / time efficiency: pre-training subsets, run folders, checkpoint evaluation, plots, tables, errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from medflip.cli import main
from medflip.errors import UserError
from medflip.evaluate import efficiency as eff
from medflip.model.medflip import MedFLIP
from test_eval_supervised import chexpert5_cache, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    return tiny_model().save_pretrained(tmp_path_factory.mktemp("model") / "m")


def fake_run(
    root: Path, model: Path, steps_elapsed: list[tuple[int, float]], mask_ratio=0.5, data: dict | None = None
) -> Path:
    """A run folder as `medflip pretrain` writes it: config.json, checkpoints/step_*/ (model + state.json)."""
    root.mkdir(parents=True)
    cfg = {"train": {"mask_ratio": mask_ratio, "seed": 0}, "data": data or {"cache": "", "split": "train"}}
    (root / "config.json").write_text(json.dumps(cfg))
    for step, elapsed in steps_elapsed:
        ck = root / "checkpoints" / f"step_{step:08d}"
        shutil.copytree(model, ck, copy_function=os.link)  # hard links: cheap copies of one model
        (ck / "state.json").write_text(json.dumps({"step": step, "elapsed_s": elapsed, "epoch": 0}))
    return root


# ------------------------------------------------------------------------------------------ pure helpers
def test_subset_cache_indices_seeded_nested_sized():
    a10 = eff.subset_cache_indices(1000, 0.1, seed=1)
    a25 = eff.subset_cache_indices(1000, 0.25, seed=1)
    assert len(a10) == 100 and len(a25) == 250 and set(a10) <= set(a25)
    assert np.array_equal(a10, np.sort(a10)) and len(np.unique(a10)) == 100 and a10.max() < 1000
    assert np.array_equal(a10, eff.subset_cache_indices(1000, 0.1, seed=1))
    assert not np.array_equal(a10, eff.subset_cache_indices(1000, 0.1, seed=2))
    assert np.array_equal(eff.subset_cache_indices(7, 1.0), np.arange(7))
    assert len(eff.subset_cache_indices(7, 0.01)) == 1
    with pytest.raises(UserError, match="fraction"):
        eff.subset_cache_indices(10, 0.0)


def test_thin_keeps_ends():
    assert eff.thin(list(range(10)), 3) == [0, 4, 9] or eff.thin(list(range(10)), 3) == [0, 5, 9]
    assert eff.thin(list(range(3)), 0) == [0, 1, 2]
    assert eff.thin(list(range(3)), 5) == [0, 1, 2]
    assert eff.thin(list(range(4)), 1) == [3]


def test_parse_runs_labels_and_samples(tmp_path, saved_model):
    cache = chexpert5_cache(tmp_path / "cache", n_train=40, n_test=5)
    m = fake_run(
        tmp_path / "m25",
        saved_model,
        [(2, 1.0)],
        0.5,
        {"cache": str(cache), "split": "train", "fraction": 0.25},
    )
    u = fake_run(tmp_path / "u", saved_model, [(2, 1.0)], 0.0, {"cache": str(cache), "split": "train"})
    runs = eff.parse_runs([str(m), f"clip={u}"])
    assert [r.label for r in runs] == ["masked 0.5", "clip"]
    assert eff.pretrain_samples(runs[0]) == 10 and eff.pretrain_samples(runs[1]) == 40
    assert runs[0].final_model() == m / "checkpoints" / "step_00000002"  # no model/: the latest checkpoint
    bare = fake_run(tmp_path / "bare_run", saved_model, [(1, 1.0)])
    (bare / "config.json").unlink()
    assert eff.parse_runs([str(bare)])[0].label == "bare_run"  # no config: named by its folder
    with pytest.raises(UserError, match="run folder not found"):
        eff.parse_runs([str(tmp_path / "nope")])
    with pytest.raises(UserError, match="model folder, not a run folder"):
        eff.parse_runs([str(saved_model)])
    with pytest.raises(UserError, match="pass --samples"):
        eff.pretrain_samples(eff.parse_runs([str(fake_run(tmp_path / "x", saved_model, [(1, 1.0)]))])[0])


def test_tables_and_plots_from_results(tmp_path):
    ci = {"accuracy": (0.2, 0.4), "macro_f1": (0.1, 0.3), "auroc": (0.5, 0.7)}
    pt = {"accuracy": 0.3, "macro_f1": 0.2, "auroc": 0.6, "ci95": ci, "n": 10}
    time_res = {
        "runs": [
            {
                "label": "masked 0.5",
                "run": "a",
                "points": [{"step": s, "elapsed_s": 60.0 * s, **pt} for s in (1, 2)],
            },
            {
                "label": "unmasked",
                "run": "b",
                "points": [{"step": s, "elapsed_s": 120.0 * s, **pt} for s in (1, 2)],
            },
        ]
    }
    md = eff.time_table(time_res)
    assert "| masked 0.5 | 2 | 2.00 | 0.300 (0.200-0.400) | 0.200 | 0.600 |" in md
    assert "| unmasked | 2 | 4.00 |" in md
    data_res = {"points": [{"label": "masked 0.5", "samples": n, **pt} for n in (10, 100, 1000)]}
    assert "| masked 0.5 | 1000 | 0.300 (0.200-0.400) |" in eff.data_table(data_res)
    for png in (eff.plot_time(time_res, tmp_path / "t.png"), eff.plot_data(data_res, tmp_path / "d.png")):
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------ CLI end to end
def test_cli_time_efficiency(tmp_path, saved_model):
    cache = chexpert5_cache(tmp_path / "cache", n_train=5, n_test=10)
    a = fake_run(tmp_path / "flip", saved_model, [(2, 30.0), (4, 60.0), (6, 90.0)], 0.5)
    b = fake_run(tmp_path / "clip", saved_model, [(2, 50.0), (4, 100.0)], 0.0)
    out, js = tmp_path / "out", tmp_path / "eff.json"
    argv = [
        "eval",
        "efficiency",
        "--cache",
        str(cache),
        "--time-runs",
        str(a),
        str(b),
        "--max-checkpoints",
        "2",
    ]
    argv += [
        "--prompts-per-class",
        "2",
        "--bootstrap",
        "20",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
        str(js),
    ]
    assert main(argv) == 0
    res = json.loads(js.read_text())
    runs = {r["label"]: r for r in res["time"]["runs"]}
    assert set(runs) == {"masked 0.5", "unmasked"}
    assert [p["step"] for p in runs["masked 0.5"]["points"]] == [2, 6]  # thinned: first and last
    assert [p["elapsed_s"] for p in runs["unmasked"]["points"]] == [50.0, 100.0]
    # every checkpoint is the same model here, so every point has the same zero-shot accuracy
    accs = {p["accuracy"] for r in runs.values() for p in r["points"]}
    assert len(accs) == 1 and 0 <= accs.pop() <= 1
    for name in ("efficiency_time.png", "efficiency_time.md", "efficiency.json", "efficiency.md"):
        assert (out / name).is_file(), name
    assert "data" not in res


def test_cli_data_efficiency_and_errors(tmp_path, saved_model, capsys, monkeypatch):
    cache = chexpert5_cache(tmp_path / "cache", n_train=40, n_test=10)
    runs = [
        fake_run(
            tmp_path / f"m{int(f * 100)}", saved_model, [(2, 1.0)], 0.5, {"cache": str(cache), "fraction": f}
        )
        for f in (0.25, 1.0)
    ]
    out = tmp_path / "out"
    base = ["eval", "efficiency", "--cache", str(cache), "--prompts-per-class", "2", "--bootstrap", "10"]
    argv = [*base, "--device", "cpu", "--out", str(out), "--data-runs", *map(str, runs)]
    assert main(argv) == 0
    res = json.loads((out / "efficiency.json").read_text())
    assert [(p["label"], p["samples"]) for p in res["data"]["points"]] == [
        ("masked 0.5", 10),
        ("masked 0.5", 40),
    ]
    assert (out / "efficiency_data.png").is_file() and "| masked 0.5 | 40 |" in (
        out / "efficiency_data.md"
    ).read_text()

    # errors come before any model is loaded
    def fail(*a, **k):
        raise AssertionError("model loaded before validation")

    monkeypatch.setattr(MedFLIP, "from_pretrained", classmethod(fail))
    capsys.readouterr()
    cases = [
        ([], "pass --time-runs"),
        (["--data-runs", str(runs[0]), "--samples", "1", "2"], "--samples has 2 values for 1"),
        (["--time-runs", str(tmp_path / "cache")], "has no checkpoints"),
        (["--time-runs", str(saved_model)], "model folder, not a run folder"),
        (["--time-runs", f"a={runs[0]}", f"a={runs[1]}"], "two time-efficiency runs are labelled 'a'"),
        (
            ["--time-runs", str(runs[0]), "--split", "train", "--task", "binary", "--positive", "Edema"],
            "no images",
        ),
    ]
    for extra, msg in cases:
        assert main([*base, *extra]) == 2, extra
        assert msg in capsys.readouterr().err, extra
    empty_split = tmp_path / "cache" / "meta.json"
    meta = json.loads(empty_split.read_text())
    meta["splits"]["test"] = 0
    empty_split.write_text(json.dumps(meta))
    np.save(tmp_path / "cache" / "test.npy", np.zeros((0, 32, 32), np.uint8))
    (tmp_path / "cache" / "test.rows.csv").write_text(
        (tmp_path / "cache" / "test.rows.csv").read_text().split("\n")[0] + "\n"
    )
    assert main([*base, "--time-runs", str(runs[0])]) == 2
    assert "is empty" in capsys.readouterr().err


def test_subset_cache_feeds_pretraining_batches(tmp_path):
    """What `medflip pretrain --data.fraction` does: a lazy subset whose images, rows and labels agree."""
    from medflip.data.cache import open_cache
    from medflip.data.streams import DecoupledBatches, TextCorpus

    full = open_cache(chexpert5_cache(tmp_path / "c", n_train=40, n_test=5), "train")
    assert eff.subset_cache(full, 1.0) is full
    sub = eff.subset_cache(full, 0.25, seed=3)
    idx = eff.subset_cache_indices(40, 0.25, seed=3)
    assert len(sub) == 10 and sub.images.shape == (10, 32, 32)
    assert np.array_equal(sub.images[0:10], full.images[idx])
    assert sub.rows["patient_id"].tolist() == full.rows["patient_id"].iloc[idx].tolist()
    assert np.array_equal(sub.labels(), full.labels()[idx])
    corpus = TextCorpus.from_reports(["There is cardiomegaly.", "There is edema.", "No effusion."] * 3)
    batches = DecoupledBatches(sub.images, sub.labels(), corpus, 4, 32, seed=0, augment=None)
    b = batches.batch(0)
    assert b.images.shape == (4, 1, 32, 32) and set(b.image_index) <= set(range(10))
    with pytest.raises(UserError, match="fraction"):
        eff.subset_cache(full, 1.5)
