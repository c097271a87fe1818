"""Preprocessed cases cached as .npy files and read back memory-mapped.

A cache entry is keyed by the input files' identity (resolved path, size, mtime), the
preprocessing plan and the class mapping, so changing any of them is a cache miss. Entries
are written under temporary names and renamed, with a small JSON marker written last: a
half-written or corrupt entry has no valid marker and is rebuilt. Two processes building
the same entry each write their own temporary files; the renames are atomic, so the last
one wins with identical content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dentpy.preprocess import PreprocessPlan, map_classes, prepare_image, prepare_label

# Foreground voxel positions kept per class for oversampling; enough to cover a structure.
MAX_FOREGROUND_POSITIONS = 20_000


@dataclass(frozen=True)
class PreparedCase:
    """One case in network space: image (I, J, K) float32, label (I, J, K) class indices,
    and sampled foreground positions (n, 3) per class (index 0 = class 1)."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    foreground: tuple[np.ndarray, ...]
    # The image's minimum (pads patches that leave the volume), recorded when the entry
    # is built, so that sampling never reads a whole memory-mapped volume to find it.
    # None for entries written before it was recorded.
    background: float | None = None
    # Voxels per class index (background first), recorded at build time for the same
    # reason: class sizes must not mean reading every label map. None: not recorded.
    class_counts: tuple[int, ...] | None = None


def release_pages(array: np.ndarray) -> None:
    """Drop a memory-mapped array's pages from this process's resident set.

    Reading a patch maps more of the file than the patch (the kernel maps pages around
    each fault), and mapped pages stay counted in the process's memory until unmapped, so
    resident memory would grow with every case sampled. MADV_DONTNEED only unmaps them:
    the file's pages stay in the page cache and the next read finds them there."""
    mapping = getattr(array, "_mmap", None)
    advise = getattr(mapping, "madvise", None)
    if advise is not None and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):  # closed map, unsupported platform
            advise(mmap.MADV_DONTNEED)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DENTPY_CACHE", Path.home() / ".cache" / "dentpy")) / "prepared"


def _identity(path: Path | None) -> list[object]:
    if path is None:
        return []
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def entry_key(
    record: object,
    plan: PreprocessPlan,
    class_ids: Sequence[Sequence[int]],
    context: object = None,
) -> str:
    image_path = record.image_path  # type: ignore[attr-defined]
    label_paths = [p for _, p in getattr(record, "label_parts", ())]
    label_path = record.label_path  # type: ignore[attr-defined]
    parts = [
        plan.key(),
        [list(ids) for ids in class_ids],
        _identity(image_path),
        _identity(label_path),
        [_identity(p) for p in label_paths],
        context,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _load_entry(folder: Path, key: str, case_id: str, n_classes: int) -> PreparedCase | None:
    marker = folder / f"{key}.json"
    try:
        meta = json.loads(marker.read_text())
        image = np.load(folder / f"{key}.image.npy", mmap_mode="r")
        label = np.load(folder / f"{key}.label.npy", mmap_mode="r")
        with np.load(folder / f"{key}.fg.npz") as fg:
            foreground = tuple(fg[f"class_{c}"] for c in range(1, n_classes + 1))
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    if meta.get("shape") != list(image.shape) or label.shape != image.shape:
        return None
    background = meta.get("background")
    counts = meta.get("class_counts")
    return PreparedCase(
        case_id,
        image,
        label,
        foreground,
        None if background is None else float(background),
        None if counts is None else tuple(int(c) for c in counts),
    )


def _foreground_positions(label: np.ndarray, n_classes: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(1, n_classes + 1):
        positions = np.argwhere(label == c).astype(np.int32)
        if len(positions) > MAX_FOREGROUND_POSITIONS:
            positions = positions[
                rng.choice(len(positions), MAX_FOREGROUND_POSITIONS, replace=False)
            ]
        out[f"class_{c}"] = positions
    return out


def prepare_case(
    record: object,
    plan: PreprocessPlan,
    class_ids: Sequence[Sequence[int]],
    cache_dir: Path,
    load: Callable[[], object],
    context: object = None,
) -> PreparedCase:
    """Return the cached network-space case, building it with `load()` on a miss.

    `context` is anything else `load` depends on (the dataset's label map, an assumed
    spacing); it must be JSON-serialisable and is part of the key."""
    key = entry_key(record, plan, class_ids, context)
    folder = cache_dir / plan.key()
    case_id = record.case_id  # type: ignore[attr-defined]
    cached = _load_entry(folder, key, case_id, len(class_ids))
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    case = load()
    image, orientation = prepare_image(case.image, plan)  # type: ignore[attr-defined]
    label = map_classes(np.asarray(case.label.array), [list(i) for i in class_ids])  # type: ignore[attr-defined]
    label = prepare_label(label, orientation, image.shape)
    _save_atomic(folder / f"{key}.image.npy", image)
    _save_atomic(folder / f"{key}.label.npy", label)
    fg_tmp = folder / f".{key}.fg.{os.getpid()}.tmp.npz"
    np.savez(fg_tmp, **_foreground_positions(label, len(class_ids), seed=0))  # type: ignore[arg-type]
    os.replace(fg_tmp, folder / f"{key}.fg.npz")
    marker_tmp = folder / f".{key}.{os.getpid()}.json.tmp"
    marker_tmp.write_text(
        json.dumps(
            {
                "shape": list(image.shape),
                "plan": plan.to_dict(),
                "background": float(np.min(image)),
                "class_counts": np.bincount(
                    np.asarray(label).ravel(), minlength=len(class_ids) + 1
                ).tolist(),
            }
        )
    )
    os.replace(marker_tmp, folder / f"{key}.json")
    loaded = _load_entry(folder, key, case_id, len(class_ids))
    if loaded is None:
        raise OSError(f"preprocessing cache entry could not be read back in {folder}")
    return loaded
