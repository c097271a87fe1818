"""Fuzzing the DICOM series reader (RELIABILITY A11).

A small valid series (4 slices of 8x8) is damaged one slice at a time with seeded random
mutations: flipped bytes, truncation, deleted or inserted chunks, a zeroed preamble and
magic, absurd element lengths. Reading the folder must either give a Volume or raise one
of dentpy's own errors (DentpyError subclasses) -- never a raw pydicom/numpy exception.

A header that lies about the image size (60000 x 60000 with a few bytes of pixels) must be
refused before anything that large is allocated; that read runs in a subprocess under a
1 GB address-space limit, so the test process itself is never at risk.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dentpy.data.io import read_image  # noqa: E402
from dentpy.data.volume import Volume  # noqa: E402
from dentpy.errors import DentpyError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N_SLICES = 4
SIZE = 8
N_CASES = 150


def _slice(k: int, rows: int = SIZE, columns: int = SIZE, pixels: bytes | None = None) -> Any:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{k + 1}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(f"s{k}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.100"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.99"
    ds.Rows, ds.Columns = rows, columns
    ds.PixelSpacing = [0.5, 0.4]
    ds.SliceThickness = 1.25
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-2.0, 3.0, 1.25 * k]
    ds.InstanceNumber = k + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    if pixels is None:
        rng = np.random.default_rng(k)
        pixels = rng.integers(-1000, 3000, (rows, columns), dtype=np.int16).tobytes()
    ds.PixelData = pixels
    return ds


def _series_bytes() -> list[bytes]:
    from io import BytesIO

    out = []
    for k in range(N_SLICES):
        buffer = BytesIO()
        _slice(k).save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


SERIES = _series_bytes()


def _tag_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset of the length field, its width in bytes) for each element of a slice,
    found by locating the element's tag and VR in the explicit-VR little-endian bytes."""
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), force=True)
    offsets = []
    for element in [*ds.file_meta, *ds]:
        tag = element.tag.group.to_bytes(2, "little") + element.tag.element.to_bytes(2, "little")
        at = data.find(tag + element.VR.encode())
        if at < 0:
            continue
        if element.VR in ("OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV"):
            offsets.append((at + 8, 4))
        else:
            offsets.append((at + 6, 2))
    return offsets


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(128, len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _randomize(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(128, len(out))] = rng.randrange(256)
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def _delete_chunk(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(0, len(data))
    return data[:start] + data[start + rng.randint(1, 64) :]


def _insert_chunk(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(0, len(data))
    return data[:start] + rng.randbytes(rng.randint(1, 64)) + data[start:]


def _zero_preamble(data: bytes, rng: random.Random) -> bytes:
    # Zero the preamble and (sometimes) the "DICM" magic behind it.
    end = 132 if rng.random() < 0.5 else 128
    return b"\0" * end + data[end:] if rng.random() < 0.8 else data[132:]


def _absurd_length(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    offset, width = rng.choice(_tag_offsets(data))
    value = rng.choice([0xFFFF, 0xFFFE, 0x7FFF, 0]) if width == 2 else None
    if value is None:
        value = rng.choice([0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x10000000, 3, 0])
    out[offset : offset + width] = value.to_bytes(width, "little")
    return bytes(out)


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip": _flip,
    "randomize": _randomize,
    "truncate": _truncate,
    "delete": _delete_chunk,
    "insert": _insert_chunk,
    "preamble": _zero_preamble,
    "length": _absurd_length,
}


def _case(index: int) -> tuple[str, int, int]:
    """Mutation kind, seed and damaged slice for case `index` (kinds taken in turn)."""
    kinds = sorted(MUTATIONS)
    return kinds[index % len(kinds)], 1000 + index, index % N_SLICES


def _params() -> list[object]:
    params = []
    for index in range(N_CASES):
        kind, seed, victim = _case(index)
        case_id = f"{kind}-seed{seed}-s{victim}"
        params.append(pytest.param(kind, seed, victim, id=case_id))
    return params


@pytest.mark.parametrize(("kind", "seed", "victim"), _params())
def test_damaged_slice_gives_a_volume_or_a_dentpy_error(
    tmp_path: Path, kind: str, seed: int, victim: int
) -> None:
    rng = random.Random(seed)
    for k, data in enumerate(SERIES):
        (tmp_path / f"s{k}.dcm").write_bytes(MUTATIONS[kind](data, rng) if k == victim else data)
    try:
        volume = read_image(tmp_path)
    except DentpyError:
        return
    assert isinstance(volume, Volume)
    assert volume.array.ndim == 3 and np.isfinite(volume.affine).all()


def test_undamaged_series_reads() -> None:
    """The fuzzer starts from a series the reader accepts (so refusals are the damage)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for k, data in enumerate(SERIES):
            (Path(folder) / f"s{k}.dcm").write_bytes(data)
        volume = read_image(folder)
    assert volume.shape == (SIZE, SIZE, N_SLICES)
    assert volume.spacing_mm == pytest.approx((0.4, 0.5, 1.25))


_LYING_HEADER_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from dentpy.data.io import read_image
    from dentpy.errors import InputDataError
    try:
        read_image(sys.argv[1])
    except InputDataError as error:
        print("REFUSED:", error.what)
        sys.exit(0)
    except MemoryError:
        print("MEMORYERROR")
        sys.exit(3)
    print("READ")
    sys.exit(2)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux only")
@pytest.mark.parametrize(("rows", "columns", "slices"), [(60000, 60000, 3), (40000, 40000, 1)])
def test_lying_header_is_refused_within_bounded_memory(
    tmp_path: Path, rows: int, columns: int, slices: int
) -> None:
    """60000 x 60000 x 3 (10.8 G voxels) is over dentpy's voxel limit; 40000 x 40000 x 1
    (1.6 G voxels, 3.2 GB of int16) is under it, so the pixel-data length check must catch
    it. Either way: an InputDataError, with the process held to 1 GB of address space."""
    for k in range(slices):
        _slice(k, rows=rows, columns=columns, pixels=b"\x01\x00" * 32).save_as(
            tmp_path / f"s{k}.dcm", enforce_file_format=True
        )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _LYING_HEADER_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("REFUSED:"), result.stdout
