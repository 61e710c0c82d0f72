"""Adapters on real-layout fixtures: COVID, Kermany (+ the real copy when present), IU/OpenI, NIH, generic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medflip.data.adapters import get_adapter
from medflip.data.adapters._common import ImportContext, Rejects
from medflip.data.images import load_square
from medflip.data.manifest import conform
from medflip.data.splits import check_disjoint, patient_split
from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

REAL_KERMANY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany-pneumonia"
GRAY = np.full((20, 24), 128, dtype=np.uint8)


def run(name, root, skip_bad=False, **opts):
    ctx = ImportContext(root=root, rejects=Rejects(skip_bad), options=opts)
    return conform(get_adapter(name)(ctx)), ctx.rejects


def test_covid_layout_labels_and_class_filter(tmp_path, cxr):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for cls in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        for k in range(2):
            cxr.png(root / cls / "images" / f"{cls}-{k + 1}.png", GRAY)
        cxr.png(root / cls / "masks" / f"{cls}-1.png", GRAY)  # masks are not images of the dataset
    df, _ = run("covid", tmp_path)  # the folder above the dataset works too
    assert df["class"].value_counts().to_dict() == {
        "COVID-19": 2,  # one name for the class everywhere (prompts, --positive COVID-19)
        "Normal": 2,
        "Lung_Opacity": 2,
        "Viral Pneumonia": 2,
    }
    assert not df["path"].str.contains("/masks/").any()
    by = df.groupby("class").first()
    assert by.loc["COVID-19", "Pneumonia"] == 1 and by.loc["COVID-19", "No Finding"] == 0
    assert by.loc["Normal", "No Finding"] == 1 and (by.loc["Normal", list(OBSERVATIONS[1:])] == 0).all()
    assert by.loc["Lung_Opacity", "Lung Opacity"] == 1 and pd.isna(by.loc["Lung_Opacity", "Pneumonia"])
    assert df["patient_id"].is_unique
    two, _ = run("covid", root, classes="COVID,Normal")
    assert set(two["class"]) == {"COVID-19", "Normal"}
    same, _ = run("covid", root, classes="COVID-19,Normal")
    assert same["path"].tolist() == two["path"].tolist()
    with pytest.raises(UserError, match="unknown COVID class"):
        run("covid", root, classes="COVID,Flu")


def make_kermany(root, cxr):
    names = {
        ("train", "NORMAL"): ["IM-0115-0001.jpeg", "NORMAL2-IM-0115-0001.jpeg", "IM-0117-0001.jpeg"],
        ("train", "PNEUMONIA"): ["person1_bacteria_1.jpeg", "person1_virus_6.jpeg", "person10_virus_35.jpeg"],
        ("test", "NORMAL"): ["IM-0001-0001.jpeg"],
        ("val", "PNEUMONIA"): ["person1946_bacteria_4874.jpeg"],
    }
    for (split, cls), files in names.items():
        for k, f in enumerate(files):
            cxr.jpeg(root / split / cls / f, seed=k)
    return root


def test_kermany_fixture(tmp_path, cxr):
    df, _ = run("kermany", make_kermany(tmp_path, cxr))
    assert len(df) == 8 and df["split"].value_counts().to_dict() == {"train": 6, "test": 1, "val": 1}
    pid = dict(zip(df["path"].map(lambda p: Path(p).name), df["patient_id"]))
    assert pid["IM-0115-0001.jpeg"] == pid["NORMAL2-IM-0115-0001.jpeg"] == "IM-0115"
    assert pid["person1_bacteria_1.jpeg"] == pid["person1_virus_6.jpeg"] == "person1"
    assert pid["person10_virus_35.jpeg"] == "person10"
    pneu = df[df["class"] == "PNEUMONIA"].iloc[0]
    assert pneu["Pneumonia"] == 1 and pneu["No Finding"] == 0 and pd.isna(pneu["Lung Opacity"])
    normal = df[df["class"] == "NORMAL"].iloc[0]
    assert normal["No Finding"] == 1 and normal["Pneumonia"] == 0
    assert set(df.loc[df["class"] == "PNEUMONIA", "subtype"]) == {"bacteria", "virus"}
    cxr.jpeg(tmp_path / "train" / "NORMAL" / "scan.jpeg")
    with pytest.raises(UserError, match="no Kermany patient id"):
        run("kermany", tmp_path)
    assert len(run("kermany", tmp_path, skip_bad=True)[1].rows) == 1


@pytest.mark.skipif(not REAL_KERMANY.is_dir(), reason="the shared Kermany copy is not on this machine")
def test_kermany_real_copy():
    df, rejects = run("kermany", REAL_KERMANY)
    assert not rejects.rows and len(df) == 5216
    assert df["class"].value_counts().to_dict() == {"PNEUMONIA": 3875, "NORMAL": 1341}
    shipped = pd.read_csv(REAL_KERMANY / "train.csv")
    mine = dict(zip(df["path"].map(lambda p: str(Path(p).relative_to(REAL_KERMANY))), df["class"]))
    assert all(mine[p] == label for p, label in zip(shipped["path"], shipped["label"]))
    assert (df["patient_id"] != "").all() and df["patient_id"].nunique() < len(df)
    split = patient_split(df, seed=0)
    check_disjoint(split)
    for p in df["path"].iloc[::1000]:
        assert load_square(p, 64).shape == (64, 64)


IU_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><meta type="rr"/><uId id="CXR{n}"/><pmcId id="{n}"/>
<MedlineCitation Owner="Indiana University" Status="supplied by publisher"><Article PubModel="Electronic">
<Abstract><AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">XXXX-year-old male, chest pain.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText></Abstract></Article></MedlineCitation>
<MeSH><major>{mesh}</major></MeSH>
{images}</eCitation>"""


def make_iu(root, cxr, reports):
    for n, findings, impression, image_ids in reports:
        images = "".join(f'<parentImage id="{i}"><figureId>F1</figureId></parentImage>' for i in image_ids)
        xml = IU_XML.format(n=n, findings=findings, impression=impression, mesh="normal", images=images)
        (root / "ecgen-radiology").mkdir(parents=True, exist_ok=True)
        (root / "ecgen-radiology" / f"{n}.xml").write_text(xml)
        for i in image_ids:
            cxr.png(root / "NLMCXR_png" / f"{i}.png", GRAY)
    return root


def test_iu_import_labels_from_reports(tmp_path, cxr, stub_labeler):
    root = make_iu(
        tmp_path,
        cxr,
        [
            (
                1,
                "The heart is normal in size.",
                "Normal chest x-XXXX.",
                ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
            ),
            (
                2,
                "Cardiomegaly. Small left pleural effusion.",
                "Cardiomegaly with effusion.",
                ["CXR2_IM-0652-1001"],
            ),
            (10, "", "", ["CXR10_IM-0002-1001"]),
        ],
    )
    with pytest.raises(UserError, match=r"10.xml, row parentImage 0 \(CXR10_IM-0002-1001\): empty report"):
        run("iu-xray", root)
    df, rejects = run("iu-xray", root, skip_bad=True)
    assert len(df) == 3 and len(rejects.rows) == 1
    assert df["patient_id"].tolist() == ["CXR1", "CXR1", "CXR2"]
    assert df.loc[0, "report"] == "The heart is normal in size. Normal chest x-XXXX."
    assert (
        df.loc[0, "No Finding"] == 1 and df.loc[2, "Cardiomegaly"] == 1 and df.loc[2, "Pleural Effusion"] == 1
    )
    assert df.loc[0, "view"] == "LATERAL"  # torchxrayvision's t-SNE view table knows this real image id
    assert df.loc[0, "mesh"] == "normal"


def make_nih(root, cxr):
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    )
    rows = [
        "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
        "00000001_001.png,Cardiomegaly|Effusion|Nodule,1,1,58,M,PA,2894,2729,0.143,0.143",
        "00000002_000.png,No Finding,0,2,81,M,AP,2500,2048,0.171,0.171",
        "00000003_000.png,Hernia|Infiltration|Pleural_Thickening,0,3,74,F,PA,2500,2048,0.168,0.168",
    ]
    (root / "Data_Entry_2017_v2020.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *rows]) + "\n")
    for k, r in enumerate(rows):
        cxr.png(root / f"images_00{1 + k % 2}" / "images" / r.split(",")[0], GRAY)
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000003_000.png\n")
    (root / "test_list.txt").write_text("00000002_000.png\n")
    return root


def test_nih_mapping_and_split(tmp_path, cxr):
    df, _ = run("nih-cxr14", make_nih(tmp_path, cxr))
    assert df["split"].tolist() == ["train", "train", "test", "train"]
    assert df["patient_id"].tolist() == ["1", "1", "2", "3"] and df["view"].tolist() == [
        "PA",
        "PA",
        "AP",
        "PA",
    ]
    r = df.iloc[1]
    assert r["Cardiomegaly"] == 1 and r["Pleural Effusion"] == 1 and r["Lung Lesion"] == 1 and r["Edema"] == 0
    assert pd.isna(r["Lung Opacity"]) and pd.isna(r["Fracture"]) and r["No Finding"] == 0
    assert df.iloc[2]["No Finding"] == 1 and df.iloc[2]["Cardiomegaly"] == 0
    h = df.iloc[3]
    assert (
        h["Lung Opacity"] == 1
        and h["Pleural Other"] == 1
        and h["class"] == "Hernia|Infiltration|Pleural_Thickening"
    )
    csv = tmp_path / "Data_Entry_2017_v2020.csv"
    csv.write_text(csv.read_text() + "00000004_000.png,Flu,0,4,1,F,PA,1,1,1,1\n")
    with pytest.raises(UserError, match=r"row 4 \(line 6\): .*unknown label"):
        run("nih-cxr14", tmp_path)


def test_generic_folder(tmp_path, cxr):
    for split, cls in (("train", "NORMAL"), ("train", "pleural_effusion"), ("test", "tuberculosis")):
        cxr.png(tmp_path / split / cls / f"pat{len(cls)}_a.png", GRAY)
        cxr.png(tmp_path / split / cls / f"pat{len(cls)}_b.png", GRAY)
    df, _ = run("folder", tmp_path, patient_regex=r"^(pat\d+)_")
    assert df["split"].tolist() == ["train"] * 4 + ["test"] * 2
    assert df["patient_id"].tolist()[:2] == ["pat6", "pat6"]
    by = df.groupby("class").first()
    assert by.loc["NORMAL", "No Finding"] == 1 and by.loc["pleural_effusion", "Pleural Effusion"] == 1
    assert by.loc["pleural_effusion", "No Finding"] == 0 and pd.isna(by.loc["tuberculosis", "No Finding"])


def test_generic_csv(tmp_path, cxr, stub_labeler):
    for k in range(3):
        cxr.png(tmp_path / "img" / f"{k}.png", GRAY)
    pd.DataFrame(
        {
            "file": ["img/0.png", "img/1.png", "img/2.png"],
            "text": ["Cardiomegaly.", "Normal.", ""],
            "mrn": ["a", "b", "c"],
            "fold": ["training", "test", "train"],
        }
    ).to_csv(tmp_path / "export.csv", index=False)
    opts = {
        "csv": str(tmp_path / "export.csv"),
        "path_col": "file",
        "report_col": "text",
        "patient_col": "mrn",
        "split_col": "fold",
    }
    with pytest.raises(UserError, match=r"export.csv, row 2 \(line 4\): empty report"):
        run("csv", tmp_path, **opts)
    df, rejects = run("csv", tmp_path, skip_bad=True, **opts)
    assert (
        len(df) == 2 and df["split"].tolist() == ["train", "test"] and df["patient_id"].tolist() == ["a", "b"]
    )
    assert df.loc[0, "Cardiomegaly"] == 1 and df.loc[1, "No Finding"] == 1
    with pytest.raises(UserError, match=r"missing column\(s\) \['notes'\]"):
        run("csv", tmp_path, **{**opts, "report_col": "notes"})


def test_kermany_kaggle_zip_layout(tmp_path, cxr):
    make_kermany(tmp_path / "chest_xray" / "chest_xray", cxr)
    assert len(run("kermany", tmp_path)[0]) == 8
