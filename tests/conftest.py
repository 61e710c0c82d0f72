"""Shared test fixtures.

`cxr` writes real image files (JPEG, 8/16-bit PNG, DICOM through pydicom) so the data-engine tests read
exactly what a dataset on disk contains; `stub_labeler` replaces the report labeler with a tiny keyword
rule so adapter tests check the plumbing, not the labeler's rules.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_jpeg(path: Path, h: int = 48, w: int = 64, seed: int = 0, rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    a = (np.linspace(0, 255, w)[None, :] * 0.7 + rng.random((h, w)) * 70).astype(np.uint8)
    im = Image.fromarray(np.stack([a] * 3, -1) if rgb else a)
    im.save(path, quality=95)
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    view: str | None = None,
) -> Path:
    """A minimal valid DICOM (explicit VR little endian, uncompressed) with the given pixel data."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = path.stem
    px = np.ascontiguousarray(pixels.astype(np.uint16))
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if view is not None:
        ds.ViewPosition = view
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def cxr() -> types.SimpleNamespace:
    return types.SimpleNamespace(jpeg=write_jpeg, png=write_png, dicom=write_dicom)


def _stub_label_report(text: str):
    from medflip.observations import OBSERVATIONS

    values: dict[str, int | None] = dict.fromkeys(OBSERVATIONS)
    t = text.lower()
    if "cardiomegaly" in t:
        values["Cardiomegaly"] = 0 if "no cardiomegaly" in t else 1
    if "effusion" in t:
        values["Pleural Effusion"] = 0 if "no pleural effusion" in t or "no effusion" in t else 1
    if "normal" in t or not any(v == 1 for v in values.values()):
        values["No Finding"] = 1
    return types.SimpleNamespace(values=values)


@pytest.fixture
def stub_labeler(monkeypatch: pytest.MonkeyPatch):
    import medflip.labeler

    monkeypatch.setattr(medflip.labeler, "label_report", _stub_label_report, raising=False)
    return _stub_label_report


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster, and immune to other jobs on a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
