"""Image reading: JPEG, PNG (8/16-bit) and DICOM, always to 8-bit grayscale.

Why these rules:

- DICOM: pixel data -> modality LUT (RescaleSlope/Intercept, or a Modality LUT Sequence) -> VOI LUT
  sequence, else the first WindowCenter/WindowWidth (DICOM PS3.3 C.11.2.1.2 linear formula), else the
  image's own min..max -> 0..255; MONOCHROME1 ("white = low values", common in CR) is inverted last, so
  bone is always bright whatever the modality vendor chose.
- 16-bit PNG: many exports store 10-14-bit data in a 16-bit container, so dividing by 257 would give an
  almost black image; the image's own min..max is stretched to 0..255 instead.
- Everything is converted to one channel (ITU-R 601 luma for RGB): chest films are grayscale and an RGB copy
  would triple the cache for nothing.

Every failure becomes an `ImageReadError` naming the file and the reason (truncated, corrupt, unsupported
DICOM transfer syntax, missing, too large), which the cache builder either raises or writes to its rejects
file.

Memory bound: an image is refused from its header, before any pixel is decoded, when it has more than
MAX_PIXELS pixels (a decompression bomb: a 40,000 x 40,000 PNG header over a few KB of zeros would
otherwise ask for 1.6 GB). Decoding an allowed image peaks at about 13 bytes per pixel (16-bit source +
float64 stretch): ~650 MB per decoding worker at the limit; chest films (<= 4,300 x 3,500 px, 15 M) stay
below 200 MB.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from medflip.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
MAX_PIXELS = 50_000_000  # ~7,000 x 7,000: above any radiograph; see the module docstring


class ImageReadError(UserError):
    """An image could not be read; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """By suffix, else by the 'DICM' magic at byte 128 (DICOM files often have no suffix)."""
    p = str(path)
    if p.lower().endswith(DICOM_SUFFIXES):
        return True
    if p.lower().endswith((".jpg", ".jpeg", ".png")):
        return False
    return has_dicom_magic(p)


def has_dicom_magic(path: str) -> bool:
    """The 'DICM' marker after the 128-byte preamble (files without a suffix, or with a wrong one)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _too_large(path: str, what: str, pixels: int) -> ImageReadError:
    return ImageReadError(
        path,
        f"image too large: {what} = {pixels:,} pixels, over the limit of {MAX_PIXELS:,} "
        "(a decompression bomb, or not a radiograph)",
    )


def _stretch(x: np.ndarray) -> np.ndarray:
    """Linear min..max -> 0..255 uint8 (a constant image becomes 0)."""
    x = x.astype(np.float64, copy=False)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.rint((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _first(value: object) -> float:
    """WindowCenter/Width may be multi-valued; the first pair is the default presentation."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = list(value)[0]  # type: ignore[arg-type]
    return float(value)  # type: ignore[arg-type]


def dicom_to_uint8(ds: object) -> np.ndarray:
    """A pydicom Dataset -> uint8 [H, W] (see the module docstring for the order of operations)."""
    # pydicom (~0.2 s to import) is imported on the first DICOM: PNG / JPEG datasets never pay for it
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    arr = ds.pixel_array  # type: ignore[attr-defined]
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if samples == 3:  # RGB secondary capture: luma
        rgb = arr[0] if arr.ndim == 4 else arr
        return np.asarray(Image.fromarray(rgb.astype(np.uint8)).convert("L"))
    if arr.ndim == 3:  # multi-frame: the first frame
        arr = arr[0]
    m = apply_modality_lut(arr, ds)
    x = m.astype(np.float64)
    if "VOILUTSequence" in ds:  # type: ignore[operator]
        # a LUT is indexed by stored integers: give it integers (pydicom warns, rightly, on float input)
        ints = m if np.issubdtype(m.dtype, np.integer) else np.rint(m).astype(np.int64)
        out = _stretch(apply_voi_lut(ints, ds))
    elif getattr(ds, "WindowCenter", None) is not None and getattr(ds, "WindowWidth", None) is not None:
        c, w = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)  # type: ignore[attr-defined]
        y = ((x - (c - 0.5)) / (w - 1.0) + 0.5) if w > 1 else (x >= c).astype(np.float64)
        out = np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        out = _stretch(x)
    if str(getattr(ds, "PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        out = 255 - out
    return out


def _read_dicom(path: str) -> np.ndarray:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError

        with warnings.catch_warnings():  # vendor quirks warn per file; real failures raise below
            warnings.simplefilter("ignore")
            try:  # large elements (the pixel data) are read only when used: check the size first
                ds = pydicom.dcmread(path, defer_size="1 MB")
            except InvalidDicomError:
                ds = pydicom.dcmread(path, force=True, defer_size="1 MB")
            if "PixelData" not in ds and "FloatPixelData" not in ds:
                raise ImageReadError(path, "DICOM file has no pixel data")
            rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
            if rows * cols * frames * samples > MAX_PIXELS:
                raise _too_large(path, f"{cols} x {rows} x {frames} frame(s)", rows * cols * frames * samples)
            try:
                return dicom_to_uint8(ds)
            except (RuntimeError, NotImplementedError, ValueError) as e:
                ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
                if ts is not None and getattr(ts, "is_compressed", False):
                    raise ImageReadError(
                        path,
                        f"compressed DICOM ({ts.name}) that no installed decoder reads: install one "
                        "(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or python-gdcm) "
                        f"or convert the file ({type(e).__name__}: {str(e)[:200]})",
                    ) from e
                raise
    except ImageReadError:
        raise
    except FileNotFoundError as e:
        raise ImageReadError(path, "file not found") from e
    except Exception as e:  # pydicom raises many types (decoder missing, truncated pixel data, ...)
        raise ImageReadError(path, f"unreadable DICOM ({type(e).__name__}: {e})") from e


def _pil_to_uint8(im: Image.Image) -> Image.Image:
    """Any PIL mode -> mode "L"; 16/32-bit modes by min..max stretch (see module docstring)."""
    if im.mode == "L":
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return Image.fromarray(_stretch(np.asarray(im)))
    return im.convert("L")  # RGB(A), P, LA, 1, CMYK: PIL's luma conversion


def open_grayscale(path: str | os.PathLike[str], draft_size: int | None = None) -> Image.Image:
    """Open any supported image as a decoded PIL "L" image.

    `draft_size`: allow the JPEG decoder to decode at 1/2, 1/4 or 1/8 scale as long as both sides stay
    >= draft_size (DCT-domain downscaling). That is what makes cache building from 1024+ px JPEGs fast.
    """
    p = str(path)
    if not os.path.exists(p):
        raise ImageReadError(p, "file not found")
    if is_dicom(p):
        return Image.fromarray(_read_dicom(p))
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the explicit limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError as e:
        raise ImageReadError(p, f"image too large ({e})") from e
    except Exception as e:  # not an image PIL knows: maybe a DICOM with another suffix
        if has_dicom_magic(p):
            return Image.fromarray(_read_dicom(p))
        raise ImageReadError(p, f"corrupt or truncated image ({type(e).__name__}: {e})") from e
    w, h = im.size
    if w * h > MAX_PIXELS:  # from the header: nothing decoded yet
        im.close()
        raise _too_large(p, f"{w} x {h}", w * h)
    try:
        with im:
            if draft_size and im.format == "JPEG":
                im.draft("L", (draft_size, draft_size))
            im.load()
            return _pil_to_uint8(im)
    except ImageReadError:
        raise
    except Exception as e:  # PIL: OSError("image file is truncated"), SyntaxError, zlib errors...
        raise ImageReadError(p, f"corrupt or truncated image ({type(e).__name__}: {e})") from e


def load_grayscale(path: str | os.PathLike[str]) -> np.ndarray:
    """Read JPEG / PNG (8 or 16-bit) / DICOM -> uint8 [H, W]; raises ImageReadError naming the file."""
    return np.array(open_grayscale(path), dtype=np.uint8)


def fit_square(im: Image.Image, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio (longer side -> size), then pad to size x size with black.

    Pad, not center-crop: a crop of a portrait CXR cuts the costophrenic angles (where effusions show) or
    the apices (pneumothorax); a crop of a landscape one cuts the lateral chest wall. Padding keeps all the
    anatomy; the training augmentation's random resized crop then zooms in anyway.
    """
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = np.asarray(im, dtype=np.uint8)
    return out


def load_square(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """The cache's reader: any image -> uint8 [size, size] (aspect kept, black padding)."""
    try:
        return fit_square(open_grayscale(path, draft_size=size), size)
    except ImageReadError:
        raise
    except Exception as e:  # resize of a degenerate image, memory errors, ...
        raise ImageReadError(Path(path), f"{type(e).__name__}: {e}") from e
