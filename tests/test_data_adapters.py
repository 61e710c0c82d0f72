"""Adapters on small fixtures in the datasets' real layouts: MIMIC-CXR-JPG, CheXpert, CheXpert-5x200, RSNA."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from medflip.data.adapters import get_adapter
from medflip.data.adapters._common import ImportContext, Rejects
from medflip.data.adapters.mimic import extract_sections
from medflip.data.manifest import conform
from medflip.errors import UserError
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS

MIMIC_LABEL_ORDER = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]
REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  //  eval for infection

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def run(name, root, skip_bad=False, **opts):
    ctx = ImportContext(root=root, rejects=Rejects(skip_bad), options=opts)
    return conform(get_adapter(name)(ctx)), ctx.rejects


def _gz_csv(path, df):
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)


def make_mimic(root, cxr):
    # (subject, study, dicom, view, split, report or None, chexpert labels or None)
    studies = [
        ("10000032", "50414267", "d1", "PA", "train", REPORT, {"No Finding": "1.0"}),
        ("10000032", "50414267", "d2", "LATERAL", "train", REPORT, {"No Finding": "1.0"}),
        (
            "10000032",
            "53189527",
            "d3",
            "AP",
            "validate",
            "FINAL REPORT\n\n Heart size is normal.\n\n Mild cardiomegaly.",
            {"Cardiomegaly": "-1.0", "Edema": "0.0"},
        ),
        (
            "10000764",
            "57375967",
            "d4",
            "AP",
            "test",
            "FINDINGS: Mild cardiomegaly.\nIMPRESSION: Cardiomegaly.",
            None,
        ),
    ]
    meta, split, chex = [], [], []
    for subj, study, dicom, view, sp, report, labels in studies:
        cxr.jpeg(root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}" / f"{dicom}.jpg")
        meta.append(
            {
                "dicom_id": dicom,
                "subject_id": subj,
                "study_id": study,
                "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                "ViewPosition": view,
                "Rows": 48,
                "Columns": 64,
            }
        )
        split.append({"dicom_id": dicom, "study_id": study, "subject_id": subj, "split": sp})
        if report is not None:
            (root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}.txt").write_text(report)
        if labels is not None and dicom != "d2":
            chex.append(
                {"subject_id": subj, "study_id": study, **{o: labels.get(o, "") for o in MIMIC_LABEL_ORDER}}
            )
    _gz_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", pd.DataFrame(meta))
    _gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", pd.DataFrame(split))
    _gz_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", pd.DataFrame(chex))
    return root


def test_mimic_sections():
    f, i = extract_sections(REPORT)
    assert f.startswith("There is no focal consolidation") and f.endswith("nipple shadows.")
    assert i == "No acute cardiopulmonary process."
    assert extract_sections("FINAL REPORT\n\n PA view.\n\n Lungs are clear.") == ("", "Lungs are clear.")


def test_mimic_import(tmp_path, cxr, stub_labeler):
    df, _ = run("mimic-cxr", make_mimic(tmp_path, cxr))
    assert df["split"].tolist() == ["train", "train", "val", "test"]
    assert df["view"].tolist() == ["PA", "LATERAL", "AP", "AP"]
    assert df["patient_id"].tolist() == ["10000032"] * 3 + ["10000764"]
    assert df.loc[0, "report"] == df.loc[0, "findings"] + " " + df.loc[0, "impression"]
    assert df.loc[0, "No Finding"] == 1 and pd.isna(df.loc[0, "Edema"])  # from -chexpert.csv
    assert df.loc[2, "Cardiomegaly"] == -1 and df.loc[2, "Edema"] == 0
    assert df.loc[2, "report"] == "Mild cardiomegaly."  # no sections: the last paragraph
    assert df.loc[3, "Cardiomegaly"] == 1  # no -chexpert row: labeled from the report
    assert all(p.endswith(".jpg") and "/files/p10/p10000032/" in p for p in df["path"][:3])


def test_mimic_bad_rows(tmp_path, cxr, stub_labeler):
    root = make_mimic(tmp_path, cxr)
    (root / "files/p10/p10000764/s57375967.txt").write_text("   \n")
    (root / "files/p10/p10000032/s50414267/d2.jpg").unlink()
    with pytest.raises(UserError, match=r"metadata.csv.gz, row 1 \(line 3\): image not found"):
        run("mimic-cxr", root)
    df, rejects = run("mimic-cxr", root, skip_bad=True)
    assert len(df) == 2
    reasons = rejects.frame()
    assert reasons["row"].tolist() == ["1", "3"] and "no findings or impression" in reasons["reason"].iloc[1]


def test_mimic_missing_columns(tmp_path, cxr):
    root = make_mimic(tmp_path, cxr)
    _gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", pd.DataFrame({"dicom_id": ["d1"], "fold": ["train"]}))
    with pytest.raises(UserError, match=r"split.csv.gz: missing column\(s\) \['split'\]"):
        run("mimic-cxr", root)


def make_chexpert(base, cxr, rows):
    root = base / "CheXpert-v1.0-small"
    for csv_name, split_dir in (("train.csv", "train"), ("valid.csv", "valid")):
        recs = []
        for k, (fl, appa, labels) in enumerate(rows):
            if (split_dir == "valid") != (k % 5 == 4):
                continue
            rel = f"{split_dir}/patient{k:05d}/study1/view1_{fl.lower()}.jpg"
            cxr.jpeg(root / rel, seed=k)
            recs.append(
                {
                    "Path": f"CheXpert-v1.0-small/{rel}",
                    "Sex": "Female",
                    "Age": 60,
                    "Frontal/Lateral": fl,
                    "AP/PA": appa,
                    **{o: labels.get(o, "") for o in OBSERVATIONS},
                }
            )
        pd.DataFrame(recs).to_csv(root / csv_name, index=False)
    return root


def test_chexpert_import_and_uncertain_policy(tmp_path, cxr):
    rows = [
        ("Frontal", "AP", {"No Finding": "1.0"}),
        ("Lateral", "", {"Edema": "-1.0"}),
        ("Frontal", "PA", {"Edema": "-1.0", "Cardiomegaly": "0.0"}),
        ("Frontal", "AP", {}),
        ("Frontal", "PA", {"Pleural Effusion": "1.0"}),
    ]
    root = make_chexpert(tmp_path, cxr, rows)
    df, _ = run("chexpert", root)
    assert df["split"].tolist() == ["train"] * 4 + ["val"]
    assert df["view"].tolist() == ["AP", "LATERAL", "PA", "AP", "PA"]
    assert df["patient_id"].tolist()[:2] == ["patient00000", "patient00001"]
    assert df["Edema"].tolist()[1] == -1 and df["Cardiomegaly"].tolist()[2] == 0
    pos, _ = run("chexpert", root, uncertain="positive")
    neg, _ = run("chexpert", root, uncertain="negative")
    ign, _ = run("chexpert", root, uncertain="ignore")
    assert pos["Edema"].iloc[1] == 1 and neg["Edema"].iloc[1] == 0 and pd.isna(ign["Edema"].iloc[1])
    assert len(run("chexpert", root, frontal_only=True)[0]) == 4
    (root / "train.csv").write_text((root / "train.csv").read_text().replace("-1.0", "maybe", 1))
    with pytest.raises(UserError, match=r"train.csv, row 1 \(line 3\): column 'Edema': label 'maybe'"):
        run("chexpert", root)


def _task_labels(positive, extra=None):
    return {**{t: "0.0" for t in COMPETITION_TASKS}, positive: "1.0", **(extra or {})}


def test_chexpert_5x200(tmp_path, cxr):
    rows = []
    for t in COMPETITION_TASKS:
        rows += [("Frontal", "AP", _task_labels(t))] * 3
        rows += [("Lateral", "", _task_labels(t))]  # lateral: never selected
        rows += [
            ("Frontal", "PA", _task_labels(t, {"Edema" if t != "Edema" else "Atelectasis": "-1.0"}))
        ]  # uncertain
        rows += [
            ("Frontal", "PA", _task_labels(t, {"Edema" if t != "Edema" else "Atelectasis": "1.0"}))
        ]  # two
    root = make_chexpert(tmp_path, cxr, rows)
    df, _ = run("chexpert-5x200", root, per_class=2, seed=0)
    assert df["class"].value_counts().to_dict() == dict.fromkeys(COMPETITION_TASKS, 2)
    assert (
        set(df["split"]) == {"test"}
        and set(df["view"]) <= {"AP", "PA"}
        and set(df["source"]) == {"chexpert-5x200"}
    )
    for _, r in df.iterrows():
        assert [r[t] for t in COMPETITION_TASKS].count(1) == 1 and r[r["class"]] == 1
        assert all(r[t] in (0,) or pd.isna(r[t]) for t in COMPETITION_TASKS if t != r["class"])
    assert run("chexpert-5x200", root, per_class=2, seed=0)[0]["path"].tolist() == df["path"].tolist()
    with pytest.raises(UserError, match="need 9"):
        run("chexpert-5x200", root, per_class=9)


def make_rsna(root, cxr, n_pos=3, n_normal=4, n_other=2):
    boxes, detail = [], []
    for k in range(n_pos + n_normal + n_other):
        pid = f"0004cfab-14fd-4e49-80ba-{k:012d}"
        cls = (
            "Lung Opacity"
            if k < n_pos
            else ("Normal" if k < n_pos + n_normal else "No Lung Opacity / Not Normal")
        )
        for _ in range(2 if k < n_pos else 1):  # positives have two boxes (two rows), as in the real CSV
            boxes.append(
                {
                    "patientId": pid,
                    "x": 264.0 if k < n_pos else "",
                    "y": 152.0 if k < n_pos else "",
                    "width": 213.0 if k < n_pos else "",
                    "height": 379.0 if k < n_pos else "",
                    "Target": int(k < n_pos),
                }
            )
            detail.append({"patientId": pid, "class": cls})
        cxr.dicom(
            root / "stage_2_train_images" / f"{pid}.dcm",
            np.full((8, 8), k * 10),
            view="AP" if k % 2 else "PA",
        )
    pd.DataFrame(boxes).to_csv(root / "stage_2_train_labels.csv", index=False)
    pd.DataFrame(detail).to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    return root


def test_rsna_import_balanced_and_full(tmp_path, cxr):
    root = make_rsna(tmp_path, cxr)
    df, _ = run("rsna-pneumonia", root, seed=0)
    assert df["class"].value_counts().to_dict() == {"Pneumonia": 3, "Normal": 3}
    pos = df[df["class"] == "Pneumonia"].iloc[0]
    assert pos["Pneumonia"] == 1 and pos["Lung Opacity"] == 1 and pos["No Finding"] == 0
    normal = df[df["class"] == "Normal"].iloc[0]
    assert normal["No Finding"] == 1 and normal["Pneumonia"] == 0 and normal["Cardiomegaly"] == 0
    assert df["path"].str.endswith(".dcm").all() and (df["patient_id"] == df["study_id"]).all()
    expected_view = ["AP" if int(p[-12:]) % 2 else "PA" for p in df["patient_id"]]
    assert df["view"].tolist() == expected_view  # read from the DICOM headers
    full, _ = run("rsna-pneumonia", root, balanced=False)
    assert full["class"].value_counts().to_dict() == {"Normal": 4, "Pneumonia": 3, "Not Normal": 2}
    assert run("rsna-pneumonia", root, seed=1, per_class=2)[0]["class"].value_counts().to_dict() == {
        "Pneumonia": 2,
        "Normal": 2,
    }


def test_rsna_bad_target_and_missing_dicom(tmp_path, cxr):
    root = make_rsna(tmp_path, cxr)
    csv = root / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text().rstrip("\n") + "\nbroken-id,,,,,yes\n")
    with pytest.raises(UserError, match=r"stage_2_train_labels.csv, row 12 \(line 14\): .*Target 'yes'"):
        run("rsna-pneumonia", root)
    next(iter((root / "stage_2_train_images").glob("*.dcm"))).unlink()
    df, rejects = run("rsna-pneumonia", root, skip_bad=True, balanced=False)
    assert len(df) == 8 and len(rejects.rows) == 2
    assert rejects.frame()["reason"].str.contains("image not found").sum() == 1


def test_chexpert_5x200_strict_excludes_other_findings(tmp_path, cxr):
    rows = []
    for t in COMPETITION_TASKS:
        rows += [("Frontal", "AP", _task_labels(t))] * 2
        rows += [("Frontal", "AP", _task_labels(t, {"Support Devices": "1.0"}))] * 2
    root = make_chexpert(tmp_path, cxr, rows)
    loose, _ = run("chexpert-5x200", root, per_class=3)
    assert (loose["Support Devices"] == 1).any()
    strict, _ = run("chexpert-5x200", root, per_class=1, strict=True)
    assert len(strict) == 5 and not (strict["Support Devices"] == 1).any()
    with pytest.raises(UserError, match="only 1 frontal"):
        run("chexpert-5x200", root, per_class=2, strict=True)


def test_mimic_reports_from_the_distributed_zip(tmp_path, cxr, stub_labeler):
    import shutil
    import zipfile

    root = make_mimic(tmp_path / "jpg", cxr)
    with zipfile.ZipFile(root / "mimic-cxr-reports.zip", "w") as z:
        for txt in sorted((root / "files").rglob("s*.txt")):
            z.write(txt, "mimic-cxr-reports/" + str(txt.relative_to(root)))
            txt.unlink()
    df, _ = run("mimic-cxr", root)
    assert df.loc[0, "impression"] == "No acute cardiopulmonary process." and len(df) == 4
    shutil.move(root / "mimic-cxr-reports.zip", tmp_path / "r.zip")
    assert (
        run("mimic-cxr", root, reports=str(tmp_path / "r.zip"))[0]["report"].tolist() == df["report"].tolist()
    )
    assert extract_sections("FINDINGS AND IMPRESSION: Clear lungs.") == ("Clear lungs.", "")
