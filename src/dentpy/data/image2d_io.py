"""Readers and the PNG writer behind `dentpy.data.image2d` (see that module's docstring).

Rasters (PNG, JPEG, TIFF, BMP) are read with Pillow, DICOM with pydicom. Both check the
header's pixel count against `image2d.MAX_PIXELS` before a pixel is decoded (A12), read the
whole file at read time so truncated or corrupt files fail here with a clear message, and
keep the stored bit depth. Error messages name the bare file name and, for DICOM, only
geometry and format facts: never a patient identifier or another tag value.

Conventions chosen here:

* EXIF orientation (0x0112) is applied to images and masks alike, each by its own tag, and
  the applied value is recorded in `Image2D.exif_orientation` (1 = none or invalid tag).
* DICOM MONOCHROME1 (bright = air) is inverted to look like MONOCHROME2 (bright = dense)
  over the stored value range: `value -> lo + hi - value`, with lo..hi the range that
  BitsStored / PixelRepresentation allow (0..4095 for unsigned 12-bit). The mapping is the
  same for every file of a format, so gray values stay comparable between images.
* DICOM RescaleSlope / RescaleIntercept are applied when present and not the identity; the
  result is float32 then, otherwise the stored integer dtype is kept.
* A 1-bit raster image reads as uint8 0/255, a 1-bit mask as uint8 0/1.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dentpy.data import image2d as api
from dentpy.data.image2d import (
    DICOM_SUFFIXES,
    RASTER_SUFFIXES,
    Image2D,
    not_an_image,
)
from dentpy.errors import InputDataError, OutputError

# Formats Pillow may use: nothing else (EPS would start Ghostscript, for example).
_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB")
_LOSSY_FORMATS = ("JPEG", "MPO")
_EXIF_ORIENTATION = 0x0112
_MASK_FIX = "export the mask as a single-channel or palette PNG of integer class ids"


def read_any(path: Path, mask: bool) -> Image2D:
    """Read `path` as an image (`mask=False`) or a label mask (`mask=True`)."""
    suffix = path.suffix.lower()
    if suffix not in RASTER_SUFFIXES and suffix not in DICOM_SUFFIXES:
        raise not_an_image(path)
    if not path.is_file():
        raise InputDataError(
            f"{path.name}: file not found",
            expected="an existing image file",
            found="nothing at this path" if not path.exists() else "a folder",
            fix="check the path, or the dataset layout (see `dentpy data check`)",
        )
    image = _read_dicom(path, mask) if suffix in DICOM_SUFFIXES else _read_raster(path, mask)
    if mask:
        image = Image2D(
            array=_checked_mask(path, image.array),
            pixel_spacing_mm=image.pixel_spacing_mm,
            exif_orientation=image.exif_orientation,
        )
    return image


# --------------------------------------------------------------------------- helpers


def _corrupt(
    path: Path, exc: BaseException | None, kind: str, detail: str | None = None
) -> InputDataError:
    name = type(exc).__name__ if exc is not None else "error"
    found = detail if detail is not None else name
    return InputDataError(
        f"{path.name}: {kind} file cannot be read completely ({name})",
        expected=f"a complete, uncorrupted {kind} file",
        found=found,
        fix="re-copy or re-export the file; it may be truncated or damaged",
    )


def _too_large(path: Path, width: int, height: int) -> InputDataError:
    return InputDataError(
        f"{path.name}: header claims an implausibly large image",
        expected=f"at most {api.MAX_PIXELS:,} pixels",
        found=f"{width} x {height} pixels (width x height)",
        fix="the header is damaged or the file is a decompression bomb; re-export the image",
    )


def _first_line(exc: BaseException, path: Path | None = None) -> str:
    """The exception's first line, with any folder of `path` cut to the bare file name."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return str(exc.strerror)
    text = str(exc).strip()
    if path is not None:
        text = text.replace(str(path.absolute()), path.name).replace(str(path), path.name)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _bomb_found(exc: BaseException) -> str:
    """Pillow's bomb check fires inside Image.open, before the size is ours to read."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(match.group(1)):,} pixels in the header" if match else _first_line(exc)


def _narrow_int(array: np.ndarray) -> np.ndarray:
    """Integer data -> uint16 when every value fits 0..65535, else int32 (or as is)."""
    if array.size == 0:
        return array.astype(np.uint16)
    low, high = int(array.min()), int(array.max())
    if low >= 0 and high <= 65535:
        return array.astype(np.uint16, copy=False)
    if low >= -(2**31) and high < 2**31:
        return array.astype(np.int32, copy=False)
    return array


def _native(array: np.ndarray) -> np.ndarray:
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array)


def _checked_mask(path: Path, array: np.ndarray) -> np.ndarray:
    """One channel of non-negative integer class ids, in the smallest fitting dtype."""
    if array.ndim == 3:
        if not (
            np.array_equal(array[..., 0], array[..., 1])
            and np.array_equal(array[..., 0], array[..., 2])
        ):
            differ = int(
                np.count_nonzero(
                    (array[..., 0] != array[..., 1]) | (array[..., 0] != array[..., 2])
                )
            )
            raise InputDataError(
                f"{path.name}: mask is a colour image",
                expected="one channel of class ids (0 = background)",
                found=f"3 colour channels that differ in {differ} pixels",
                fix=_MASK_FIX,
            )
        array = array[..., 0]
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputDataError(
            f"{path.name}: mask holds {array.dtype} values",
            expected="integer class ids (0 = background)",
            found=f"{array.dtype} pixels",
            fix=_MASK_FIX,
        )
    if array.size and int(array.min()) < 0:
        raise InputDataError(
            f"{path.name}: mask holds negative values",
            expected="class ids >= 0",
            found=f"minimum {int(array.min())}",
            fix="relabel the mask with non-negative integers",
        )
    top = int(array.max()) if array.size else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array.astype(dtype))


def _check_finite(path: Path, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise InputDataError(
            f"{path.name}: image contains {bad} NaN or infinite pixels",
            expected="finite gray values in every pixel",
            found=f"{bad} of {array.size} pixels are NaN/Inf",
            fix="repair or re-export the image; dentpy never fills pixels in silently",
        )


# --------------------------------------------------------------------------- rasters


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow settings for one read: no truncated loads, bomb warning raised as error."""
    from PIL import Image, ImageFile

    old_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    old_max = Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = int(api.MAX_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated
        Image.MAX_IMAGE_PIXELS = old_max


def _read_raster(path: Path, mask: bool) -> Image2D:
    from PIL import Image, ImageOps

    with _strict_pillow():
        try:
            with Image.open(path, formats=_PIL_FORMATS) as opened:
                fmt = str(opened.format)
                width, height = opened.size
                if width * height > api.MAX_PIXELS:
                    raise _too_large(path, width, height)
                if mask and fmt in _LOSSY_FORMATS:
                    raise InputDataError(
                        f"{path.name}: mask is a JPEG file",
                        expected="a lossless mask (PNG, TIFF or BMP)",
                        found="JPEG compression, which invents values between classes",
                        fix=_MASK_FIX + " from the annotation tool, not a JPEG",
                    )
                frames = int(getattr(opened, "n_frames", 1))
                if frames > 1 and fmt not in _LOSSY_FORMATS:
                    # MPO (phone JPEGs) keeps its primary picture in frame 0; a multi-page
                    # TIFF or animated PNG is not one 2D image.
                    raise InputDataError(
                        f"{path.name}: file holds {frames} images",
                        expected="a single 2D image",
                        found=f"{frames} pages/frames",
                        fix="split the file into one image per file",
                    )
                if fmt == "PNG":
                    opened.verify()  # checks every chunk's CRC, IDAT included
            with Image.open(path, formats=_PIL_FORMATS) as img:
                img.load()
                try:
                    orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1))
                except (TypeError, ValueError):
                    orientation = 1
                if orientation not in range(1, 9):
                    orientation = 1
                turned = ImageOps.exif_transpose(img) if orientation != 1 else img
                turned.load()
                array = _raster_array(path, turned, mask)
        except InputDataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputDataError(
                f"{path.name}: header claims an implausibly large image",
                expected=f"at most {api.MAX_PIXELS:,} pixels",
                found=_bomb_found(exc),
                fix="the header is damaged or the file is a decompression bomb; "
                "re-export the image",
            ) from None
        except Image.UnidentifiedImageError:
            raise InputDataError(
                f"{path.name}: not a readable image",
                expected=f"a {path.suffix.lstrip('.').upper()} image "
                "(PNG, JPEG, TIFF or BMP content)",
                found="content no image reader recognises (damaged, empty or another format)",
                fix="re-copy or re-export the image; convert it to PNG",
            ) from None
        except MemoryError:
            raise InputDataError(
                f"{path.name}: image does not fit in memory",
                expected=f"at most {api.MAX_PIXELS:,} pixels",
                found="an allocation failure while decoding",
                fix="re-export the image at a smaller size",
            ) from None
        except Exception as exc:
            raise _corrupt(path, exc, "image", _first_line(exc, path)) from None
    _check_finite(path, array)
    return Image2D(array=array, pixel_spacing_mm=None, exif_orientation=orientation)


def _drop_alpha(path: Path, array: np.ndarray, full: int) -> np.ndarray:
    alpha = array[..., -1]
    if not bool((alpha == full).all()):
        raise InputDataError(
            f"{path.name}: image has transparent pixels",
            expected="an opaque image (alpha channel fully opaque, or none)",
            found=f"{int(np.count_nonzero(alpha != full))} pixels that are not fully opaque",
            fix="flatten the image onto a background and export it without transparency",
        )
    return array[..., :-1]


def _raster_array(path: Path, img: Any, mask: bool) -> np.ndarray:
    mode = str(img.mode)
    if mode == "1":
        array = np.asarray(img).astype(np.uint8)
        return array if mask else array * np.uint8(255)
    if mode == "L":
        return np.array(img, dtype=np.uint8)
    if mode.startswith("I;16"):
        return _native(np.asarray(img)).astype(np.uint16, copy=False)
    if mode == "I":
        return _narrow_int(_native(np.asarray(img)))
    if mode == "F":
        if mask:
            raise InputDataError(
                f"{path.name}: mask holds floating-point values",
                expected="integer class ids (0 = background)",
                found="32-bit float pixels",
                fix=_MASK_FIX,
            )
        return _native(np.asarray(img)).astype(np.float32, copy=False)
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode in ("RGBA", "LA", "RGBa", "La"):
        if mode in ("RGBa", "La"):
            img = img.convert("RGBA" if mode == "RGBa" else "LA")
        array = _drop_alpha(path, np.asarray(img), 255)
        return np.ascontiguousarray(array[..., 0] if array.shape[-1] == 1 else array)
    if mode in ("P", "PA"):
        if mask:
            array = np.asarray(img)
            if mode == "PA":
                array = _drop_alpha(path, array, 255)[..., 0]
            return np.array(array, dtype=np.uint8)
        if mode == "PA" or "transparency" in img.info:
            return np.ascontiguousarray(_drop_alpha(path, np.asarray(img.convert("RGBA")), 255))
        indices = np.asarray(img)
        palette = np.array(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: min(len(palette), 256)] = palette[:256]
        used = lut[np.unique(indices)]
        rgb = lut[indices]
        if bool((used[:, 0] == used[:, 1]).all() and (used[:, 0] == used[:, 2]).all()):
            return np.ascontiguousarray(rgb[..., 0])
        return np.ascontiguousarray(rgb)
    if mask:
        raise InputDataError(
            f"{path.name}: mask is stored as {mode} colour",
            expected="one channel of class ids (0 = background)",
            found=f"Pillow image mode {mode}",
            fix=_MASK_FIX,
        )
    return np.array(img.convert("RGB"), dtype=np.uint8)


# --------------------------------------------------------------------------- DICOM


def _dicom_error(path: Path, what: str, expected: str, found: str, fix: str) -> InputDataError:
    return InputDataError(f"{path.name}: {what}", expected=expected, found=found, fix=fix)


def _int_tag(path: Path, ds: Any, keyword: str, default: int | None = None) -> int:
    try:
        raw = ds.get(keyword, None)
        if raw is None or raw == "":
            if default is None:
                raise _dicom_error(
                    path,
                    f"DICOM tag {keyword} is missing",
                    expected=f"{keyword} in a 2D DICOM image",
                    found="no such tag",
                    fix="re-export the image from the imaging software as a standard DICOM",
                )
            return default
        return int(raw)
    except InputDataError:
        raise
    except Exception:
        raise _dicom_error(
            path,
            f"DICOM tag {keyword} is not a whole number",
            expected=f"an integer {keyword}",
            found="a value that cannot be read as an integer",
            fix="re-export the image from the imaging software as a standard DICOM",
        ) from None


def _float_tag(path: Path, ds: Any, keyword: str, default: float) -> float:
    try:
        raw = ds.get(keyword, None)
        value = default if raw is None or raw == "" else float(raw)
    except Exception:
        value = math.nan
    if not math.isfinite(value):
        raise _dicom_error(
            path,
            f"DICOM tag {keyword} is invalid",
            expected=f"a finite number in {keyword}",
            found="a value that is not a finite number",
            fix="correct the tag or re-export the image",
        )
    return value


def _open_dicom(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    forced = False
    try:
        try:
            ds = pydicom.dcmread(path, force=False)
        except InvalidDicomError:
            forced = True
            ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        # pydicom's messages may quote element values: report the exception type only.
        raise _corrupt(path, exc, "DICOM", "a header that cannot be parsed") from None
    try:
        needed = ("PixelData", "Rows", "Columns")
        if forced and not all(keyword in ds for keyword in needed):
            raise _dicom_error(
                path,
                "not a DICOM image file",
                expected="a DICOM file (with the 'DICM' preamble) holding one image",
                found="no DICOM preamble, and no readable image elements",
                fix="check that this is a DICOM image; re-export it from the imaging software",
            )
        meta = getattr(ds, "file_meta", None)
        if meta is None or "TransferSyntaxUID" not in meta:
            implicit, little = getattr(ds, "original_encoding", (True, True))
            syntax = (
                ImplicitVRLittleEndian
                if implicit
                else ExplicitVRLittleEndian
                if little
                else ExplicitVRBigEndian
            )
            ds.ensure_file_meta()
            ds.file_meta.TransferSyntaxUID = syntax
    except InputDataError:
        raise
    except Exception as exc:
        raise _corrupt(path, exc, "DICOM", "a header that cannot be parsed") from None
    return ds


def _read_dicom(path: Path, mask: bool) -> Image2D:
    ds = _open_dicom(path)
    try:
        return _dicom_image(path, ds, mask)
    except InputDataError:
        raise
    except MemoryError:
        raise InputDataError(
            f"{path.name}: image does not fit in memory",
            expected=f"at most {api.MAX_PIXELS:,} pixels",
            found="an allocation failure while decoding",
            fix="re-export the image at a smaller size",
        ) from None
    except Exception as exc:
        # A damaged header element: pydicom's text may quote element values, so only the
        # exception type is reported.
        raise _corrupt(path, exc, "DICOM", "a damaged header element") from None


def _dicom_image(path: Path, ds: Any, mask: bool) -> Image2D:
    try:
        has_pixels = "PixelData" in ds
    except Exception:
        has_pixels = False
    if not has_pixels:
        raise _dicom_error(
            path,
            "DICOM file holds no image",
            expected="a DICOM image with PixelData",
            found="no PixelData element (a report, structure set or other non-image object)",
            fix="use the DICOM file that holds the image itself",
        )
    frames = _int_tag(path, ds, "NumberOfFrames", 1)
    if frames > 1:
        raise _dicom_error(
            path,
            "a 3D/multi-frame DICOM",
            expected="a single-frame 2D DICOM image",
            found=f"{frames} frames",
            fix="read it as a volume (dentpy's 3D readers), or export one frame as 2D",
        )
    rows = _int_tag(path, ds, "Rows")
    columns = _int_tag(path, ds, "Columns")
    if rows <= 0 or columns <= 0:
        raise _dicom_error(
            path,
            "DICOM image has no pixels",
            expected="Rows and Columns > 0",
            found=f"{rows} rows x {columns} columns",
            fix="re-export the image from the imaging software",
        )
    if rows * columns > api.MAX_PIXELS:
        raise _too_large(path, columns, rows)
    samples = _int_tag(path, ds, "SamplesPerPixel", 1)
    if samples not in (1, 3):
        raise _dicom_error(
            path,
            "DICOM image has an unsupported number of channels",
            expected="SamplesPerPixel 1 (grayscale) or 3 (colour)",
            found=f"SamplesPerPixel {samples}",
            fix="convert the image to grayscale or RGB",
        )
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    syntax = ds.file_meta.TransferSyntaxUID
    _check_decoder(path, syntax)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.asarray(ds.pixel_array)
            if photometric == "PALETTE COLOR" and not mask:
                from pydicom.pixels import apply_color_lut

                array = np.asarray(apply_color_lut(array, ds))
                if array.dtype == np.uint16:
                    # 16-bit palette entries, for display: keep the top 8 bits, as viewers
                    # (and SimpleITK) do.
                    array = (array >> 8).astype(np.uint8)
    except MemoryError:
        raise _too_large(path, columns, rows) from None
    except Exception as exc:
        raise _corrupt(path, exc, "DICOM", _first_line(exc, path)) from None
    expected_shape = (rows, columns) if samples == 1 else (rows, columns, 3)
    if array.shape != expected_shape and not (
        photometric == "PALETTE COLOR" and array.shape == (rows, columns, 3)
    ):
        raise _dicom_error(
            path,
            "DICOM pixel data does not match its header",
            expected=f"an array of shape {expected_shape}",
            found=f"shape {tuple(array.shape)}",
            fix="re-export the image from the imaging software",
        )
    array = _native(array)
    if photometric == "MONOCHROME1" and not mask:
        array = _invert_monochrome1(ds, array)  # a mask's stored values are its class ids
    slope = _float_tag(path, ds, "RescaleSlope", 1.0)
    intercept = _float_tag(path, ds, "RescaleIntercept", 0.0)
    if slope == 0.0:
        raise _dicom_error(
            path,
            "DICOM tag RescaleSlope is zero",
            expected="a non-zero RescaleSlope (1 when the stored values are the gray values)",
            found="RescaleSlope 0, which would turn every pixel into the same value",
            fix="correct the tag or re-export the image",
        )
    if slope != 1.0 or intercept != 0.0:
        array = (array.astype(np.float64) * slope + intercept).astype(np.float32)
        if mask:
            array = _integral_mask(path, array)
    _check_finite(path, array)
    return Image2D(array=array, pixel_spacing_mm=_dicom_spacing(path, ds), exif_orientation=1)


def _check_decoder(path: Path, syntax: Any) -> None:
    from pydicom.pixels import get_decoder

    if not getattr(syntax, "is_compressed", False):
        return
    name = str(getattr(syntax, "name", syntax))
    try:
        available = bool(get_decoder(syntax).is_available)
    except Exception:
        available = False
    if not available:
        raise _dicom_error(
            path,
            "DICOM pixel data is compressed in a format no installed decoder reads",
            expected="uncompressed pixel data, or a compression with a decoder installed",
            found=f"transfer syntax {name} ({syntax!s})",
            fix="decompress the file (`gdcmconv --raw IN OUT` or `dcmdjpeg IN OUT`), or "
            "install a decoder plugin (pylibjpeg with its plugins, or python-gdcm)",
        )


def _invert_monochrome1(ds: Any, array: np.ndarray) -> np.ndarray:
    """value -> lo + hi - value over the stored range (see the module docstring)."""
    if not np.issubdtype(array.dtype, np.integer):
        low_f, high_f = float(array.min()), float(array.max())
        return (low_f + high_f - array).astype(array.dtype)
    try:
        bits = int(ds.get("BitsStored", 0) or 0)
    except Exception:
        bits = 0
    if not 1 <= bits <= 32:
        bits = array.dtype.itemsize * 8
    signed = np.issubdtype(array.dtype, np.signedinteger)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if array.size:
        low, high = min(low, int(array.min())), max(high, int(array.max()))
    inverted = np.int64(low + high) - array.astype(np.int64)
    info = np.iinfo(array.dtype)
    if int(inverted.min(initial=0)) >= info.min and int(inverted.max(initial=0)) <= info.max:
        return inverted.astype(array.dtype)
    return inverted.astype(np.int32) if high < 2**31 else inverted


def _integral_mask(path: Path, array: np.ndarray) -> np.ndarray:
    if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
        raise InputDataError(
            f"{path.name}: mask holds non-integer values after RescaleSlope/Intercept",
            expected="integer class ids (0 = background)",
            found="fractional values",
            fix=_MASK_FIX,
        )
    return array.astype(np.int64)


def _spacing_sources(ds: Any) -> Iterator[tuple[str, Any]]:
    """Where a 2D DICOM states its pixel size: the top level, then (enhanced objects) the
    shared and the first per-frame functional group's PixelMeasuresSequence."""
    yield "PixelSpacing", ds
    yield "ImagerPixelSpacing", ds
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            measures = ds[group].value[0]["PixelMeasuresSequence"].value[0]
        except Exception:
            continue
        yield "PixelSpacing", measures


def _dicom_spacing(path: Path, ds: Any) -> tuple[float, float] | None:
    for keyword, holder in _spacing_sources(ds):
        try:
            present = keyword in holder and holder[keyword].value not in (None, "", [])
        except Exception:
            present = True
        if not present:
            continue
        try:
            raw = holder[keyword].value
            values = [float(v) for v in raw] if not isinstance(raw, str | bytes) else []
        except Exception:
            values = []
        if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
            raise _dicom_error(
                path,
                f"DICOM tag {keyword} is invalid",
                expected=f"{keyword} as two positive numbers (row, column spacing in mm)",
                found=f"{keyword} = {', '.join(f'{v:g}' for v in values)}"
                if values
                else "a value that is not two numbers",
                fix=f"correct or remove {keyword}; dentpy does not guess pixel sizes",
            )
        return (values[0], values[1])
    return None


# --------------------------------------------------------------------------- writing


def _png_array(array: np.ndarray, name: str) -> np.ndarray:
    def refuse(found: str) -> OutputError:
        return OutputError(
            f"{name}: image cannot be stored as PNG",
            expected="(H, W) or (H, W, 3) integer pixels: 8-bit gray or RGB, 16-bit gray, "
            "values 0..65535",
            found=found,
            fix="convert the array first (for example scale floats to uint16)",
        )

    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise refuse(f"shape {tuple(array.shape)}")
    if array.size == 0:
        raise refuse(f"an empty array of shape {tuple(array.shape)}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise refuse(f"dtype {array.dtype}")
    if array.dtype == np.uint8 or (array.dtype == np.uint16 and array.ndim == 2):
        return np.ascontiguousarray(_native(array))
    low, high = int(array.min()), int(array.max())
    if array.ndim == 3:
        if array.dtype == np.uint16 or low < 0 or high > 255:
            raise refuse(f"{array.dtype} colour values {low}..{high} (PNG colour is 8-bit here)")
        return np.ascontiguousarray(array.astype(np.uint8))
    if low < 0 or high > 65535:
        raise refuse(f"{array.dtype} values {low}..{high}")
    return np.ascontiguousarray(array.astype(np.uint16))


def write_image2d(image: Image2D | np.ndarray, path: str | Path) -> Path:
    """Write a PNG (8-bit gray/RGB or 16-bit gray, exact); atomic, never overwrites."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise OutputError(
            f"{path.name}: dentpy writes 2D images as PNG only",
            expected="an output name ending in .png",
            found=path.suffix or "no suffix",
            fix="choose an output name ending in .png",
        )
    array = _png_array(np.asarray(image.array if isinstance(image, Image2D) else image), path.name)
    if path.exists():
        raise OutputError(
            f"{path.name}: output file already exists",
            expected="a new file name",
            found="an existing file, which dentpy does not overwrite",
            fix="remove the old file or choose another output name",
        )
    if array.dtype == np.uint16:
        picture = Image.frombytes(
            "I;16", (array.shape[1], array.shape[0]), array.astype("<u2").tobytes()
        )
    else:
        picture = Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L")
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as handle:
            picture.save(handle, format="PNG")
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            os.link(tmp, path)  # fails if the name appeared meanwhile: never overwrites
        except FileExistsError:
            raise OutputError(
                f"{path.name}: output file already exists",
                expected="a new file name",
                found="a file created by someone else while writing",
                fix="remove the old file or choose another output name",
            ) from None
        except OSError:
            os.replace(tmp, path)  # file systems without hard links
    except OSError as exc:
        raise OutputError(
            f"{path.name}: could not be written",
            expected=f"a writable folder with free space: {path.parent.name or path.parent}",
            found=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="free disk space or choose another output folder; nothing partial was left",
        ) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path
