"""NIH ChestX-ray14 (Wang et al., CVPR 2017).

Layout: ``ROOT/Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``; if neither is there,
torchxrayvision's bundled v2020 table is used), PNGs in ``ROOT/images*/`` (``images/`` from the NIH box or
``images_001/images/`` ... from Kaggle), optional ``train_val_list.txt`` / ``test_list.txt`` (official
patient-wise split -> train / test).

Label mapping to the 14 CheXpert observations. NIH's text-mined labels are a closed list, so a mapped
finding that is absent is 0 (as torchxrayvision does):
Atelectasis, Cardiomegaly, Consolidation, Edema, Pneumonia, Pneumothorax -> same name;
Effusion -> Pleural Effusion; Mass or Nodule -> Lung Lesion; "No Finding" -> No Finding.
Infiltration -> Lung Opacity = 1, else blank (consolidation or edema are opacities too, so 0 would lie);
Pleural_Thickening -> Pleural Other = 1, else blank (Pleural Other covers more). Enlarged
Cardiomediastinum, Fracture, Support Devices: blank. Emphysema, Fibrosis, Hernia have no CheXpert column:
they survive in ``class``, which holds the original "Finding Labels".
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from medflip.data.adapters._common import (
    ImportContext,
    images_by_stem,
    norm_view,
    read_csv_checked,
    xrv_data_file,
)
from medflip.errors import UserError

DIRECT = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Effusion": "Pleural Effusion",
    "No Finding": "No Finding",
}
KNOWN = set(DIRECT) | {
    "Mass",
    "Nodule",
    "Infiltration",
    "Pleural_Thickening",
    "Emphysema",
    "Fibrosis",
    "Hernia",
}


def labels_for(findings: set[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {obs: int(name in findings) for name, obs in DIRECT.items()}
    out["Lung Lesion"] = int(bool(findings & {"Mass", "Nodule"}))
    out["Lung Opacity"] = 1 if "Infiltration" in findings else None
    out["Pleural Other"] = 1 if "Pleural_Thickening" in findings else None
    return out


def _table(root: Path) -> Path:
    for name in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"):
        if (root / name).is_file():
            return root / name
    bundled = xrv_data_file("Data_Entry_2017_v2020.csv.gz")
    if bundled is not None:
        return bundled
    raise UserError(f"no Data_Entry_2017*.csv in {root}")


def _official_split(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, split in (("train_val_list.txt", "train"), ("test_list.txt", "test")):
        if (root / name).is_file():
            out.update(
                {line.strip(): split for line in (root / name).read_text().splitlines() if line.strip()}
            )
    return out


def run(ctx: ImportContext) -> pd.DataFrame:
    table = _table(ctx.root)
    df = read_csv_checked(
        table, ["Image Index", "Finding Labels", "Patient ID", "View Position"], "NIH table"
    )
    image_dirs = [p for p in sorted(ctx.root.iterdir()) if p.is_dir() and p.name.startswith("images")]
    if not image_dirs:
        raise UserError(f"no images*/ folder in {ctx.root}")
    found: dict[str, Path] = {}
    for d in image_dirs:
        found.update({f"{k}.png": v for k, v in images_by_stem(d, (".png",)).items()})
    split = _official_split(ctx.root)
    rows = []
    for i, (name, labels, pid, view) in enumerate(
        zip(df["Image Index"], df["Finding Labels"], df["Patient ID"], df["View Position"])
    ):
        findings = {f.strip() for f in labels.split("|") if f.strip()}
        unknown = findings - KNOWN
        if not findings or unknown:
            ctx.rejects.bad(
                table, i, f"Finding Labels {labels!r}: unknown label(s) {sorted(unknown) or '(empty)'}"
            )
            continue
        path = found.get(name)
        if path is None:
            ctx.rejects.bad(
                table, i, f"image {name} not found under {', '.join(os.fspath(d) for d in image_dirs)}"
            )
            continue
        rows.append(
            {
                "path": str(path),
                "source": "nih",
                "patient_id": pid.strip(),
                "study_id": Path(name).stem,
                "view": norm_view(view),
                "split": split.get(name, ""),
                "class": labels,
                **labels_for(findings),
            }
        )
    if not rows:
        raise UserError(f"no NIH images found under {ctx.root}")
    return pd.DataFrame(rows)
