"""One case of a dataset: where its files are (`CaseRecord`) and what they hold (`Case`).

A record is cheap (paths only); `CaseRecord.load` reads the files and refuses anything that
could train or score a model on misaligned or mislabelled data (RELIABILITY.md A1-A5):
missing labels, shape or geometry mismatches, label values nobody declared. Nothing is
resized, resampled or remapped to make a case fit.

Case names often contain patient names, so every record is known by a pseudonym
(`pseudonym`); the original names survive only inside the record's file paths. Errors name
the file relative to the dataset root (the user owns the dataset) but never the full path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from dentpy.data.io import read_image, read_label
from dentpy.data.volume import IntensityImage, LabelMap, Volume
from dentpy.errors import InputDataError

# Label ids for the Pulpy3D gt_* flavour when the dataset declares none: the order of the
# Pulpy3D paper (pulp first, then the inferior alveolar nerve canal).
GT_PART_LABELS: dict[str, int] = {"background": 0, "pulp": 1, "ian": 2}

# Geometry must agree to well below a voxel (~0.1-0.4 mm in CBCT); larger tolerances are an
# explicit opt-in (planned), never a default.
SPACING_ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4

V = TypeVar("V", bound=Volume)


def pseudonym(name: str) -> str:
    """A stable, non-identifying id for a case or patient name: "case-" + sha256[:10].

    >>> pseudonym("P1")
    'case-fbeae7c186'
    """
    return "case-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True, eq=False)
class Case:
    """A loaded, validated case: the image and (for training cases) its label map."""

    case_id: str
    patient_id: str
    image: IntensityImage
    label: LabelMap | None


@dataclass(frozen=True)
class CaseRecord:
    """Where one case's files are. `load` reads and validates them.

    `label_path` is one label map; `label_parts` are per-class binary masks (Pulpy3D
    `gt_pulp`/`gt_ian`) combined at load into one label map, each part named by its class.
    `instance_path` (Pulpy3D `gt_instance`) is kept for instance tasks and not read by
    `load`. `root` is the dataset root: files are named relative to it in errors, and
    (when `confined`) every file must resolve inside it.
    """

    case_id: str
    patient_id: str
    image_path: Path
    label_path: Path | None = None
    label_parts: tuple[tuple[str, Path], ...] = ()
    instance_path: Path | None = None
    root: Path | None = None
    # The dataset's own name for the case (nnU-Net case name, patient folder). It may
    # identify a patient: it is used only in files written into the user's own dataset
    # (its splits.json), never in logs or run folders.
    source_name: str = ""
    # Files must resolve inside `root` (a symlink leading out of the dataset is refused,
    # RELIABILITY.md C27). Inputs a user names one by one for prediction are not confined.
    confined: bool = True

    def __post_init__(self) -> None:
        if self.label_path is not None and self.label_parts:
            raise ValueError(f"{self.case_id}: give label_path or label_parts, not both")

    @property
    def has_label(self) -> bool:
        return self.label_path is not None or bool(self.label_parts)

    def name_of(self, path: Path) -> str:
        """A file's name relative to the dataset root (never an absolute path)."""
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.name

    def load(
        self,
        labels: Mapping[str, int] | None = None,
        assume_spacing_mm: tuple[float, float, float] | None = None,
    ) -> Case:
        """Read image and label, check they belong together, return the `Case`.

        `labels` (name -> id) lists the ids a label map may hold; None skips that check.
        `assume_spacing_mm` replaces the stored voxel size of image and label alike (for
        datasets whose headers carry a wrong spacing), after their stored geometry has been
        checked against each other.
        """
        image = self._read(self.image_path, read_image)
        label: LabelMap | None = None
        if self.label_path is not None:
            label = self._read(self.label_path, read_label)
            self._check_geometry(image, label, self.label_path)
        elif self.label_parts:
            label = self._combine_parts(image, labels if labels is not None else GT_PART_LABELS)
        if label is not None and labels is not None:
            self._check_values(label, labels)
        if assume_spacing_mm is not None:
            image = with_spacing(image, assume_spacing_mm)
            label = with_spacing(label, assume_spacing_mm) if label is not None else None
        return Case(self.case_id, self.patient_id, image, label)

    def _error(self, path: Path, what: str, **parts: str | None) -> InputDataError:
        return InputDataError(f"case {self.case_id} ({self.name_of(path)}): {what}", **parts)

    def _scrub(self, text: str | None, path: Path) -> str | None:
        """Drop absolute paths a reader library may have put into its message."""
        if text is None:
            return None
        text = text.replace(str(path.resolve()), self.name_of(path))
        text = text.replace(str(path), self.name_of(path))
        return text.replace(str(path.parent.resolve()) + "/", "")

    def _read(self, path: Path, reader: Callable[[Path], V]) -> V:
        # An image may be a DICOM series folder; labels are always files.
        if not (path.is_file() or (path.is_dir() and path == self.image_path)):
            is_label = path != self.image_path
            raise self._error(
                path,
                "label file not found" if is_label else "image file not found",
                expected=f"{self.name_of(path)} in the dataset",
                found="no such file",
                fix="add the missing file, or remove the case from the dataset"
                + (" (a training case needs its label)" if is_label else ""),
            )
        if self.confined and self.root is not None and not is_inside(path, self.root):
            raise self._error(
                path,
                "file points outside the dataset (a symlink leading out of the dataset folder)",
                expected=f"{self.name_of(path)} resolving to a file inside {self.root.name}",
                found="a link whose target lies outside the dataset folder",
                fix="copy the file into the dataset instead of linking to it (links between "
                "files inside the dataset are fine)",
            )
        try:
            return reader(path)
        except InputDataError as exc:
            # io names the bare file; re-raise naming the case and the dataset-relative file.
            what = exc.what.removeprefix(f"{path.name}: ")
            raise self._error(
                path,
                what,
                expected=self._scrub(exc.expected, path),
                found=self._scrub(exc.found, path),
                fix=exc.fix,
            ) from None

    def _check_geometry(self, image: Volume, label: Volume, label_path: Path) -> None:
        if image.shape != label.shape:
            raise self._error(
                label_path,
                "label shape differs from the image shape",
                expected=f"shape {image.shape} (as {self.name_of(self.image_path)})",
                found=f"shape {label.shape}",
                fix="re-export the label on the image's grid; dentpy never resizes labels",
            )
        checks = (
            ("spacing (mm)", image.spacing_mm, label.spacing_mm, SPACING_ORIGIN_ATOL_MM),
            ("origin (mm)", image.origin_mm, label.origin_mm, SPACING_ORIGIN_ATOL_MM),
            ("direction", image.direction.ravel(), label.direction.ravel(), DIRECTION_ATOL),
        )
        for what, expected, found, atol in checks:
            if not np.allclose(expected, found, rtol=0.0, atol=atol):
                raise self._error(
                    label_path,
                    f"label {what} differs from the image",
                    expected=f"{_fmt(expected)} (as {self.name_of(self.image_path)}, ±{atol:g})",
                    found=_fmt(found),
                    fix="re-export the label with the image's header geometry "
                    "(e.g. copy the image's spacing/origin/direction onto the label)",
                )

    def _check_values(self, label: LabelMap, labels: Mapping[str, int]) -> None:
        present = present_values(label.array)
        unexpected = sorted(set(present) - set(labels.values()))
        if unexpected:
            shown = ", ".join(str(v) for v in unexpected[:20])
            more = f" and {len(unexpected) - 20} more" if len(unexpected) > 20 else ""
            declared = ", ".join(f"{v}={k}" for k, v in sorted(labels.items(), key=_by_id))
            path = self.label_path or self.label_parts[0][1]
            raise self._error(
                path,
                f"label map holds values that are not declared labels: {shown}{more}",
                expected=f"only the declared ids ({declared})",
                found=f"unexpected values {shown}{more}; all values present: "
                + ", ".join(str(v) for v in present[:20]),
                fix="declare these values in the dataset's label map, or remap the masks "
                "with an explicit label map (a 0/255 mask usually means 255 -> 1)",
            )

    def _combine_parts(self, image: Volume, labels: Mapping[str, int]) -> LabelMap:
        """One label map from per-class masks (voxels > 0 belong to the class)."""
        top = max(labels.values(), default=0)
        combined = np.zeros(image.shape, dtype=label_dtype(top))
        claimed = np.zeros(image.shape, dtype=bool)
        affine = image.affine
        done: list[str] = []
        for class_name, part_path in self.label_parts:
            if class_name not in labels:
                raise self._error(
                    part_path,
                    f"class {class_name!r} of this mask is not a declared label",
                    expected=f"a label map naming {class_name!r}",
                    found="declared: " + ", ".join(sorted(labels)),
                    fix=f"add {class_name!r} with its id to the dataset's label map",
                )
            part = self._read(part_path, read_label)
            self._check_geometry(image, part, part_path)
            mask = part.array > 0
            overlap = int(np.count_nonzero(mask & claimed))
            if overlap:
                raise self._error(
                    part_path,
                    f"mask {class_name!r} overlaps the mask of {', '.join(done)}",
                    expected="disjoint masks (one class per voxel)",
                    found=f"{overlap} voxels belong to both",
                    fix="correct the masks so that no voxel belongs to two classes",
                )
            combined[mask] = labels[class_name]
            claimed |= mask
            # The label keeps a label file's own header (equal to the image's within tolerance).
            affine = part.affine if not done else affine
            done.append(class_name)
        return LabelMap(array=combined, affine=affine)


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink followed, lies inside `root` (also resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def present_values(array: np.ndarray) -> list[int]:
    """Sorted distinct values of an integer label array (bincount: fast for 8/16-bit)."""
    if array.size == 0:
        return []
    if array.dtype.kind == "u" and array.dtype.itemsize <= 2:
        counts = np.bincount(array.ravel())
        return [int(v) for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(array)]


def checked_spacing(spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    """`spacing_mm` as three floats, or an error if it is not three positive sizes."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise InputDataError(
            "assumed voxel spacing is invalid",
            expected="three positive millimetre values, e.g. (0.3, 0.3, 0.3)",
            found=repr(spacing_mm),
            fix="pass the scanner's voxel size in millimetres",
        )
    return (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def with_spacing(volume: V, spacing_mm: tuple[float, float, float]) -> V:
    """The same voxels, direction and origin, with a different voxel size."""
    affine = volume.affine.copy()
    affine[:3, :3] = volume.direction * np.asarray(checked_spacing(spacing_mm))
    return type(volume)(array=volume.array, affine=affine)


def label_dtype(top: int) -> type[np.integer]:
    """The smallest unsigned dtype that holds label ids up to `top` (as io.read_label)."""
    return np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32


def _by_id(item: tuple[str, int]) -> int:
    return item[1]


def _fmt(values: object) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in np.asarray(values).ravel()) + ")"
