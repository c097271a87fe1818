"""2D image and mask reading (PNG, JPEG, TIFF, BMP, DICOM) and the PNG writer.

Every fixture is made here at test time, except the DICOM files pydicom ships with its
package (read from the installed folder, never downloaded), which are compared against
SimpleITK's reading of the same file.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from dentpy.data import image2d
from dentpy.data.image2d import Image2D, read_image2d, read_mask2d
from dentpy.data.image2d_io import write_image2d
from dentpy.errors import InputDataError, OutputError

H, W = 20, 30


def _ramp(dtype: type = np.uint8, high: int = 255) -> np.ndarray:
    """Asymmetric content: every pixel differs, so a wrong rotation or flip shows."""
    values = np.arange(H * W, dtype=np.int64).reshape(H, W) % (high + 1)
    return values.astype(dtype)


def _assert_error(exc: pytest.ExceptionInfo[InputDataError], name: str) -> str:
    text = str(exc.value)
    assert exc.value.what.startswith(f"{name}: ")
    assert exc.value.expected and exc.value.found and exc.value.fix
    assert f"/{name}" not in text and "\\" not in text  # bare file name, never a path
    return text


# --------------------------------------------------------------------------- rasters


def test_png_8bit(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(_ramp()).save(path)
    image = read_image2d(path)
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, _ramp())
    assert image.size == (W, H)
    assert image.pixel_spacing_mm is None
    assert image.exif_orientation == 1


def test_png_16bit_keeps_values(tmp_path: Path) -> None:
    path = tmp_path / "xray.png"
    data = (_ramp(np.uint16, 599) * 100).astype(np.uint16)  # up to 59900
    Image.fromarray(data).save(path)
    image = read_image2d(path)
    assert image.array.dtype == np.uint16
    assert image.array.dtype.isnative
    np.testing.assert_array_equal(image.array, data)
    assert int(image.array.max()) > 255


def test_mode_i_tiff(tmp_path: Path) -> None:
    data = _ramp(np.int32, 599) * 50
    Image.fromarray(data.astype(np.int32), mode="I").save(tmp_path / "i.tif")
    image = read_image2d(tmp_path / "i.tif")
    assert image.array.dtype == np.uint16  # every value fits 0..65535
    np.testing.assert_array_equal(image.array, data)
    Image.fromarray((data - 1000).astype(np.int32), mode="I").save(tmp_path / "neg.tif")
    signed = read_image2d(tmp_path / "neg.tif")
    assert signed.array.dtype == np.int32
    np.testing.assert_array_equal(signed.array, data - 1000)


def test_rgb_jpeg_shape(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    rgb = np.stack([_ramp(), _ramp()[::-1], np.full((H, W), 80, np.uint8)], axis=2)
    Image.fromarray(rgb).save(path, quality=95)
    image = read_image2d(path)
    assert image.array.shape == (H, W, 3)
    assert image.array.dtype == np.uint8
    assert image.channels == 3


def test_tiff_16bit(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    data = (_ramp(np.uint16, 599) * 109).astype(np.uint16)
    Image.fromarray(data).save(path)
    image = read_image2d(path)
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, data)


def test_tiff_16bit_big_endian(tmp_path: Path) -> None:
    data = (_ramp(np.uint16, 599) * 109).astype(np.uint16)
    Image.fromarray(data.astype(">u2")).save(tmp_path / "be.tif")
    image = read_image2d(tmp_path / "be.tif")
    assert image.array.dtype == np.uint16 and image.array.dtype.isnative
    np.testing.assert_array_equal(image.array, data)


def test_float_tiff(tmp_path: Path) -> None:
    path = tmp_path / "f.tiff"
    data = _ramp(np.float32) / 7.0
    Image.fromarray(data.astype(np.float32), mode="F").save(path)
    image = read_image2d(path)
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, data.astype(np.float32))


def test_float_tiff_with_nan_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.tiff"
    data = _ramp(np.float32)
    data[0, :3] = np.nan
    data[5, 5] = np.inf
    Image.fromarray(data, mode="F").save(path)
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    text = _assert_error(exc, "nan.tiff")
    assert "4 NaN" in text


def test_float_mask_refused(tmp_path: Path) -> None:
    path = tmp_path / "fmask.tif"
    Image.fromarray(_ramp(np.float32), mode="F").save(path)
    with pytest.raises(InputDataError) as exc:
        read_mask2d(path)
    _assert_error(exc, "fmask.tif")


def test_bmp(tmp_path: Path) -> None:
    path = tmp_path / "a.bmp"
    Image.fromarray(_ramp()).save(path)
    np.testing.assert_array_equal(read_image2d(path).array, _ramp())


def test_rgba_opaque_drops_alpha_transparent_refused(tmp_path: Path) -> None:
    rgb = np.stack([_ramp()] * 3, axis=2)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    image = read_image2d(tmp_path / "opaque.png")
    np.testing.assert_array_equal(image.array, rgb)
    rgba[3, 4, 3] = 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "see_through.png")
    with pytest.raises(InputDataError) as exc:
        read_image2d(tmp_path / "see_through.png")
    _assert_error(exc, "see_through.png")


def test_gray_palette_image_reads_gray(tmp_path: Path) -> None:
    img = Image.fromarray(_ramp(np.uint8, 9), mode="L").convert("P")
    img.putpalette([v for i in range(256) for v in (i * 20 % 256,) * 3])
    img.save(tmp_path / "p.png")
    image = read_image2d(tmp_path / "p.png")
    assert image.array.ndim == 2
    np.testing.assert_array_equal(image.array, (_ramp(np.uint8, 9).astype(int) * 20) % 256)


def test_1bit_image_and_mask(tmp_path: Path) -> None:
    bits = (_ramp() % 2).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_mask2d(tmp_path / "b.png").array, bits.astype(np.uint8))
    np.testing.assert_array_equal(read_image2d(tmp_path / "b.png").array, bits * 255)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputDataError, match=r"x\.gif"):
        read_image2d(tmp_path / "x.gif")
    with pytest.raises(InputDataError) as exc:
        read_image2d(tmp_path / "gone.png")
    _assert_error(exc, "gone.png")


def test_not_an_image_content(tmp_path: Path) -> None:
    path = tmp_path / "text.png"
    path.write_text("hello, not a picture")
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    _assert_error(exc, "text.png")


def test_multipage_tiff_refused(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    first = Image.fromarray(_ramp())
    first.save(path, save_all=True, append_images=[Image.fromarray(_ramp()[::-1].copy())])
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    assert "2 images" in _assert_error(exc, "pages.tif")


# --------------------------------------------------------------------------- EXIF


def _exif_jpeg(path: Path, array: np.ndarray, orientation: int) -> None:
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, quality=100, subsampling=0)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    _exif_jpeg(path, _ramp(), orientation)
    image = read_image2d(path)
    with Image.open(path) as raw:
        expected = np.asarray(ImageOps.exif_transpose(raw))
    assert image.exif_orientation == orientation
    assert image.array.shape == expected.shape
    np.testing.assert_array_equal(image.array, expected)
    if orientation in (6, 8):
        assert image.size == (H, W)  # width and height swapped as displayed


def test_exif_mask_turns_like_image(tmp_path: Path) -> None:
    gray = (_ramp(np.uint8, 9) * 25).astype(np.uint8)
    classes = _ramp(np.uint8, 9)
    img_path, mask_path = tmp_path / "scan.jpg", tmp_path / "scan_mask.png"
    _exif_jpeg(img_path, gray, 6)
    mask = Image.fromarray(classes)
    exif = mask.getexif()
    exif[0x0112] = 6
    mask.save(mask_path, exif=exif)
    image, labels = read_image2d(img_path), read_mask2d(mask_path)
    assert labels.exif_orientation == 6
    assert labels.array.shape == image.array.shape == (W, H)
    # 90° clockwise: displayed[r, c] = stored[H - 1 - c, r]
    np.testing.assert_array_equal(labels.array, np.rot90(classes, k=-1))
    # JPEG is lossy, but each class has its own clear gray level: they still line up.
    np.testing.assert_array_equal(np.round(image.array.astype(float) / 25), labels.array)


# --------------------------------------------------------------------------- bombs, damage


def test_bomb_limit_monkeypatched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_ramp()).save(path)
    monkeypatch.setattr(image2d, "MAX_PIXELS", 100)
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    text = _assert_error(exc, "big.png")
    assert "30 x 20" in text or "600 pixels" in text
    assert "at most 100 pixels" in text
    monkeypatch.setattr(image2d, "MAX_PIXELS", H * W)
    assert read_image2d(path).size == (W, H)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_bomb_crafted_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    # A few bytes of valid zlib data; a decoder would want 400 MB of pixels.
    pixels = zlib.compress(b"\x00" * 20001 * 4)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels)
    path.write_bytes(png + _chunk(b"IEND", b""))
    assert path.stat().st_size < 1000
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    text = _assert_error(exc, "bomb.png")
    assert "20000 x 20000" in text or "400,000,000 pixels" in text
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # Pillow's global setting is restored


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "half.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.stack([_ramp()] * 3, axis=2)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    assert "re-copy" in _assert_error(exc, "half.jpg")


def test_truncated_jpeg_refused_even_if_pillow_was_lenient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = tmp_path / "half.jpg"
    buffer = io.BytesIO()
    Image.fromarray(_ramp()).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputDataError):
        read_image2d(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # restored


def test_corrupt_png_idat(tmp_path: Path) -> None:
    path = tmp_path / "flip.png"
    buffer = io.BytesIO()
    Image.fromarray(_ramp()).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    for offset in (5, 9, 13):
        data[start + offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    _assert_error(exc, "flip.png")


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    buffer = io.BytesIO()
    Image.fromarray(_ramp()).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:-30])
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    _assert_error(exc, "cut.png")


# --------------------------------------------------------------------------- masks


def test_palette_mask_keeps_indices(tmp_path: Path) -> None:
    classes = _ramp(np.uint8, 4)
    classes[0, 0] = 255  # VOC "ignore" border
    img = Image.fromarray(classes, mode="L").convert("P")
    img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [224] * 3 * 251)
    img.save(tmp_path / "voc.png")
    mask = read_mask2d(tmp_path / "voc.png")
    assert mask.array.dtype == np.uint8
    np.testing.assert_array_equal(mask.array, classes)
    # As an image the same file shows its colours.
    assert read_image2d(tmp_path / "voc.png").array.shape == (H, W, 3)


def test_jpeg_mask_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.jpg"
    Image.fromarray(_ramp(np.uint8, 3)).save(path)
    with pytest.raises(InputDataError) as exc:
        read_mask2d(path)
    assert "JPEG" in _assert_error(exc, "m.jpg")


def test_jpeg_renamed_png_mask_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(_ramp(np.uint8, 3)).save(path, format="JPEG")
    with pytest.raises(InputDataError, match="JPEG"):
        read_mask2d(path)


def test_colour_rgb_mask_refused(tmp_path: Path) -> None:
    classes = _ramp(np.uint8, 3)
    rgb = np.stack([classes, classes, classes], axis=2)
    rgb[2, 2, 1] = 7
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(InputDataError) as exc:
        read_mask2d(tmp_path / "rgb.png")
    text = _assert_error(exc, "rgb.png")
    assert "single-channel or palette PNG" in text
    assert "1 pixels" in text


def test_gray_rgb_mask_accepted(tmp_path: Path) -> None:
    classes = _ramp(np.uint8, 3)
    Image.fromarray(np.stack([classes] * 3, axis=2)).save(tmp_path / "gray.png")
    mask = read_mask2d(tmp_path / "gray.png")
    assert mask.array.shape == (H, W)
    np.testing.assert_array_equal(mask.array, classes)


def test_16bit_mask_kept(tmp_path: Path) -> None:
    classes = (_ramp(np.uint16, 9) * 1000).astype(np.uint16)
    Image.fromarray(classes).save(tmp_path / "m16.png")
    mask = read_mask2d(tmp_path / "m16.png")
    assert mask.array.dtype == np.uint16
    np.testing.assert_array_equal(mask.array, classes)


# --------------------------------------------------------------------------- DICOM


def _dicom(
    path: Path,
    array: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    frames: int | None = None,
    pixels: bool = True,
    preamble: bool = True,
    **tags: object,
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Person"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = int(array.shape[0]), int(array.shape[1])
    ds.SamplesPerPixel = 3 if array.ndim == 3 else 1
    if array.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = array.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = int(tags.pop("BitsStored", bits))  # type: ignore[call-overload]
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(array.dtype, np.signedinteger) else 0
    if frames is not None:
        ds.NumberOfFrames = frames
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if pixels:
        ds.PixelData = array.astype(array.dtype.newbyteorder("<")).tobytes() * (frames or 1)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


def test_dicom_monochrome2_exact(tmp_path: Path) -> None:
    data = (_ramp(np.uint16, 599) * 6).astype(np.uint16)
    path = _dicom(tmp_path / "a.dcm", data, BitsStored=12)
    image = read_image2d(path)
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, data)
    assert image.pixel_spacing_mm is None


def test_dicom_monochrome1_inverted(tmp_path: Path) -> None:
    data = (_ramp(np.uint16, 599) * 6).astype(np.uint16)
    path = _dicom(tmp_path / "m1.dcm", data, photometric="MONOCHROME1", BitsStored=12)
    image = read_image2d(path)
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, 4095 - data.astype(np.int64))


def test_dicom_rescale(tmp_path: Path) -> None:
    data = _ramp(np.uint16, 599)
    path = _dicom(tmp_path / "r.dcm", data, RescaleSlope="0.5", RescaleIntercept="-100")
    image = read_image2d(path)
    assert image.array.dtype == np.float32
    np.testing.assert_allclose(image.array, data * 0.5 - 100)
    identity = _dicom(tmp_path / "id.dcm", data, RescaleSlope="1", RescaleIntercept="0")
    assert read_image2d(identity).array.dtype == np.uint16


def test_dicom_spacing(tmp_path: Path) -> None:
    data = _ramp(np.uint16)
    ps = _dicom(tmp_path / "ps.dcm", data, PixelSpacing=["0.1", "0.2"])
    assert read_image2d(ps).pixel_spacing_mm == (0.1, 0.2)
    ips = _dicom(tmp_path / "ips.dcm", data, ImagerPixelSpacing=["0.15", "0.25"])
    assert read_image2d(ips).pixel_spacing_mm == (0.15, 0.25)
    both = _dicom(
        tmp_path / "both.dcm", data, PixelSpacing=["0.1", "0.1"], ImagerPixelSpacing=["0.3", "0.3"]
    )
    assert read_image2d(both).pixel_spacing_mm == (0.1, 0.1)
    bad = _dicom(tmp_path / "bad.dcm", data, PixelSpacing=["0", "0.1"])
    with pytest.raises(InputDataError) as exc:
        read_image2d(bad)
    assert "PixelSpacing" in _assert_error(exc, "bad.dcm")


def test_dicom_rgb(tmp_path: Path) -> None:
    rgb = np.stack([_ramp(), _ramp()[::-1], np.full((H, W), 9, np.uint8)], axis=2)
    image = read_image2d(_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    np.testing.assert_array_equal(image.array, rgb)


def test_dicom_mask(tmp_path: Path) -> None:
    classes = _ramp(np.uint16, 5)
    mask = read_mask2d(_dicom(tmp_path / "seg.dcm", classes))
    np.testing.assert_array_equal(mask.array, classes)
    # Class ids are stored values: MONOCHROME1 does not invert a mask.
    inverted = read_mask2d(_dicom(tmp_path / "m1.dcm", classes, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted.array, classes)


def test_dicom_zero_slope_refused(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "z.dcm", _ramp(np.uint16), RescaleSlope="0")
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    assert "RescaleSlope" in _assert_error(exc, "z.dcm")


def test_dicom_multiframe_refused(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "mf.dcm", _ramp(np.uint16), frames=3)
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    text = _assert_error(exc, "mf.dcm")
    assert "multi-frame" in text and "volume" in text


def test_dicom_without_pixels_refused(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "np.dcm", _ramp(np.uint16), pixels=False)
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    assert "PixelData" in _assert_error(exc, "np.dcm")


def test_dicom_truncated_pixels_refused(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "cut.dcm", _ramp(np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    _assert_error(exc, "cut.dcm")


def test_dicom_header_bomb_refused(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "huge.dcm", _ramp(np.uint16))
    from pydicom import dcmread

    ds = dcmread(path)
    ds.Rows, ds.Columns = 60000, 60000
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputDataError, match="implausibly large"):
        read_image2d(path)


def test_dicom_without_preamble(tmp_path: Path) -> None:
    data = _ramp(np.uint16)
    path = _dicom(tmp_path / "raw.dcm", data, preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_image2d(path).array, data)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"this is not dicom at all" * 10)
    with pytest.raises(InputDataError) as exc:
        read_image2d(junk)
    _assert_error(exc, "junk.dcm")


def test_dicom_no_patient_data_in_messages(tmp_path: Path) -> None:
    texts = []
    for frames, name in ((2, "mf.dcm"), (None, "bad.dcm")):
        path = _dicom(
            tmp_path / name,
            _ramp(np.uint16),
            frames=frames,
            PatientName="CANARY^SECRET",
            PatientID="CANARY-SECRET-ID",
            PixelSpacing=["-1", "1"],
        )
        with pytest.raises(InputDataError) as exc:
            read_image2d(path)
        texts.append(str(exc.value))
    for text in texts:
        assert "CANARY" not in text and "SECRET" not in text


def test_dicom_compressed_without_decoder(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.uid import JPEGLSLossless

    path = _dicom(tmp_path / "jls.dcm", _ramp(np.uint16))
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\xd8not really jpeg-ls\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    text = _assert_error(exc, "jls.dcm")
    assert "JPEG-LS Lossless" in text and "gdcmconv" in text


@pytest.mark.filterwarnings("ignore")
def test_dicom_fuzz_only_input_errors(tmp_path: Path) -> None:
    data = _ramp(np.uint16, 599)
    valid = _dicom(
        tmp_path / "seed.dcm",
        data[:8, :10].copy(),
        PixelSpacing=["0.1", "0.1"],
        RescaleSlope="1",
        RescaleIntercept="0",
    ).read_bytes()
    rng = random.Random(20240601)
    path = tmp_path / "fuzz.dcm"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(200):
        blob = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            if not blob:
                break
            op = rng.choice(("flip", "insert", "delete", "truncate", "byte"))
            pos = rng.randrange(len(blob))
            if op == "flip":
                blob[pos] ^= 1 << rng.randrange(8)
            elif op == "byte":
                blob[pos] = rng.choice((0x00, 0xFF, 0x7F, 0x80))
            elif op == "insert":
                blob[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op == "delete":
                del blob[pos : pos + rng.randint(1, 8)]
            else:
                del blob[max(pos, 1) :]
        path.write_bytes(bytes(blob))
        try:
            result = read_image2d(path)
        except InputDataError:
            outcomes["refused"] += 1
        else:
            assert isinstance(result, Image2D)
            outcomes["read"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 0


# --------------------------------------------------------------------------- real files


def _pydicom_test_files() -> list[Path]:
    """Single-frame uncompressed images shipped inside the installed pydicom package."""
    try:
        import pydicom
        import pydicom.data
    except ImportError:
        return []
    folder = Path(pydicom.data.__file__).parent / "test_files"
    found = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                syntax = ds.file_meta.get("TransferSyntaxUID")
                if "PixelData" not in ds or syntax is None or syntax.is_compressed:
                    continue
                if int(ds.get("NumberOfFrames", 1) or 1) != 1:
                    continue
        except Exception:
            continue
        found.append(path)
    return found


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", _pydicom_test_files(), ids=lambda p: p.name)
def test_pydicom_files_match_simpleitk(path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    import pydicom

    try:
        reference = sitk.ReadImage(str(path))
    except RuntimeError:
        pytest.skip("SimpleITK cannot read this file")
    ds = pydicom.dcmread(path)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric.startswith("YBR") or photometric == "MONOCHROME1":
        pytest.skip(f"{photometric}: SimpleITK and dentpy convert differently by design")
    image = read_image2d(path)  # whatever SimpleITK reads, dentpy reads too
    expected = sitk.GetArrayFromImage(reference)[0]  # SimpleITK applies the rescale itself
    if int(ds.get("BitsAllocated", 8)) == 1:
        expected = expected // 255  # SimpleITK shows 1-bit pixels as 0/255, dentpy keeps 0/1
    assert image.array.shape == expected.shape
    np.testing.assert_allclose(image.array.astype(np.float64), expected.astype(np.float64))
    x_spacing, y_spacing = reference.GetSpacing()[:2]
    if image.pixel_spacing_mm is not None:
        assert image.pixel_spacing_mm == pytest.approx((y_spacing, x_spacing))  # (row, col)


def test_pydicom_test_files_found() -> None:
    names = {p.name for p in _pydicom_test_files()}
    assert {"CT_small.dcm", "MR_small.dcm"} <= names


@pytest.mark.filterwarnings("ignore")
def test_pydicom_truncated_file_refused() -> None:
    import pydicom.data

    path = Path(pydicom.data.__file__).parent / "test_files" / "MR_truncated.dcm"
    if not path.is_file():
        pytest.skip("pydicom ships no MR_truncated.dcm here")
    with pytest.raises(InputDataError) as exc:
        read_image2d(path)
    assert "cannot be read completely" in _assert_error(exc, "MR_truncated.dcm")


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "array",
    [
        _ramp(),
        (_ramp(np.uint16, 599) * 109).astype(np.uint16),
        np.stack([_ramp(), _ramp()[::-1], _ramp()[:, ::-1]], axis=2),
    ],
    ids=["uint8", "uint16", "rgb"],
)
def test_write_round_trip(tmp_path: Path, array: np.ndarray) -> None:
    path = write_image2d(Image2D(array=array), tmp_path / "out" / "a.png")
    back = read_image2d(path).array
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]


def test_write_other_int_and_refusals(tmp_path: Path) -> None:
    labels = _ramp(np.int64, 300)
    back = read_image2d(write_image2d(labels, tmp_path / "l.png")).array
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
    with pytest.raises(OutputError, match="already exists"):
        write_image2d(labels, tmp_path / "l.png")
    with pytest.raises(OutputError):
        write_image2d(_ramp(np.float32), tmp_path / "f.png")
    with pytest.raises(OutputError):
        write_image2d(labels - 1, tmp_path / "neg.png")
    with pytest.raises(OutputError):
        write_image2d(_ramp(), tmp_path / "a.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.png"]
