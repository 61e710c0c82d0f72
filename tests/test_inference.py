"""Inference API: medflip.load -> (model, preprocess); preprocess == the training cache, bit for bit;
batched encoders; zero-shot predict against the evaluation code's own computation; prompt files; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image

import medflip
from medflip.cli import main
from medflip.data.augment import normalize
from medflip.data.cache import build_cache, open_cache
from medflip.data.manifest import conform, write_manifest
from medflip.errors import UserError
from medflip.evaluate.prompts import load_prompts
from medflip.model.medflip import MedFLIP, ModelConfig
from medflip.model.preprocess import PreprocessConfig

CACHE = 48  # cache side; the model runs at 32 px: preprocess must replay cache -> resize -> normalise


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Images of every kind, non-square, and their cache at 48 px."""
    d = tmp_path_factory.mktemp("inference")
    rng = np.random.default_rng(0)
    portrait = (rng.random((90, 60)) * 255).astype(np.uint8)
    Image.fromarray(portrait).save(d / "portrait.png")
    wide16 = (rng.random((40, 70)) * 4000).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    Image.fromarray(wide16).save(d / "wide16.png")
    jpeg = (np.linspace(0, 255, 200)[None, :] * np.ones((150, 1))).astype(np.uint8)
    Image.fromarray(jpeg).save(d / "big.jpg", quality=90)
    from conftest import write_dicom

    write_dicom(d / "mono1.dcm", (rng.random((64, 50)) * 3000).astype(np.uint16), photometric="MONOCHROME1")
    paths = [d / n for n in ("portrait.png", "wide16.png", "big.jpg", "mono1.dcm")]
    rows = pd.DataFrame(
        {"path": [str(p) for p in paths], "source": "test", "patient_id": list("abcd"), "split": "test"}
    )
    write_manifest(conform(rows), d / "m.csv")
    build_cache(d / "m.csv", d / "cache", size=CACHE, workers=0, progress=False)
    return d, paths, open_cache(d / "cache", "test")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=32)
    cfg.vision.size, cfg.vision.image_size = "tiny", 32
    m = MedFLIP(cfg)
    m.preprocess_cfg = PreprocessConfig(cache_size=CACHE)
    return m.save_pretrained(tmp_path_factory.mktemp("model") / "model")


def test_preprocess_equals_the_cache_bit_exact(files, model_dir):
    d, paths, cache = files
    model, preprocess = medflip.load(model_dir, device="cpu")
    assert json.loads((model_dir / "config.json").read_text())["preprocess"]["cache_size"] == CACHE
    for i, p in enumerate(paths):
        assert np.array_equal(preprocess.to_uint8(p), cache.images[i]), p.name
        # what evaluation feeds the model for that cached image
        reference = normalize(torch.from_numpy(np.array(cache.images[i]))[None, None], 32)[0]
        x = preprocess(str(p))
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32
        assert torch.equal(x, reference), p.name
    # the same pixels as a PIL image, a numpy array (uint8 and uint16) and a pydicom Dataset
    assert torch.equal(preprocess(Image.open(paths[0])), preprocess(paths[0]))
    assert torch.equal(preprocess(np.asarray(Image.open(paths[0]))), preprocess(paths[0]))
    assert torch.equal(preprocess(np.asarray(Image.open(paths[1]))), preprocess(paths[1]))
    assert torch.equal(preprocess(pydicom.dcmread(paths[3])), preprocess(paths[3]))
    rgb = np.repeat(np.asarray(Image.open(paths[0]))[..., None], 3, -1)
    assert torch.equal(preprocess(rgb), preprocess(paths[0]))  # grey RGB -> same luma
    with pytest.raises(UserError, match="cannot preprocess a dict"):
        preprocess({})
    with pytest.raises(UserError, match="cannot read image"):
        preprocess(d / "missing.png")


def test_preprocess_follows_the_recorded_geometry(files, model_dir, tmp_path):
    import shutil

    from medflip.model.preprocess import Preprocess

    _, paths, _ = files
    out = shutil.copytree(model_dir, tmp_path / "m64")
    meta = json.loads((out / "config.json").read_text())
    meta["preprocess"]["cache_size"] = 64  # a model trained from a 64 px cache
    (out / "config.json").write_text(json.dumps(meta))
    _, pre64 = medflip.load(out, device="cpu")
    assert pre64.cache_size == 64 and pre64.to_uint8(paths[0]).shape == (64, 64)
    assert not torch.equal(pre64(paths[0]), Preprocess(PreprocessConfig(cache_size=CACHE), 32)(paths[0]))
    meta.pop("preprocess")  # a model saved before the record: the model's own size is used
    (out / "config.json").write_text(json.dumps(meta))
    assert MedFLIP.from_pretrained(out).preprocess.cache_size == 32
    with pytest.raises(UserError, match="unknown resize mode 'center-crop'"):
        Preprocess(PreprocessConfig.from_dict({"cache_size": 64, "resize": "center-crop"}), 32)


def test_batched_encoders_and_predict_match_the_evaluation_code(files, model_dir, one_thread):
    from medflip.evaluate.zeroshot import class_embeddings, encode_images

    _, paths, cache = files
    model, preprocess = medflip.load(model_dir, device="cpu")
    x = preprocess.batch(paths)
    assert x.shape == (4, 1, 32, 32)
    full = model.encode_image(x)
    assert torch.allclose(model.encode_image(x, batch_size=3), full, atol=1e-5)
    assert torch.allclose(model.encode_image(paths, batch_size=3), full, atol=1e-5)  # files in, same vectors
    texts = [f"finding {i}" for i in range(7)]
    assert torch.allclose(model.encode_text(texts, batch_size=2), model.encode_text(texts), atol=1e-5)

    prompts = {"Normal": ["the lungs are clear", "normal chest"], "Pneumonia": ["pneumonia", "consolidation"]}
    pred = model.predict([str(p) for p in paths], prompts=prompts, batch_size=3)
    img = encode_images(model, np.array(cache.images))  # evaluation's reader: the cache
    cls = class_embeddings(model, prompts)
    ref = (model.logit_scale.detach().clamp(max=np.log(100)).exp() * img @ cls.t()).softmax(-1)
    assert pred.classes == ["Normal", "Pneumonia"] and pred.probs.shape == (4, 2)
    assert torch.allclose(pred.probs, ref, atol=1e-5)
    assert torch.allclose(pred.probs.sum(1), torch.ones(4))
    assert pred.labels == [pred.classes[i] for i in ref.argmax(1).tolist()]
    # classes only: the curated prompt sets wired in by medflip.load
    by_name = model.predict(paths[:2], classes=["Normal", "Pneumonia"])
    assert by_name.classes == ["Normal", "Pneumonia"] and by_name.probs.shape == (2, 2)
    with pytest.raises(UserError, match="needs classes"):
        model.predict(paths[:1])


def test_load_prompts(tmp_path):
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"Pneumonia": ["pneumonia", "lobar consolidation"], "Normal": "clear lungs"}))
    assert load_prompts(j) == {"Pneumonia": ["pneumonia", "lobar consolidation"], "Normal": ["clear lungs"]}
    assert list(load_prompts(j, ["Normal", "Pneumonia"])) == ["Normal", "Pneumonia"]  # the task's order
    y = tmp_path / "p.yaml"
    y.write_text("Normal:\n  - the lungs are clear\nPneumonia:\n  - pneumonia\n")
    assert load_prompts(y) == {"Normal": ["the lungs are clear"], "Pneumonia": ["pneumonia"]}
    with pytest.raises(UserError, match=r"missing class\(es\) \['Edema'\]"):
        load_prompts(y, ["Normal", "Pneumonia", "Edema"])
    with pytest.raises(UserError, match=r"\['Pneumonia'\] are not in this task"):
        load_prompts(y, ["Normal"])
    bad = tmp_path / "bad.yaml"
    for text, msg in [
        ("- a\n- b\n", "non-empty mapping"),
        ("Normal: []\n", "non-empty list of prompts"),
        ("Normal: ['ok', '']\n", "non-empty strings"),
        ("Normal: [unclosed\n", "not valid YAML"),
    ]:
        bad.write_text(text)
        with pytest.raises(UserError, match=msg):
            load_prompts(bad)
    with pytest.raises(UserError, match="prompt file not found"):
        load_prompts(tmp_path / "nope.json")


def test_predict_cli(files, model_dir, tmp_path, capsys, one_thread):
    d, paths, _ = files
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("Normal: [the lungs are clear]\nPneumonia: [pneumonia]\n")
    out = tmp_path / "pred.json"
    rc = main(
        [
            "predict",
            "--model",
            str(model_dir),
            str(paths[0]),
            str(d),
            "--prompts",
            str(prompts),
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["classes"] == ["Normal", "Pneumonia"]
    assert len(res["predictions"]) == 1 + 4  # the file, then the folder's 4 images
    for r in res["predictions"]:
        assert abs(sum(r["probs"].values()) - 1) < 1e-4 and r["label"] in res["classes"]
    assert "not for clinical use" in capsys.readouterr().out
    assert main(["predict", "--model", str(model_dir), str(tmp_path / "nothing.png")]) == 2
    assert "image(s) not found" in capsys.readouterr().err
