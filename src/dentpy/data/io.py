"""Read and write volumes with their geometry (NIfTI, MHA/MHD, NRRD).

NIfTI is read with nibabel (its affine is RAS already). MHA/MHD/NRRD are read with
SimpleITK, whose arrays are (z, y, x) and whose geometry is LPS; both are converted here
so every Volume is (I, J, K) with a voxel -> RAS affine. Writes go to a temporary file in
the destination folder and are renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dentpy.data.volume import IntensityImage, LabelMap, Volume
from dentpy.errors import InputDataError, OutputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
# Bare arrays (ToothFairy): no geometry inside, so only layouts that know it read them.
NUMPY_SUFFIX = ".npy"

# A header that claims more voxels than this is refused before any memory is allocated.
MAX_VOXELS = 2_000_000_000

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

V = TypeVar("V", bound=Volume)


def volume_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def is_volume_file(path: Path) -> bool:
    return path.is_file() and volume_suffix(path) in VOLUME_SUFFIXES


def read_image(path: str | Path) -> IntensityImage:
    """Read a 3D gray-value volume; refuses NaN/Inf voxels and non-3D data."""
    volume = _read(Path(path), IntensityImage)
    bad = int(np.count_nonzero(~np.isfinite(volume.array)))
    if bad:
        raise InputDataError(
            f"{Path(path).name}: image contains {bad} NaN or infinite voxels",
            expected="finite gray values in every voxel",
            found=f"{bad} of {volume.array.size} voxels are NaN/Inf",
            fix="repair or re-export the scan; dentpy never fills voxels in silently",
        )
    return volume


def read_label(path: str | Path) -> LabelMap:
    """Read a 3D integer label map; refuses fractional or negative values."""
    volume = _read(Path(path), LabelMap)
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer):
        finite = np.isfinite(array)
        if not finite.all() or not np.array_equal(array, np.round(array)):
            odd = np.unique(array[~finite | (array != np.round(array))])[:5]
            raise InputDataError(
                f"{Path(path).name}: label map holds non-integer values",
                expected="integer class labels (0 = background)",
                found=f"values such as {', '.join(f'{v:g}' for v in odd)}",
                fix="export the mask without interpolation (nearest neighbour), as integers",
            )
    if array.size and array.min() < 0:
        raise InputDataError(
            f"{Path(path).name}: label map holds negative values",
            expected="labels >= 0",
            found=f"minimum {array.min()}",
            fix="relabel the mask with non-negative integers",
        )
    top = int(array.max()) if array.size else 0
    if top > np.iinfo(np.int32).max:
        # Casting would wrap around to negative labels; such values mean a damaged header
        # (scl_slope/scl_inter) or an intensity image given as a label.
        raise InputDataError(
            f"{Path(path).name}: label map holds implausibly large values",
            expected=f"labels up to {np.iinfo(np.int32).max:,}",
            found=f"maximum {top:,}",
            fix="check that this file is a label map, and its header scaling (scl_slope/scl_inter)",
        )
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32
    return LabelMap(array=array.astype(dtype, copy=False), affine=volume.affine)


def _read(path: Path, kind: type[V]) -> V:
    if not path.exists():
        raise InputDataError(
            f"{path.name}: file not found",
            expected=f"a volume file at {path}",
            found="nothing",
            fix="check the path, or the dataset layout (see `dentpy data check`)",
        )
    suffix = volume_suffix(path)
    if path.is_dir():
        from dentpy.data.dicom_series import read_dicom_series

        array, affine = read_dicom_series(path)
    elif suffix in NIFTI_SUFFIXES:
        array, affine = _read_nifti(path)
    elif suffix in ITK_SUFFIXES:
        array, affine = _read_itk(path)
    elif suffix == NUMPY_SUFFIX:
        array, affine = _read_numpy(path)
    else:
        raise InputDataError(
            f"{path.name}: unsupported volume format",
            expected=f"one of {', '.join(VOLUME_SUFFIXES)}",
            found=suffix or "no suffix",
            fix="convert the file to NIfTI (.nii.gz)",
        )
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputDataError(
            f"{path.name}: expected a 3D volume",
            expected="3 dimensions (I, J, K)",
            found=f"{array.ndim} dimensions, shape {tuple(array.shape)}",
            fix="split multi-channel or time series files into one 3D file per channel",
        )
    return kind(array=array, affine=affine)


def _corrupt(path: Path, exc: BaseException) -> InputDataError:
    return InputDataError(
        f"{path.name}: file cannot be read completely ({type(exc).__name__})",
        expected="a complete, uncorrupted volume file",
        found=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
        fix="re-copy or re-export the file; it may be truncated or damaged",
    )


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        if path.name.lower().endswith(".gz"):
            import gzip

            # Decompress the whole stream here: nibabel stops at the end of the voxel data
            # and would never check the gzip CRC, so a corrupted file would read "fine".
            raw = gzip.decompress(path.read_bytes())
            # sizeof_hdr is 540 for NIfTI-2 (in either byte order), 348 for NIfTI-1.
            nifti2 = raw[:4] in ((540).to_bytes(4, "little"), (540).to_bytes(4, "big"))
            klass = nib.Nifti2Image if nifti2 else nib.Nifti1Image
            image: Any = klass.from_bytes(raw)
        else:
            raw = b""
            image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
        if int(np.prod(shape, dtype=np.float64)) > MAX_VOXELS:
            raise InputDataError(
                f"{path.name}: header claims an implausibly large volume",
                expected=f"at most {MAX_VOXELS:,} voxels",
                found=f"shape {shape}",
                fix="the header is damaged; re-export the file",
            )
        dtype = np.dtype(image.get_data_dtype())
        if dtype.kind not in "biuf":
            # RGB24/RGBA32 (structured) and complex voxels are no gray values or labels.
            raise InputDataError(
                f"{path.name}: unsupported voxel type",
                expected="integer or floating-point voxels (one value per voxel)",
                found=f"NIfTI datatype {dtype} (code {int(image.header['datatype'])})",
                fix="convert the file to a scalar integer or float volume",
            )
        # nibabel allocates the whole array before reading it: check the header's claim
        # against the bytes actually there, so a lying header costs no memory.
        offset = int(image.dataobj.offset)
        needed = offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        gz = path.name.lower().endswith(".gz")
        available = len(raw) if gz else path.stat().st_size
        if needed > available:
            raise InputDataError(
                f"{path.name}: voxel data is shorter than the header says",
                expected=f"{needed:,} bytes (shape {shape}, {dtype}, data at byte {offset})",
                found=f"{available:,} bytes" + (" after decompression" if gz else ""),
                fix="re-copy or re-export the file; it is truncated or its header is damaged",
            )
        # Reading the whole array here (not lazily) is what catches truncation and CRC errors.
        array = np.asarray(image.dataobj)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        affine = np.asarray(image.affine, dtype=np.float64)
    except InputDataError:
        raise
    except Exception as exc:
        raise _corrupt(path, exc) from None
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputDataError(
            f"{path.name}: header geometry is invalid",
            expected="a finite, invertible voxel-to-world affine",
            found=f"affine with determinant {np.linalg.det(affine[:3, :3]):g}",
            fix="set the voxel spacing and orientation in the header (qform/sform)",
        )
    return array, affine


def _read_numpy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ToothFairy .npy volume, stored (Z, Y, X): returned as (X, Y, Z) with a 1 mm
    axis-aligned affine. The file holds no spacing or orientation; the layout that reads it
    supplies the spacing (`assume_spacing_mm`)."""
    try:
        # allow_pickle=False: an .npy file can carry a pickle, which would run code.
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise _corrupt(path, exc) from None
    if array.ndim != 3:
        return array, np.eye(4)  # _read reports the dimension error with the shape
    return np.ascontiguousarray(array.transpose(2, 1, 0)), np.eye(4)


def _read_itk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        size = reader.GetSize()
        if int(np.prod(size, dtype=np.float64)) > MAX_VOXELS:
            raise InputDataError(
                f"{path.name}: header claims an implausibly large volume",
                expected=f"at most {MAX_VOXELS:,} voxels",
                found=f"size {tuple(size)}",
                fix="the header is damaged; re-export the file",
            )
        _check_claimed_size(path, int(np.prod(size, dtype=np.float64)))
        image = reader.Execute()
    except InputDataError:
        raise
    except Exception as exc:
        raise _corrupt(path, exc) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputDataError(
            f"{path.name}: expected one value per voxel",
            expected="a scalar (grayscale) volume",
            found=f"{image.GetNumberOfComponentsPerPixel()} components per voxel",
            fix="convert the file to a single-channel volume",
        )
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    array = np.ascontiguousarray(np.transpose(array, tuple(range(array.ndim))[::-1]))
    dim = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.array(image.GetSpacing(), dtype=np.float64)[:3]
    origin = np.array(image.GetOrigin(), dtype=np.float64)[:3]
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * spacing
    affine_lps[:3, 3] = origin
    return array, _LPS_TO_RAS @ affine_lps


# zlib cannot compress better than ~1032:1, so a header claiming more voxels than this many
# times the bytes on disk is lying (counting one byte per voxel, the smallest type).
MAX_COMPRESSION_RATIO = 1100


def _check_claimed_size(path: Path, voxels: int) -> None:
    """Refuse an MHA/NRRD header that claims far more voxels than its data can hold, before
    SimpleITK allocates them (RELIABILITY.md A8)."""
    on_disk = path.stat().st_size
    if path.suffix.lower() in (".mhd", ".nhdr"):
        # Detached data file: add its size (a list or pattern of files is left unchecked).
        text = path.read_bytes()[:8192].decode("latin-1")
        for line in text.splitlines():
            key, _, value = line.partition("=" if path.suffix.lower() == ".mhd" else ":")
            if key.strip().lower() in ("elementdatafile", "data file", "datafile"):
                value = value.strip()
                if value.upper() in ("LIST", "LOCAL") or "%" in value or " " in value:
                    return
                data = path.parent / value
                on_disk += data.stat().st_size if data.is_file() else 0
    if voxels > MAX_COMPRESSION_RATIO * max(on_disk, 1):
        raise InputDataError(
            f"{path.name}: header claims more voxels than the file can hold",
            expected=f"at most ~{MAX_COMPRESSION_RATIO} voxels per byte on disk "
            "(the best compression possible)",
            found=f"{voxels:,} voxels claimed, {on_disk:,} bytes of file",
            fix="the file is truncated or its header is damaged; re-export it",
        )


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume with its own affine; atomic (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = volume_suffix(path)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(volume, tmp)
        elif suffix in ITK_SUFFIXES:
            _write_itk(volume, tmp)
        else:
            raise InputDataError(
                f"{path.name}: cannot write this format",
                expected=f"one of {', '.join(VOLUME_SUFFIXES)}",
                found=suffix,
                fix="choose an output name ending in .nii.gz",
            )
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; outputs get the usual permissions (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(
            f"{path.name}: could not be written",
            expected=f"a writable folder with free space: {path.parent}",
            found=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="free disk space or choose another output folder; nothing partial was left",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_nifti(volume: Volume, path: Path) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(volume.array), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    if isinstance(volume, LabelMap):
        image.header.set_intent("label")
    # gzip mtime is zeroed by nibabel's own writer only if asked; keep bytes reproducible.
    _save_reproducible(image, path)


def _save_reproducible(image: object, path: Path) -> None:
    import gzip

    import nibabel as nib

    if path.name.endswith(".gz"):
        raw = image.to_bytes()  # type: ignore[attr-defined]
        with (
            open(path, "wb") as handle,
            gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=6) as gz,
        ):
            gz.write(raw)
    else:
        nib.save(image, str(path))  # type: ignore[arg-type]


def _write_itk(volume: Volume, path: Path) -> None:
    import SimpleITK as sitk

    array = np.asarray(volume.array)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    affine_lps = _LPS_TO_RAS @ volume.affine
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in affine_lps[:3, 3]])
    image.SetDirection([float(d) for d in (affine_lps[:3, :3] / spacing).ravel()])
    sitk.WriteImage(image, str(path), useCompression=True)


def read_affine(path: str | Path) -> np.ndarray:
    """The voxel -> RAS affine from the header alone (no voxel data is read)."""
    return read_header(path)[0]


def read_header(path: str | Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(voxel -> RAS affine, shape of the first three voxel axes) from the header alone."""
    path = Path(path)
    suffix = volume_suffix(path)
    try:
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib

            image: Any = nib.load(str(path))
            first, second, third = (int(s) for s in (*image.shape, 1, 1)[:3])
            return np.asarray(image.affine, dtype=np.float64), (first, second, third)
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        dim = reader.GetDimension()
        direction = np.array(reader.GetDirection()).reshape(dim, dim)[:3, :3]
        affine_lps = np.eye(4)
        affine_lps[:3, :3] = direction * np.array(reader.GetSpacing())[:3]
        affine_lps[:3, 3] = np.array(reader.GetOrigin())[:3]
        # SimpleITK sizes are (x, y, z): the voxel axes of the arrays _read_itk returns.
        first, second, third = (int(s) for s in (*reader.GetSize(), 1, 1)[:3])
        return _LPS_TO_RAS @ affine_lps, (first, second, third)
    except Exception as exc:
        raise _corrupt(path, exc) from None
