"""Dataset layouts: how the folders users bring map onto `CaseRecord`s.

One module per layout (`nnunet`, `pulpy`, `files`), each with `read(path) -> Dataset`;
`detect.detect_layout` picks one. This module holds what the layouts share: reading small
JSON/CSV side files with errors that teach, label maps, predefined splits and naming files
relative to the dataset root (errors never print absolute paths).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dentpy.errors import InputDataError, OutputError

# How many names an error lists before it says "and N more": enough to act on, short to read.
MAX_LISTED = 10


def relative_name(path: Path, root: Path) -> str:
    """`path` relative to the dataset root; the bare file name if it lies elsewhere."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def listing(names: Iterable[str], limit: int = MAX_LISTED) -> str:
    """A short, sorted, comma-separated list for error messages."""
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def visible_entries(folder: Path) -> list[Path]:
    """Folder entries, sorted, without hidden files (.DS_Store, editor swap files)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def read_json(path: Path, root: Path) -> Any:
    name = relative_name(path, root)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(
            f"{name}: cannot be read as JSON",
            expected="a valid UTF-8 JSON file",
            found=str(exc).splitlines()[0][:200],
            fix=f"repair {name} (a JSON validator shows the line)",
        ) from None


def parse_label_map(raw: Any, source: str) -> dict[str, int]:
    """Validate a `name -> id` label map; `id -> name` (MSD style) is accepted and inverted.

    Background 0 is always present in the result: every layout treats 0 as background, and
    callers rely on finding it in `Dataset.labels`.
    """
    if isinstance(raw, Mapping) and "labels" in raw and isinstance(raw["labels"], Mapping):
        raw = raw["labels"]
    if not isinstance(raw, Mapping) or not raw:
        raise InputDataError(
            f"{source}: no label map",
            expected='a JSON object of class name -> integer id, e.g. {"background": 0, "pulp": 1}',
            found=type(raw).__name__ if not isinstance(raw, Mapping) else "an empty object",
            fix=f"write the label map into {source}",
        )
    regions = [str(k) for k, v in raw.items() if isinstance(v, (list, tuple))]
    if regions:
        raise InputDataError(
            f"{source}: region-based labels are not supported yet",
            expected="one integer id per class name",
            found=f"lists of ids for {listing(regions)}",
            fix="use one id per class (region-based training is planned, not built)",
        )
    inverted = all(_is_int_text(k) for k in raw) and all(isinstance(v, str) for v in raw.values())
    pairs = [(str(v), int(str(k))) for k, v in raw.items()] if inverted else list(raw.items())
    labels: dict[str, int] = {}
    for name, value in pairs:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputDataError(
                f"{source}: label {name!r} has an invalid id",
                expected="a non-negative integer id",
                found=repr(value),
                fix="give every class an integer id (0 = background)",
            )
        labels[str(name)] = value
    by_id: dict[int, list[str]] = {}
    for name, value in labels.items():
        by_id.setdefault(value, []).append(name)
    shared = {v: names for v, names in by_id.items() if len(names) > 1}
    if shared:
        value, names = next(iter(sorted(shared.items())))
        raise InputDataError(
            f"{source}: two classes share one id",
            expected="a distinct id per class",
            found=f"id {value} used by {listing(names)}",
            fix="give each class its own id, or merge the classes under one name",
        )
    if 0 not in by_id:
        labels = {"background": 0, **labels}
    return dict(sorted(labels.items(), key=lambda item: item[1]))


def _is_int_text(key: object) -> bool:
    return isinstance(key, str) and key.strip().isdigit()


def read_splits(path: Path, root: Path, case_ids: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Read `splits.json` ({"train": [names], "val": [...], "test": [...]}) as case ids.

    `case_ids` maps the names the file may use (folder or case names) to pseudonymous ids;
    the result holds only ids, so split files written later carry no patient names.
    """
    name = relative_name(path, root)
    raw = read_json(path, root)
    if not isinstance(raw, Mapping) or not all(isinstance(v, list) for v in raw.values()):
        raise InputDataError(
            f"{name}: unexpected structure",
            expected='{"train": [case names], "val": [...], "test": [...]}',
            found=type(raw).__name__,
            fix="write one list of case (folder) names per split",
        )
    splits: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for split, entries in raw.items():
        ids: list[str] = []
        for entry in entries:
            text = str(entry)
            # A split file names cases, never paths: '../x' or '/x' would point outside the root.
            if text not in case_ids:
                raise InputDataError(
                    f"{name}: split {split!r} names a case that is not in the dataset",
                    expected=f"one of the {len(case_ids)} case names in {root.name}",
                    found=repr(text),
                    fix="fix the name in the split file, or add the missing case",
                )
            if text in seen:
                raise InputDataError(
                    f"{name}: case {text!r} appears in two splits",
                    expected="each case in exactly one split",
                    found=f"in {seen[text]!r} and {split!r}",
                    fix="remove the duplicate entry; a case in two splits leaks test data",
                )
            seen[text] = str(split)
            ids.append(case_ids[text])
        splits[str(split)] = tuple(ids)
    return splits


def require_one_channel(
    meta: Mapping[str, Any],
    key: str,
    example: str,
    refusal: str,
    unit: str,
    plural: str,
    fix: str,
) -> None:
    """dataset.json's channel list (`channel_names` in nnU-Net v2, `modality` in MSD) must
    name exactly one input: multi-channel input is planned, not silently half-read."""
    channels = meta.get(key)
    if not isinstance(channels, Mapping) or not channels:
        raise InputDataError(
            f"dataset.json: {key} missing",
            expected=example,
            found=repr(channels)[:100],
            fix=f"add {key} with one entry per input channel",
        )
    if len(channels) != 1:
        raise InputDataError(
            f"dataset.json: {refusal}",
            expected=f"exactly one {unit}",
            found=f"{len(channels)} {plural}: {', '.join(map(str, channels.values()))}",
            fix=fix,
        )


def optional_splits(root: Path, names: Iterable[str]) -> dict[str, tuple[str, ...]] | None:
    """The dataset's own splits.json as case ids, or None when it has none."""
    from dentpy.data.case import pseudonym

    if not (root / "splits.json").is_file():
        return None
    return read_splits(root / "splits.json", root, {n: pseudonym(n) for n in names})


def check_destination(dst: Path) -> None:
    """A converted dataset goes to a new folder in an existing parent; nothing is overwritten."""
    if dst.exists() or dst.is_symlink():
        raise OutputError(
            f"{dst.name} already exists",
            expected="a destination that does not exist yet (dentpy never overwrites data)",
            found="an existing " + ("folder" if dst.is_dir() else "file"),
            fix="choose a new destination, or delete the old one first",
        )
    if not dst.parent.is_dir():
        raise OutputError(
            f"{dst.name}: its parent folder does not exist",
            expected="an existing parent folder",
            found="no such folder",
            fix="create the parent folder first",
        )


def named_cases(
    paths: Iterable[Path], root: Path, suffix_of: Callable[[Path], str], kind: str
) -> list[tuple[Path, str, str]]:
    """(path, case name, case id) per file: the name is the file name without its suffix.

    Two files giving one name (scan.nii and scan.nii.gz) would be one case twice; refused.
    `kind` names the files in the error ("scans", "images").
    """
    from dentpy.data.case import pseudonym

    named: list[tuple[Path, str, str]] = []
    seen: dict[str, str] = {}
    for path in paths:
        name = path.name[: len(path.name) - len(suffix_of(path))]
        case_id = pseudonym(name)
        if case_id in seen:
            raise InputDataError(
                f"{relative_name(path, root)}: two {kind} give the same case name",
                expected="one file per case name (the file name without its suffix)",
                found=f"{seen[case_id]} and {relative_name(path, root)}",
                fix="rename or remove one of them",
            )
        seen[case_id] = relative_name(path, root)
        named.append((path, name, case_id))
    return named


def find_dataset_json_root(path: Path, prefix: str, kind: str) -> Path | None:
    """The folder holding dataset.json: `path` itself, or its only `<prefix>*` child with one
    (nnU-Net `Dataset*`, MSD `Task*`). Several candidates are an error, never a guess."""
    if (path / "dataset.json").is_file():
        return path
    if not path.is_dir():
        return None
    candidates = [
        p
        for p in visible_entries(path)
        if p.is_dir() and p.name.startswith(prefix) and (p / "dataset.json").is_file()
    ]
    if len(candidates) > 1:
        raise InputDataError(
            f"{path.name}: holds several {kind}",
            expected=f"one {prefix} folder (or the path of the one to use)",
            found=listing(p.name for p in candidates),
            fix=f"pass the path of the {prefix} folder you mean",
        )
    return candidates[0] if candidates else None
