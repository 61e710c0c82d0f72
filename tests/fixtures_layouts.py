"""Small datasets in each public dataset's official on-disk layout, plus the "your own files" the docs use.

`build_workspace(ws)` writes, under `ws`:

    data/mimic-cxr-jpg/                 MIMIC-CXR-JPG 2.0.0: files/pNN/pX/sY/<dicom_id>.jpg, reports
                                        files/pNN/pX/sY.txt, mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz
    data/CheXpert-v1.0-small/           train.csv / valid.csv (official header) + train/ valid/ JPEGs
    data/rsna-pneumonia/                stage_2_train_labels.csv, stage_2_detailed_class_info.csv, DICOMs
    data/COVID-19_Radiography_Dataset/  COVID/ Normal/ Lung_Opacity/ Viral Pneumonia/, images/*.png
    data/chest_xray/                    Kermany: {train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg
    ../shared/data/kermany-pneumonia/   Kermany's training split alone (train/{NORMAL,PNEUMONIA} + train.csv),
                                        where the reproduction docs expect it (relative to the checkout)
    reports.csv, mimic_reports.csv      report tables (study_id, report); reports.jsonl (id, text)
    mimic-cxr-reports/files/...         extracted MIMIC-CXR reports
    NLMCXR_reports.tgz                  IU report XMLs (ecgen-radiology/N.xml), as distributed
    scans/*.dcm, cxr.dcm                a user's own DICOM files

Images are tiny (48-64 px) so a recipe run costs seconds; labels are chosen so every documented task has
every class in every split it reads (e.g. each CheXpert competition class in MIMIC's val and test splits).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import write_dicom, write_jpeg, write_png
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS

# One report per competition class (FINDINGS + IMPRESSION), so paired text and labels agree.
CLASS_REPORTS = {
    "Atelectasis": ("Linear opacity at the left lung base.", "Bibasilar atelectasis."),
    "Cardiomegaly": ("The heart is enlarged.", "Moderate cardiomegaly."),
    "Consolidation": ("Dense opacity in the right lower lobe.", "Right lower lobe consolidation."),
    "Edema": ("Perihilar haziness and vascular congestion.", "Moderate pulmonary edema."),
    "Pleural Effusion": ("Blunting of the left costophrenic angle.", "Small left pleural effusion."),
}
MIMIC_LABEL_ORDER = sorted(OBSERVATIONS)  # the -chexpert.csv column order (alphabetical)


def _gz_csv(path: Path, df: pd.DataFrame) -> None:
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)


def _gray(seed: int, h: int = 48, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.linspace(30, 220, w)[None, :] * 0.6 + rng.random((h, w)) * 90).astype(np.uint8)


def _mimic_report(task: str) -> str:
    findings, impression = CLASS_REPORTS[task]
    return (
        "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
        f" INDICATION:  ___ with dyspnea\n\n FINDINGS:\n\n {findings}\n\n IMPRESSION:\n\n {impression}\n"
    )


def make_mimic(root: Path) -> Path:
    """50 studies: per class 8 train (2 with a lateral film too), 1 validate, 1 test (a 10% subset of the
    frontal training images still fills a batch of 4)."""
    meta, split, chex = [], [], []
    n = 0
    for task in COMPETITION_TASKS:
        for j, sp in enumerate(["train"] * 8 + ["validate", "test"]):
            n += 1
            subject, study = f"1{n:07d}", f"5{n:07d}"
            folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
            views = [("PA" if j % 2 else "AP", f"d{n:03d}a")]
            if sp == "train" and j < 2:
                views.append(("LATERAL", f"d{n:03d}b"))
            for view, dicom in views:
                write_jpeg(folder / f"s{study}" / f"{dicom}.jpg", h=56, w=48, seed=n)
                meta.append(
                    {
                        "dicom_id": dicom,
                        "subject_id": subject,
                        "study_id": study,
                        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                        "ViewPosition": view,
                        "Rows": 56,
                        "Columns": 48,
                    }
                )
                split.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": sp})
            (folder / f"s{study}.txt").write_text(_mimic_report(task))
            labels = {o: "" for o in MIMIC_LABEL_ORDER}
            labels.update({t: "0.0" for t in COMPETITION_TASKS}, **{task: "1.0"})
            chex.append({"subject_id": subject, "study_id": study, **labels})
    root.mkdir(parents=True, exist_ok=True)
    _gz_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", pd.DataFrame(meta))
    _gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", pd.DataFrame(split))
    _gz_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", pd.DataFrame(chex))
    return root


def make_chexpert(root: Path) -> Path:
    """CheXpert-v1.0-small: per class 4 frontal train images (+ a lateral) and 1 valid image, one positive."""
    for csv_name, split_dir, per_class in (("train.csv", "train", 4), ("valid.csv", "valid", 1)):
        recs = []
        for k, task in enumerate(COMPETITION_TASKS):
            for j in range(per_class + (split_dir == "train")):
                lateral = j == per_class
                patient = f"patient{(10 if split_dir == 'train' else 60) + 10 * k + j:05d}"
                rel = f"{split_dir}/{patient}/study1/view{1 + lateral}_{'lateral' if lateral else 'frontal'}.jpg"
                write_jpeg(root / rel, h=52, w=44, seed=100 + len(recs) + k)
                labels = {o: "" for o in OBSERVATIONS}
                labels.update({t: "0.0" for t in COMPETITION_TASKS}, **{task: "1.0"})
                recs.append(
                    {
                        "Path": f"CheXpert-v1.0-small/{rel}",
                        "Sex": "Female",
                        "Age": 60 + j,
                        "Frontal/Lateral": "Lateral" if lateral else "Frontal",
                        "AP/PA": "" if lateral else ("AP" if j % 2 else "PA"),
                        **labels,
                    }
                )
        pd.DataFrame(recs).to_csv(root / csv_name, index=False)
    return root


def make_rsna(root: Path, n_pos: int = 15, n_normal: int = 15, n_other: int = 3) -> Path:
    boxes, detail = [], []
    for k in range(n_pos + n_normal + n_other):
        pid = f"00c0b293-52d1-4f95-9c2e-{k:012d}"
        pos = k < n_pos
        cls = (
            "Lung Opacity" if pos else ("Normal" if k < n_pos + n_normal else "No Lung Opacity / Not Normal")
        )
        for _ in range(2 if pos else 1):  # a positive has one row per box, as in the real CSV
            boxes.append(
                {
                    "patientId": pid,
                    "x": 20.0 if pos else "",
                    "y": 18.0 if pos else "",
                    "width": 15.0 if pos else "",
                    "height": 22.0 if pos else "",
                    "Target": int(pos),
                }
            )
            detail.append({"patientId": pid, "class": cls})
        px = _gray(200 + k, 64, 64).astype(np.uint16) * 16  # 12-bit data, as CR DICOMs hold
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", px, view="AP" if k % 3 else "PA")
    pd.DataFrame(boxes).to_csv(root / "stage_2_train_labels.csv", index=False)
    pd.DataFrame(detail).to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    return root


def make_covid(root: Path, per_class: int = 6) -> Path:
    for cls in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        for k in range(per_class):
            write_png(root / cls / "images" / f"{cls}-{k + 1}.png", _gray(300 + k, 56, 56))
            write_png(root / cls / "masks" / f"{cls}-{k + 1}.png", np.zeros((56, 56), np.uint8))
    return root


def make_kermany(root: Path) -> Path:
    """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}, Kermany's file names (patient ids inside)."""
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for k in range(n):
            base = {"train": 100, "val": 300, "test": 500}[split] + k
            write_jpeg(root / split / "NORMAL" / f"IM-{base:04d}-0001.jpeg", h=56, w=64, seed=base)
            kind = "bacteria" if k % 2 else "virus"
            write_jpeg(
                root / split / "PNEUMONIA" / f"person{base}_{kind}_{k + 1}.jpeg", h=56, w=64, seed=base + 1
            )
    return root


def make_kermany_train(root: Path, per_kind: int = 12) -> Path:
    """The training split alone, as /work/shared/data/kermany-pneumonia holds it: train/{NORMAL,PNEUMONIA} and
    train.csv (path,label,subtype); enough patients of each kind (normal / bacteria / virus) that a seeded
    70/15/15 patient-disjoint split leaves every kind in every split."""
    rows = []
    for k in range(per_kind):
        for label, kind, name in (
            ("NORMAL", "normal", f"IM-{700 + k:04d}-0001.jpeg"),
            ("PNEUMONIA", "bacteria", f"person{700 + k}_bacteria_{k + 1}.jpeg"),
            ("PNEUMONIA", "virus", f"person{800 + k}_virus_{k + 1}.jpeg"),
        ):
            rel = f"train/{label}/{name}"
            write_jpeg(root / rel, h=48, w=48, seed=len(rows) + 7000)
            rows.append((rel, label, kind))
    pd.DataFrame(rows, columns=["path", "label", "subtype"]).to_csv(root / "train.csv", index=False)
    return root


IU_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><meta type="rr"/><uId id="CXR{n}"/><pmcId id="{n}"/>
<MedlineCitation Owner="Indiana University" Status="supplied by publisher"><Article PubModel="Electronic">
<Abstract><AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">Chest pain.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText></Abstract></Article></MedlineCitation>
<MeSH><major>normal</major></MeSH>
<parentImage id="CXR{n}_IM-0001-1001"><figureId>F1</figureId></parentImage></eCitation>"""


def make_user_files(ws: Path) -> None:
    """What a user brings: report tables, extracted MIMIC reports, the IU report archive, DICOM scans."""
    reports = [(f"s{k}", " ".join(CLASS_REPORTS[t])) for k, t in enumerate(COMPETITION_TASKS)]
    reports.append(("s9", "The lungs are clear. Findings may represent early pneumonia."))
    pd.DataFrame(reports, columns=["study_id", "report"]).to_csv(ws / "reports.csv", index=False)
    pd.DataFrame(reports, columns=["study_id", "report"]).to_csv(ws / "mimic_reports.csv", index=False)
    with (ws / "reports.jsonl").open("w") as f:
        for sid, text in reports:
            f.write(json.dumps({"id": sid, "text": text}) + "\n")
    for k, task in enumerate(COMPETITION_TASKS):
        p = ws / "mimic-cxr-reports" / "files" / "p10" / f"p1000000{k}" / f"s5000000{k}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_mimic_report(task))
    with tarfile.open(ws / "NLMCXR_reports.tgz", "w:gz") as tar:
        for k, task in enumerate(COMPETITION_TASKS, start=1):
            data = IU_XML.format(
                n=k, findings=CLASS_REPORTS[task][0], impression=CLASS_REPORTS[task][1]
            ).encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{k}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    write_dicom(ws / "cxr.dcm", _gray(399, 64, 52).astype(np.uint16) * 16, view="PA")
    for k in range(3):
        write_dicom(ws / "scans" / f"scan{k}.dcm", _gray(400 + k, 60, 50).astype(np.uint16) * 16, view="PA")


def build_workspace(ws: Path) -> Path:
    """All datasets under ws/data/ (the docs' /data/ prefix maps here), the user files in ws, and Kermany's
    training split in ws/../shared/data/ (the path docs/results.md and docs/reproduction.md use)."""
    ws.mkdir(parents=True, exist_ok=True)
    make_mimic(ws / "data" / "mimic-cxr-jpg")
    make_chexpert(ws / "data" / "CheXpert-v1.0-small")
    make_rsna(ws / "data" / "rsna-pneumonia")
    make_covid(ws / "data" / "COVID-19_Radiography_Dataset")
    make_kermany(ws / "data" / "chest_xray")
    make_kermany_train(ws.parent / "shared" / "data" / "kermany-pneumonia")
    make_user_files(ws)
    return ws
