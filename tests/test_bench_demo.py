"""`medflip bench`'s analytic ceiling and a smoke run of `medflip demo` on a tiny budget."""

import json
import math

from medflip.bench import ceiling_speedup, transformer_flops


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


def test_demo_smoke(tmp_path):
    from medflip.cli import main

    out, js = tmp_path / "run", tmp_path / "m.json"
    args = ["--steps", "3", "--batch_size", "8", "--images_per_class", "8", "--test_per_class", "2"]
    assert main(["demo", *args, "--out", str(out), "--json", str(js), "--no-progress"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert json.loads(js.read_text()) == saved
    assert saved["zero_shot"]["n"] == 10 and {"accuracy", "macro_f1", "auroc"} <= set(saved["zero_shot"])
    assert {"p@1", "p@5"} <= set(saved["retrieval"])
    assert saved["data"]["images"] == "synthetic phantoms" and saved["data"]["text"] == "real IU reports"
    assert saved["train"]["steps"] == 3
    for name in ("loss.png", "zero_shot_confusion.png", "model/model.safetensors", "log.csv"):
        assert (out / name).is_file(), name
    # one grounding figure per class, scored against where each phantom drew its finding
    assert len(list(out.glob("grounding_*.png"))) == 5
    g = saved["grounding"]
    assert sum(g[c]["n"] for c in g if c != "all") == g["all"]["n"] == 10
    assert all(0 <= g[c]["pointing_game"] <= 1 for c in g)
    assert saved["train"]["precision"] in ("bf16", "fp32")
    # re-scoring the trained model without training gives the same held-out numbers
    js2 = tmp_path / "score.json"
    assert main(["demo", *args, "--score", str(out / "model"), "--json", str(js2)]) == 0
    scored = json.loads(js2.read_text())
    assert scored["zero_shot_accuracy"] == saved["zero_shot"]["accuracy"]
    assert {c: r["n"] for c, r in scored["grounding"].items()} == {
        c: r["n"] for c, r in saved["grounding"].items()
    }
