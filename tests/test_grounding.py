"""Grounding maps (model/grounding.py), their scoring (evaluate/explain.py) and `medflip explain`.

The maps are checked against the training forward pass (`model(..., return_tokens=True)`, which projects
patches and tokens through its own code path) with word pieces grouped by hand from the tokenizer's
vocabulary; the inside/outside and pointing-game scores against maps built by hand. Whether a *trained*
model points at the right place is measured on the demo model (README, `medflip demo`'s grounding line):
training one takes minutes, so CI checks the mechanics on a tiny untrained model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medflip.evaluate.explain import inside_outside
from medflip.model.grounding import ground


@pytest.fixture(scope="module")
def model():
    from medflip.model.medflip import MedFLIP, ModelConfig
    from medflip.model.text import TextConfig
    from medflip.model.vision import VisionConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        vision=VisionConfig(size="tiny", image_size=48), text=TextConfig(pretrained=False), embed_dim=32
    )
    return MedFLIP(cfg).eval()


def _hand_word_maps(model, image, text):
    """Reference: each word's patch cosine similarities [W, 3, 3] from the training forward's projected tokens,
    word pieces located by hand from the tokenizer's vocabulary (words split on spaces)."""
    words = text.split()
    pieces = [model.tokenizer.tokenize(w) for w in words]
    enc = model.tokenize([text])
    with torch.no_grad():
        out = model(image, enc["input_ids"], enc["attention_mask"], return_tokens=True)
    sim = out.image_tokens[0] @ out.text_tokens[0].t()  # [L, T]; position 0 is [CLS]
    start, cols = 1, []
    for p in pieces:
        cols.append(sim[:, start : start + len(p)].mean(1))
        start += len(p)
    assert start == int(enc["attention_mask"].sum()) - 1  # then [SEP]
    return torch.stack(cols).reshape(len(pieces), 3, 3), pieces  # 48 px / 16 px patches, row-major


def test_grounding_matches_the_training_forward(model, one_thread):
    torch.manual_seed(1)
    image = torch.randn(1, 1, 48, 48)
    text = "small left pleural effusion"
    raw = ground(model, image, text, reference=())
    assert raw.words == ["small", "left", "pleural", "effusion"]  # [CLS] / [SEP] are not words
    ref, pieces = _hand_word_maps(model, image, text)
    assert sum(len(p) for p in pieces) > len(pieces)  # some word is split: the merge is exercised
    torch.testing.assert_close(raw.word_maps, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(raw.map, ref.mean(0), atol=1e-5, rtol=1e-5)
    assert raw.similarity == pytest.approx(float(model.similarity(image, [text])[0, 0]), abs=1e-5)

    # the default: minus the mean raw map of the reference phrases (the 14 observation names)
    g = ground(model, image, text)
    names = ["no finding", "cardiomegaly", "pleural effusion", "support devices", "enlarged cardiomediastinum"]
    assert set(names) <= set(g.reference) and len(g.reference) == 14
    background = torch.stack([_hand_word_maps(model, image, r)[0].mean(0) for r in g.reference]).mean(0)
    torch.testing.assert_close(g.map, ref.mean(0) - background, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.word_maps, ref - background, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.raw_map, raw.map, atol=1e-5, rtol=1e-5)
    own = ground(model, image, text, reference=["normal chest radiograph"])
    torch.testing.assert_close(
        own.map, ref.mean(0) - _hand_word_maps(model, image, "normal chest radiograph")[0].mean(0), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(model.grounding(image[0], text), g.map)  # the model's method, [C, H, W] input


def test_grounding_rejects_a_phrase_without_words(model):
    with pytest.raises(ValueError, match="no words"):
        ground(model, torch.zeros(1, 1, 48, 48), "   ")


def test_inside_outside_and_pointing_game_by_hand():
    grid = torch.zeros(4, 4)
    grid[1, 2] = 1.0  # hot patch: rows 16..31, cols 32..47 of a 64 px image
    mask = np.zeros((64, 64), bool)
    mask[16:32, 32:48] = True
    inside, outside, hit = inside_outside(grid, mask)
    assert inside > outside and hit
    inside, outside, hit = inside_outside(grid, ~mask)
    assert inside < outside and not hit


def _save(model, path):
    model.save_pretrained(path)
    return path


def test_explain_command_png_dicom_and_bad_files(model, tmp_path, cxr, capsys, one_thread):
    from medflip.cli import main

    mdir = _save(model, tmp_path / "model")
    png = cxr.png(tmp_path / "a.png", (np.random.default_rng(0).random((60, 50)) * 255).astype(np.uint8))
    dcm = cxr.dicom(tmp_path / "b.dcm", (np.random.default_rng(1).random((40, 40)) * 4000).astype(np.uint16))
    for src in (png, dcm):
        out = tmp_path / f"{src.stem}.png"
        assert (
            main(
                [
                    "explain",
                    "--model",
                    str(mdir),
                    "--image",
                    str(src),
                    "--text",
                    "pleural effusion",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        from PIL import Image

        with Image.open(out) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    assert "image-text similarity" in capsys.readouterr().out
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["explain", "--model", str(mdir), "--image", str(bad), "--text", "edema"]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "notes.png" in err
