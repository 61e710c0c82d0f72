"""Dataset adapters: each takes a public dataset exactly as distributed and returns manifest rows.

`ADAPTERS` maps the name used by ``medflip data import NAME`` to its function, `DESCRIPTIONS` to a one-line
description (for ``--help``). Every function takes an `ImportContext` (root folder, rejects collector, CLI options) and returns a DataFrame
that `medflip.data.manifest.conform` turns into a manifest. Modules are imported lazily so the CLI's
``--help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# name -> (module:function, description shown in --help)
_REGISTRY: dict[str, tuple[str, str]] = {
    "mimic-cxr": (
        "mimic:run",
        "MIMIC-CXR-JPG 2.0.0 + reports (files/pNN/pX/sY/*.jpg, -metadata/-split/-chexpert.csv)",
    ),
    "chexpert": ("chexpert:run", "CheXpert v1.0 / v1.0-small (train.csv, valid.csv)"),
    "chexpert-5x200": (
        "chexpert:run_5x200",
        "CheXpert-5x200: 200 frontal images per competition task, one positive",
    ),
    "rsna-pneumonia": ("rsna:run", "RSNA Pneumonia (stage_2_train_labels.csv + DICOMs), balanced by default"),
    "covid": (
        "covid:run",
        "COVID-19 Radiography Database (COVID/, Normal/, Lung_Opacity/, Viral Pneumonia/)",
    ),
    "kermany": ("kermany:run", "Kermany paediatric pneumonia (train|test|val/NORMAL|PNEUMONIA)"),
    "iu-xray": ("iu:run", "Indiana University / OpenI (report XMLs + PNGs), labels from the report labeler"),
    "nih-cxr14": ("nih:run", "NIH ChestX-ray14 (Data_Entry_2017*.csv + images*/)"),
    "folder": ("generic:run_folder", "generic: a folder per class (ROOT/<class>/*.png|jpg|dcm)"),
    "csv": ("generic:run_csv", "generic: any CSV with named columns (--csv, --path-col, --report-col, ...)"),
}
DESCRIPTIONS: dict[str, str] = {name: desc for name, (_target, desc) in _REGISTRY.items()}


def get_adapter(name: str) -> Callable[..., Any]:
    """The adapter function for `name`: (ImportContext) -> DataFrame. KeyError for unknown names."""
    module, func = _REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(f"medflip.data.adapters.{module}"), func)


def __getattr__(name: str) -> Any:
    # ADAPTERS (name -> function) is built on first use so `medflip --help` does not import pandas.
    if name == "ADAPTERS":
        return {n: get_adapter(n) for n in _REGISTRY}
    raise AttributeError(name)


__all__ = ["ADAPTERS", "DESCRIPTIONS", "get_adapter"]
