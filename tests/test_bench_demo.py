"""`medflip bench`'s analytic ceiling and a smoke run of `medflip demo` on a tiny budget."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from medflip.bench import ceiling_speedup, transformer_flops
from medflip.observations import COMPETITION_TASKS


def test_transformer_flops_by_hand():
    # one block, n = 10 tokens, D = 8, MLP ratio 4: (8 + 16) n D^2 + 4 n^2 D
    assert transformer_flops(10, 8, 1) == 24 * 10 * 64 + 4 * 100 * 8


def test_ceiling_speedup_by_hand():
    L, D, depth, pd, T, Dt, dt = 196, 384, 12, 256, 32, 384, 6

    def flops(visible):
        image = 2 * L * pd * D + depth * (24 * visible * D * D + 4 * visible**2 * D)
        text = dt * (24 * T * Dt * Dt + 4 * T**2 * Dt)
        return image + text

    expected = flops(197) / flops(math.floor(196 * 0.5) + 1)
    assert math.isclose(ceiling_speedup(L, D, depth, pd, T, Dt, dt, 0.5), expected, rel_tol=1e-12)
    assert ceiling_speedup(L, D, depth, pd, T, Dt, dt, 0.0) == 1.0
    assert (
        1.0
        < ceiling_speedup(L, D, depth, pd, T, Dt, dt, 0.5)
        < ceiling_speedup(L, D, depth, pd, T, Dt, dt, 0.75)
    )


# A tiny demo: 3 steps of 8 at 32 px on 40 px phantoms, 8 images (and sentences) per class, 2 test images per class.
TINY_DEMO = [
    "--train.steps", "3", "--data.batch_size", "8", "--demo.images_per_class", "8", "--data.balance_text", "8",
    "--demo.test_per_class", "2", "--demo.render_size", "40", "--model.vision.image_size", "32",
    "--train.log_every", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One tiny `medflip demo` run (one thread) shared by the tests below: (run folder, --json file)."""
    import torch

    from medflip.cli import main

    tmp = tmp_path_factory.mktemp("demo")
    out, js = tmp / "run", tmp / "m.json"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["demo", *TINY_DEMO, "--train.out", str(out), "--json", str(js), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(n)
    return out, js


def test_demo_smoke(demo_run, one_thread):
    from medflip.cli import main

    out, js = demo_run
    saved = json.loads((out / "metrics.json").read_text())
    assert json.loads(js.read_text()) == saved
    assert saved["zero_shot"]["n"] == 10 and {"accuracy", "macro_f1", "auroc"} <= set(saved["zero_shot"])
    assert {"p@1", "p@5"} <= set(saved["retrieval"])
    assert saved["data"]["images"] == "synthetic phantoms" and saved["data"]["text"] == "real IU reports"
    assert saved["train"]["steps"] == 3
    for name in (
        "loss.png",
        "zero_shot_confusion.png",
        "model/model.safetensors",
        "log.csv",
        "model/README.md",
    ):
        assert (out / name).is_file(), name
    # one grounding figure per class, scored against where each phantom drew its finding
    assert len(list(out.glob("grounding_*.png"))) == 5
    g = saved["grounding"]
    assert sum(g[c]["n"] for c in g if c != "all") == g["all"]["n"] == 10
    assert all(0 <= g[c]["pointing_game"] <= 1 for c in g)
    assert saved["train"]["precision"] in ("bf16", "fp32")
    # re-scoring the trained model without training gives the same held-out numbers
    js2 = out.parent / "score.json"
    assert main(["demo", *TINY_DEMO, "--score", str(out / "model"), "--json", str(js2)]) == 0
    scored = json.loads(js2.read_text())
    assert scored["zero_shot_accuracy"] == saved["zero_shot"]["accuracy"]
    assert {c: r["n"] for c, r in scored["grounding"].items()} == {
        c: r["n"] for c, r in saved["grounding"].items()
    }


def test_demo_data_is_a_cache_and_a_corpus(demo_run):
    """The demo's images are a real image cache (train + held-out test split, the pixels it rendered) and its
    texts a corpus CSV; its config.json points at both."""
    from medflip.data import open_cache
    from medflip.demo.config import DemoConfig
    from medflip.demo.data import build_demo_data

    out, _ = demo_run
    cfg = json.loads((out / "config.json").read_text())
    assert "demo" not in cfg  # a PretrainConfig, as `medflip pretrain` reads it
    train, test = open_cache(cfg["data"]["cache"], "train"), open_cache(cfg["data"]["cache"], "test")
    assert (len(train), len(test), train.size) == (6 * 8, 5 * 2, 40)
    demo = DemoConfig()
    demo.demo.images_per_class, demo.demo.test_per_class, demo.demo.render_size = 8, 2, 40
    data = build_demo_data(demo, progress=False)
    assert np.array_equal(np.asarray(train.images), data["train_images"])
    assert np.array_equal(np.asarray(test.images), data["test_images"])
    assert np.array_equal(train.labels(), data["train_labels"] > 0)
    assert list(test.rows["class"]) == [c for c in COMPETITION_TASKS for _ in range(2)]
    reports = pd.read_csv(cfg["data"]["texts"])["report"]
    assert len(reports) == data["info"]["train_reports"] and cfg["data"]["balance_text"] == 8


def test_demo_config_json_retrains_the_demo(demo_run, tmp_path, one_thread):
    """`medflip pretrain --config RUN/config.json` replays the demo's training: same losses, same weights."""
    from safetensors.torch import load_file

    from medflip.cli import main

    out, _ = demo_run
    again = tmp_path / "again"
    assert (
        main(["pretrain", "--config", str(out / "config.json"), "--train.out", str(again), "--no-progress"])
        == 0
    )
    first, second = pd.read_csv(out / "log.csv"), pd.read_csv(again / "log.csv")
    assert len(first) == 3
    assert np.array_equal(first["loss"].to_numpy(), second["loss"].to_numpy())
    w1, w2 = load_file(out / "model" / "model.safetensors"), load_file(again / "model" / "model.safetensors")
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
