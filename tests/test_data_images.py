"""Image reading: DICOM (rescale, window, MONOCHROME1), 16-bit PNG, JPEG, bad files, the resize policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medflip.data.images import ImageReadError, fit_square, load_grayscale, load_square
from medflip.errors import UserError

RAW = np.array([[0, 100], [200, 300]], dtype=np.uint16)


def test_dicom_rescale_slope_intercept_min_max(tmp_path, cxr):
    # modality values: 2 * raw - 100 = [-100, 100, 300, 500]; no window -> (x + 100) / 600 * 255
    p = cxr.dicom(tmp_path / "a.dcm", RAW, slope=2, intercept=-100)
    assert load_grayscale(p).tolist() == [[0, 85], [170, 255]]


def test_dicom_monochrome1_is_inverted(tmp_path, cxr):
    p = cxr.dicom(tmp_path / "a.dcm", RAW, photometric="MONOCHROME1", slope=2, intercept=-100)
    assert load_grayscale(p).tolist() == [[255, 170], [85, 0]]


def test_dicom_window_center_width_linear_formula(tmp_path, cxr):
    # DICOM linear VOI: y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped, * 255; c = 200, w = 401
    # x = -100 -> 0; 100 -> 0.25125 * 255 = 64.07 -> 64; 300 -> 0.75125 * 255 = 191.57 -> 192; 500 -> 255
    p = cxr.dicom(tmp_path / "a.dcm", RAW, slope=2, intercept=-100, window=(200, 401))
    assert load_grayscale(p).tolist() == [[0, 64], [192, 255]]
    p1 = cxr.dicom(
        tmp_path / "b.dcm", RAW, photometric="MONOCHROME1", slope=2, intercept=-100, window=(200, 401)
    )
    assert load_grayscale(p1).tolist() == [[255, 191], [63, 0]]


def test_dicom_without_suffix_is_detected(tmp_path, cxr):
    p = cxr.dicom(tmp_path / "a.dcm", RAW)
    q = tmp_path / "noext"
    q.write_bytes(p.read_bytes())
    assert load_grayscale(q).tolist() == [[0, 85], [170, 255]]


def test_png_16bit_is_stretched_from_its_own_range(tmp_path, cxr):
    # 12-bit data in a 16-bit PNG: min 0, max 4095 -> 1000 * 255 / 4095 = 62.27 -> 62, 2000 -> 124.5 -> 125
    p = cxr.png(tmp_path / "a.png", np.array([[0, 1000], [4095, 2000]], dtype=np.uint16))
    assert Image.open(p).mode.startswith("I")
    assert load_grayscale(p).tolist() == [[0, 62], [255, 125]]


def test_png_8bit_exact_and_rgb_jpeg_to_gray(tmp_path, cxr):
    a = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    assert np.array_equal(load_grayscale(cxr.png(tmp_path / "a.png", a)), a)
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red -> ITU-R 601 luma 0.299 * 255 = 76
    assert load_grayscale(cxr.png(tmp_path / "r.png", rgb)).tolist() == [[76] * 4] * 4
    j = load_grayscale(cxr.jpeg(tmp_path / "c.jpg", rgb=True))
    assert j.dtype == np.uint8 and j.shape == (48, 64)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing", "bad_dicom"])
def test_bad_files_raise_naming_file_and_reason(tmp_path, cxr, kind):
    p = tmp_path / "x.jpg"
    if kind == "truncated":
        data = cxr.jpeg(tmp_path / "full.jpg", 256, 256).read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        p.write_bytes(b"not an image at all")
    elif kind == "bad_dicom":
        p = tmp_path / "x.dcm"
        p.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    with pytest.raises(ImageReadError) as e:
        load_grayscale(p)
    assert str(p) in str(e.value) and e.value.reason
    assert isinstance(e.value, UserError)
    if kind == "missing":
        assert "not found" in e.value.reason


def test_fit_square_keeps_aspect_and_pads_black():
    im = Image.fromarray(np.full((50, 100), 200, dtype=np.uint8))  # landscape 100 x 50
    out = fit_square(im, 20)
    assert out.shape == (20, 20)
    assert (out[5:15] == 200).all() and (out[:5] == 0).all() and (out[15:] == 0).all()
    tall = fit_square(Image.fromarray(np.full((100, 50), 9, dtype=np.uint8)), 20)
    assert (tall[:, 5:15] == 9).all() and (tall[:, :5] == 0).all()


def test_load_square_uses_jpeg_draft_but_keeps_size(tmp_path, cxr):
    p = cxr.jpeg(tmp_path / "big.jpg", h=768, w=1024)
    out = load_square(p, 224)
    assert out.shape == (224, 224) and out.dtype == np.uint8
    # landscape 1024 x 768 -> 224 x 168, padded rows 28 above and below
    assert (out[:28] == 0).all() and out[28:196].mean() > 20


def test_dicom_voi_lut_sequence_and_multivalued_window(tmp_path, cxr):
    import pydicom
    from pydicom.dataset import Dataset

    p = cxr.dicom(tmp_path / "lut.dcm", np.array([[0, 1], [2, 3]]))
    ds = pydicom.dcmread(p)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]  # 4 entries, first input value 0, 16-bit output
    item.add_new(0x00283006, "US", [0, 40, 120, 200])  # LUTData
    ds.VOILUTSequence = [item]
    ds.save_as(p)
    # LUT output [0, 40, 120, 200], stretched to 0..255: 40 * 255 / 200 = 51, 120 * 255 / 200 = 153
    assert load_grayscale(p).tolist() == [[0, 51], [153, 255]]
    q = cxr.dicom(tmp_path / "w.dcm", RAW, slope=2, intercept=-100)
    ds = pydicom.dcmread(q)
    ds.WindowCenter, ds.WindowWidth = [200, 0], [401, 1000]  # the first pair is the default presentation
    ds.save_as(q)
    assert load_grayscale(q).tolist() == [[0, 64], [192, 255]]


def test_jpeg_compressed_dicom_decodes(tmp_path):
    """RSNA-style DICOMs carry JPEG-baseline pixel data; pydicom decodes them through Pillow."""
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    a = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=95)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        SecondaryCaptureImageStorage,
        generate_uid(),
    )
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 48, 64, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "c.dcm", enforce_file_format=True)
    out = load_grayscale(tmp_path / "c.dcm")
    assert out.shape == (48, 64) and np.abs(out.astype(int) - a).max() <= 3
