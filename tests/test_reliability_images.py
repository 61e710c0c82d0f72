"""Hostile image files: fuzzed bytes, truncations, decompression bombs, DICOMs without pixels or decoder.

Every one is an ImageReadError with a reason (the cache builder's counted skip), never another exception,
and a bomb is refused from its header with bounded memory (images.MAX_PIXELS).
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from medflip.data.cache import build_cache
from medflip.data.images import MAX_PIXELS, ImageReadError, load_square
from medflip.data.manifest import write_manifest


def _png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header claiming width x height 8-bit gray pixels, with one small IDAT (a few KB file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 4)  # 4 rows of zeros; the rest "to come"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _dicom(path: Path, rows: int, cols: int, pixels: bytes | None, syntax: str | None = None) -> Path:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if pixels is not None:
        if syntax:
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([pixels])
        else:
            ds.PixelData = pixels
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


GOOD = np.tile(np.arange(24, dtype=np.uint8)[None] * 10, (20, 1))
PREFIXES = {
    "none": b"",
    "png": _png_bytes(GOOD),
    "jpeg": _jpeg_bytes(GOOD),
    "dicom": b"\0" * 128 + b"DICM",
}


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(sorted(PREFIXES)),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    tail=st.binary(max_size=300),
    suffix=st.sampled_from([".png", ".jpg", ".dcm", ""]),
)
def test_fuzzed_image_bytes_read_or_refuse_with_a_reason(tmp_path, kind, cut, flips, tail, suffix):
    """Valid files truncated anywhere, bytes flipped, random tails, wrong suffixes."""
    data = bytearray(PREFIXES[kind])
    data = data[: int(len(data) * cut)] if kind != "dicom" else data
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    data += tail
    p = tmp_path / f"x{suffix}"
    p.write_bytes(bytes(data))
    try:
        out = load_square(p, 32)
    except ImageReadError as e:
        assert e.reason and str(p) in str(e)
        return
    assert out.dtype == np.uint8 and out.shape == (32, 32)


def test_png_decompression_bomb_is_refused_from_the_header_with_bounded_memory(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bomb())
    assert p.stat().st_size < 10_000
    with pytest.raises(ImageReadError, match="too large"):
        load_square(p, 32)
    # Peak memory of a fresh process that reads the bomb: the interpreter + numpy + PIL, no pixel buffer.
    code = (
        "import resource, sys\n"
        "from medflip.data.images import load_square, ImageReadError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_square(sys.argv[1], 224)\nexcept ImageReadError as e:\n    print(e.reason)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    r = subprocess.run(
        [sys.executable, "-c", code, str(p)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    reason, grown_mb = r.stdout.strip().splitlines()
    assert "too large" in reason and int(grown_mb) < 50, r.stdout + r.stderr


def test_bomb_just_over_the_limit_and_a_large_film_under_it(tmp_path):
    side = int(MAX_PIXELS**0.5) + 1
    p = tmp_path / "big.png"
    p.write_bytes(png_bomb(side, side))
    with pytest.raises(ImageReadError, match=f"{side} x {side}"):
        load_square(p, 32)


def test_dicom_bomb_no_pixels_and_no_decoder(tmp_path):
    with pytest.raises(ImageReadError, match="too large: 40000 x 40000"):
        load_square(_dicom(tmp_path / "bomb.dcm", 40_000, 40_000, b"\0" * 1024), 32)
    with pytest.raises(ImageReadError, match="no pixel data"):
        load_square(_dicom(tmp_path / "empty.dcm", 16, 16, None), 32)
    jpeg_ls = "1.2.840.10008.1.2.4.80"  # JPEG-LS lossless: no decoder in a default install
    try:
        import pylibjpeg  # noqa: F401

        pytest.skip("a JPEG-LS decoder is installed here")
    except ImportError:
        pass
    with pytest.raises(ImageReadError, match="compressed DICOM \\(JPEG-LS Lossless.*no installed decoder"):
        load_square(_dicom(tmp_path / "jls.dcm", 16, 16, b"\xff\xd8" + b"\0" * 64, syntax=jpeg_ls), 32)


def test_bad_images_are_counted_skips_in_the_cache(tmp_path):
    files = {
        "good.png": _png_bytes(GOOD),
        "random.png": np.random.default_rng(0).bytes(500),
        "truncated.jpg": _jpeg_bytes(GOOD)[:200],
        "bomb.png": png_bomb(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _dicom(tmp_path / "empty.dcm", 16, 16, None)
    names = [*files, "empty.dcm"]
    write_manifest(
        pd.DataFrame({"path": [str(tmp_path / n) for n in names], "split": "train"}), tmp_path / "m.csv"
    )
    res = build_cache(tmp_path / "m.csv", tmp_path / "c", size=32, workers=0, skip_bad=True, progress=False)
    assert res.counts == {"train": 1} and res.rejected == 4
    reasons = pd.read_csv(res.rejects_path)["reason"].tolist()
    assert any("too large" in r for r in reasons) and any("no pixel data" in r for r in reasons)
    assert sum("corrupt or truncated" in r for r in reasons) == 2
