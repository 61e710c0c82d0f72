"""COVID-19 Radiography Database (Kaggle, Chowdhury et al. / Rahman et al.).

Layout: ``ROOT/{COVID,Normal,Lung_Opacity,Viral Pneumonia}/images/*.png`` (v4+; older releases have the
PNGs directly in the class folder; ``masks/`` folders are ignored). ROOT may also be the folder above
``COVID-19_Radiography_Dataset``. ``--classes COVID,Normal`` restricts to the MedCLIP task (COVID vs Normal).

``class``: the folder name, except the ``COVID`` folder, whose class is ``COVID-19``: the one name used
everywhere (the zero-shot prompts, ``--task binary --positive COVID-19``); ``--classes`` accepts either.

Labels: COVID -> Pneumonia = 1, No Finding = 0 (the positives are largely COVID-19 pneumonia films; an approximation,
documented); Normal -> No Finding = 1, the rest 0; Lung_Opacity -> Lung Opacity = 1, No Finding = 0;
Viral Pneumonia -> Pneumonia = 1, No Finding = 0. Everything else blank.

The database has no patient ids: each image is its own patient (``patient_id`` = class/stem). Some
sources inside it contain several films per patient, so splits of this dataset are image-level at best.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medflip.data.adapters._common import ImportContext, blank_labels, list_images, normal_labels
from medflip.errors import UserError

CLASSES = ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia")  # the dataset's folders
CLASS_NAME = {"COVID": "COVID-19"}  # folder -> manifest `class` (others keep the folder name)


def labels_for(cls: str) -> dict[str, int | None]:
    if cls == "Normal":
        return normal_labels()
    extra = {
        "COVID": {"Pneumonia": 1},
        "Lung_Opacity": {"Lung Opacity": 1},
        "Viral Pneumonia": {"Pneumonia": 1},
    }
    return {**blank_labels(), "No Finding": 0, **extra[cls]}


def _dataset_root(root: Path) -> Path:
    if any((root / c).is_dir() for c in CLASSES):
        return root
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if any((sub / c).is_dir() for c in CLASSES):
            return sub
    raise UserError(f"no COVID-19 Radiography Database under {root}: expected folders {', '.join(CLASSES)}")


def run(ctx: ImportContext) -> pd.DataFrame:
    root = _dataset_root(ctx.root)
    folder_of = {c.lower(): c for c in CLASSES} | {n.lower(): f for f, n in CLASS_NAME.items()}
    asked = [c.strip() for c in str(ctx.opt("classes", ",".join(CLASSES))).split(",") if c.strip()]
    unknown = [c for c in asked if c.lower() not in folder_of]
    if unknown:
        raise UserError(
            f"unknown COVID class(es) {unknown}; the database has {list(CLASSES)} (COVID is class COVID-19)"
        )
    wanted = list(dict.fromkeys(folder_of[c.lower()] for c in asked))
    rows = []
    for cls in wanted:
        folder = root / cls
        if not folder.is_dir():
            raise UserError(f"class folder missing: {folder}")
        images_dir = folder / "images" if (folder / "images").is_dir() else folder
        for path in list_images(images_dir):
            if "masks" in path.relative_to(folder).parts:
                continue
            rows.append(
                {
                    "path": str(path),
                    "source": "covid",
                    "patient_id": f"{cls}/{path.stem}",
                    "study_id": path.stem,
                    "view": "",
                    "split": "",
                    "class": CLASS_NAME.get(cls, cls),
                    **labels_for(cls),
                }
            )
    if not rows:
        raise UserError(f"no images found under {root} for classes {wanted}")
    return pd.DataFrame(rows)
