"""2D images (panoramic, bitewing, periapical X-rays; intraoral photos) and their masks.

A 2D image is kept as stored: 16-bit X-rays stay uint16, 8-bit stay uint8, RGB photos stay
(H, W, 3). Arrays are (row, column) = (y, x), the way every 2D annotation format counts,
already turned to the *displayed* orientation: a JPEG's EXIF orientation tag is applied on
read, so boxes and masks drawn on the image as a viewer shows it line up (RELIABILITY.md A13).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dentpy.errors import InputDataError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE2D_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES

# Larger than any dental radiograph (a panoramic is ~3000 x 1500); a file claiming more is a
# decompression bomb or a lying header, refused before its pixels are decoded (A12).
MAX_PIXELS = 100_000_000


@dataclass(frozen=True, eq=False)
class Image2D:
    """Pixels in display orientation, plus what the file said about their size.

    `pixel_spacing_mm` is (row, column) spacing when the file states it (DICOM PixelSpacing
    or ImagerPixelSpacing), else None: a PNG's DPI is a printing hint, not anatomy.
    `exif_orientation` is the EXIF tag that was applied on read (1 = none).
    """

    array: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None = None
    exif_orientation: int = 1

    def __post_init__(self) -> None:
        shape = self.array.shape
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise ValueError(f"Image2D wants (H, W) or (H, W, 3), got {shape}")

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order annotation formats use."""
        return (self.width, self.height)

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 2 else int(self.array.shape[2])

    @property
    def grayscale(self) -> np.ndarray:
        """One channel as float32 (RGB photos averaged), for statistics and models."""
        if self.array.ndim == 2:
            return self.array.astype(np.float32)
        return self.array.astype(np.float32).mean(axis=2)


def image2d_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    return suffix if suffix in IMAGE2D_SUFFIXES else ""


def is_image2d_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and bool(image2d_suffix(path))


def read_image2d(path: str | Path) -> Image2D:
    """Read a PNG/JPEG/TIFF/BMP or single-frame DICOM image (see module docstring)."""
    from dentpy.data.image2d_io import read_any

    return read_any(Path(path), mask=False)


def read_mask2d(path: str | Path) -> Image2D:
    """Read a label mask: one channel of integer class ids (palette PNGs keep their indices).

    Lossy files (JPEG) are refused: compression invents values between classes (A2).
    """
    from dentpy.data.image2d_io import read_any

    return read_any(Path(path), mask=True)


def not_an_image(path: Path) -> InputDataError:
    return InputDataError(
        f"{path.name}: not a 2D image file dentpy can read",
        expected=f"a file ending in {', '.join(IMAGE2D_SUFFIXES)}",
        found=path.suffix or "no suffix",
        fix="convert the image to PNG (16-bit PNG keeps X-ray gray values)",
    )
