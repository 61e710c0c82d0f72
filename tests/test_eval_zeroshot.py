"""Zero-shot and retrieval against numbers worked out by hand on small fixed examples, the class-balanced
retrieval protocol, and the COVID-19 zero-shot task end to end from the dataset's own folder layout."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from medflip.cli import main
from medflip.evaluate.candidates import balanced_pick, sentence_candidates
from medflip.evaluate.metrics import precision_recall_at_k
from medflip.evaluate.zeroshot import retrieval, zero_shot
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS
from test_eval_supervised import chexpert5_rows, class_images, tiny_model, write_cache

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model().save_pretrained(tmp_path_factory.mktemp("model") / "m")


# ------------------------------------------------------------------------------------------ zero-shot
class FixedTextModel:
    """Stands in for MedFLIP's text side: each prompt has a fixed embedding (what zero_shot reads of a model:
    encode_text and logit_scale). Everything zero_shot computes from them is what is checked."""

    def __init__(self, table: dict[str, list[float]], logit_scale: float = math.log(10.0)):
        self.table = table
        self.logit_scale = torch.tensor(logit_scale)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.tensor([self.table[p] for p in prompts]), dim=-1)


def test_zero_shot_by_hand():
    # class 0 is the ensemble of two prompts at (1, 1)/sqrt2 and (1, -1)/sqrt2: their mean points at (1, 0);
    # class 1 is one prompt at (0, 1).
    model = FixedTextModel({"a1": [1.0, 1.0], "a2": [1.0, -1.0], "b": [0.0, 1.0]})
    prompts = {"A": ["a1", "a2"], "B": ["b"]}
    img = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    y = np.array([0, 1, 1, 1])
    # similarities to (1, 0) and (0, 1): image 2 goes to A although it is B -> 3 of 4 right
    m = zero_shot(model, None, y, prompts, image_embeds=img, n_boot=0)
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[1, 0], [1, 2]]
    # F1(A) = 2 * (1/2 * 1) / (1/2 + 1) = 2/3; F1(B) = 2 * (1 * 2/3) / (1 + 2/3) = 4/5
    assert math.isclose(m["macro_f1"], (2 / 3 + 4 / 5) / 2)
    # P(B) = sigmoid(10 * (x1 - x0)) ranks every B image (0.6, -0.2, 0.8) above the A image (-0.8)
    assert m["auroc"] == 1.0
    assert m["support"] == [1, 3] and m["classes"] == ["A", "B"] and m["n"] == 4


# ------------------------------------------------------------------------------------------ retrieval
SIM = np.array(
    [
        [0.9, 0.1, 0.8, 0.3],
        [0.2, 0.7, 0.1, 0.6],
        [0.5, 0.4, 0.3, 0.9],
    ]
)
IMAGE_CAT = np.array([0, 1, 0])
TEXT_CAT = np.array([0, 1, 0, 1])


def test_precision_recall_at_k_by_hand():
    # ranked relevance per image: [1,1,0,0], [1,1,0,0], [0,1,0,1]
    r = precision_recall_at_k(SIM, IMAGE_CAT, TEXT_CAT, ks=(1, 2, 3, 10))
    assert math.isclose(r["p@1"], 2 / 3) and math.isclose(r["r@1"], 2 / 3)
    assert math.isclose(r["p@2"], (1 + 1 + 0.5) / 3) and r["r@2"] == 1.0
    assert math.isclose(r["p@3"], (2 / 3 + 2 / 3 + 1 / 3) / 3) and r["r@3"] == 1.0
    assert r["p@10"] == 0.5 and r["r@10"] == 1.0  # K past the pool: all 4 candidates, 2 relevant each
    # text -> image: ranked relevance per text: [1,1,0], [1,0,0], [1,1,0], [0,1,0]
    t = precision_recall_at_k(SIM.T, TEXT_CAT, IMAGE_CAT, ks=(1, 2))
    assert t["p@1"] == 0.75 and t["r@1"] == 0.75
    assert t["p@2"] == 0.75 and t["r@2"] == 1.0


def test_retrieval_by_hand_from_embeddings():
    # image embeddings = rows of SIM, text embeddings = the identity: similarities are SIM itself
    out = retrieval(torch.tensor(SIM), IMAGE_CAT, torch.eye(4, dtype=torch.float64), TEXT_CAT, ks=(1, 2))
    assert math.isclose(out["p@1"], 2 / 3) and math.isclose(out["p@2"], 2.5 / 3)
    assert out["image_to_text"]["r@2"] == 1.0
    assert out["text_to_image"]["p@1"] == 0.75
    assert out["n_images"] == 3 and out["n_texts"] == 4


# ------------------------------------------------------------------------------------------ candidates
def one_hot(*names: str) -> np.ndarray:
    v = np.zeros(14, np.float32)
    for n in names:
        v[OBSERVATIONS.index(n)] = 1
    return v


def test_sentence_candidates_name_exactly_one_class_and_drop_duplicates():
    sentences = [
        ["Mild cardiomegaly.", "Small left effusion.", "Effusion and edema."],
        ["mild  Cardiomegaly."],
    ]
    labels = [
        np.stack(
            [one_hot("Cardiomegaly"), one_hot("Pleural Effusion"), one_hot("Pleural Effusion", "Edema")]
        ),
        np.stack([one_hot("Cardiomegaly")]),
    ]
    texts, cats, dup = sentence_candidates(sentences, labels, "chexpert5", None)
    assert texts == ["Mild cardiomegaly.", "Small left effusion."]
    assert cats.tolist() == [
        COMPETITION_TASKS.index("Cardiomegaly"),
        COMPETITION_TASKS.index("Pleural Effusion"),
    ]
    assert dup == 1


def test_balanced_pick_same_count_per_class_seeded():
    cats = np.array([0] * 10 + [1] * 3 + [2] * 7)
    pick, take = balanced_pick(cats, 3, per_class=5, seed=1)
    assert take == 3 and np.bincount(cats[pick]).tolist() == [3, 3, 3]
    assert np.array_equal(pick, balanced_pick(cats, 3, per_class=5, seed=1)[0])
    pick2, take2 = balanced_pick(cats, 3, per_class=2, seed=0)
    assert take2 == 2 and np.bincount(cats[pick2]).tolist() == [2, 2, 2]
    with pytest.raises(Exception, match="no candidate text"):
        balanced_pick(np.array([0, 0, 2]), 3, per_class=1)


def test_cli_retrieval_is_class_balanced_and_says_so(tmp_path, model_dir):
    y = np.arange(10) % 5
    rows = chexpert5_rows(y, "test")
    extra = {"Atelectasis": ["Bibasilar atelectasis.", "Left basilar atelectasis.", "Linear atelectasis."]}
    for r, c in zip(rows, y):
        name = COMPETITION_TASKS[int(c)]
        r["report"] = " ".join(extra.get(name, [f"There is {name.lower()}."]))
    cache = write_cache(tmp_path / "cache", {"test": (class_images(y, 1), rows)})
    base = ["--model", str(model_dir), "--cache", str(cache), "--device", "cpu"]
    assert main(["eval", "retrieval", *base, "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    p = r["protocol"]
    # atelectasis has 3 distinct sentences, every other class 1: one per class, all classes alike
    assert p["balanced"] and p["per_class"] == [1] * 5 and p["available_per_class"] == [3, 1, 1, 1, 1]
    assert r["n_texts"] == 5 and p["duplicates_dropped"] == 7  # each report appears twice
    assert (
        main(
            [
                "eval",
                "retrieval",
                *base,
                "--texts",
                "prompts",
                "--per-class",
                "3",
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    q = json.loads((tmp_path / "p.json").read_text())
    assert q["n_texts"] == 15 and q["protocol"]["per_class"] == [3] * 5
    assert list(q["protocol"]["prompts"]) == list(COMPETITION_TASKS)


# ------------------------------------------------------------------------------------------ COVID-19
def test_cli_covid_zero_shot_from_the_radiography_layout(tmp_path, cxr, model_dir, capsys):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    rng = np.random.default_rng(0)
    for cls, n in (("COVID", 3), ("Normal", 4), ("Lung_Opacity", 1), ("Viral Pneumonia", 2)):
        for k in range(n):
            cxr.png(
                root / cls / "images" / f"{cls}-{k + 1}.png", rng.integers(0, 255, (40, 40), dtype=np.uint8)
            )
    manifest = tmp_path / "covid.csv"
    assert main(["data", "import", "covid", "--root", str(root), "--out", str(manifest)]) == 0
    assert main(["data", "cache", str(manifest), "--size", "32", "--workers", "0"]) == 0
    cache = tmp_path / "covid_cache32"
    out = tmp_path / "z.json"
    args = ["eval", "zeroshot", "--model", str(model_dir), "--cache", str(cache), "--split", "all"]
    args += ["--task", "binary", "--bootstrap", "10", "--device", "cpu"]
    assert main([*args, "--positive", "COVID-19", "--json", str(out)]) == 0
    z = json.loads(out.read_text())
    assert z["classes"] == ["Normal", "COVID-19"] and z["support"] == [4, 3] and z["n"] == 7
    assert z["prompts"]["COVID-19"] and z["prompts"]["Normal"]
    assert "pretraining_overlap" not in z
    capsys.readouterr()
    # the pre-training cache given: evaluating on its own images is warned about and recorded
    leak = ["--train-cache", str(cache), "--train-split", "all", "--json", str(out)]
    assert main([*args, "--positive", "covid", *leak]) == 0
    assert "share 10 patient(s)" in capsys.readouterr().err
    z = json.loads(out.read_text())
    assert z["pretraining_overlap"]["shared_images"] == 10 and z["support"] == [4, 3]
    # a model inside its run folder: the pre-training cache is read from RUN/config.json
    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "model", copy_function=os.link)
    (run / "config.json").write_text(json.dumps({"data": {"cache": str(cache), "split": "all"}}))
    ran = [a if a != str(model_dir) else str(run / "model") for a in args]
    assert main([*ran, "--positive", "COVID-19", "--json", str(out)]) == 0
    assert "share 10 patient(s)" in capsys.readouterr().err
    assert json.loads(out.read_text())["pretraining_overlap"]["from"] == "the model's run config.json"
    assert main([*args, "--positive", "Flu"]) == 2  # a class the cache does not have: one clear line
    assert "no images of class(es) Flu" in capsys.readouterr().err
