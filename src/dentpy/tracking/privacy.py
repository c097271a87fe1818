"""What must never reach a tracker: filesystem paths, dataset folder and file names.

Two layers. Structured: the spec's path fields are withheld and the fingerprint's dataset
name is dropped before anything is written. Textual, as a safety net for every text file
staged for upload: any occurrence of those paths, of the dataset folder name and of the run
folder's own path is replaced. Per-case tables are not uploaded at all (see docs/tracking.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

WITHHELD = "(withheld)"
# Spec fields that hold local paths (a dataset, unlabelled images, pretrained weights) or a
# tracker location; they identify where data lives, so they are never logged.
PATH_FIELDS = ("input.data", "input.unlabeled", "model.pretrained", "tracking.mlflow_uri")
# Bare folder names too common to scrub from text without mangling it ("data": in JSON).
_GENERIC_NAMES = {
    "data",
    "dataset",
    "datasets",
    "images",
    "labels",
    "scans",
    "volumes",
    "home",
    "users",
    "work",
    "media",
    "mnt",
    "tmp",
    "var",
    "srv",
    "opt",
}
_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")
TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".csv", ".html", ".htm", ".txt", ".md"}


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def withhold_paths(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of the spec dict with every path field that is set replaced by WITHHELD."""
    copy = json.loads(json.dumps(spec))
    for dotted in PATH_FIELDS:
        *parents, last = dotted.split(".")
        node = copy
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(last) is not None:
            node[last] = WITHHELD
    return copy


def secrets_of(spec: dict[str, Any], run_dir: Path, fingerprint: dict[str, Any]) -> list[str]:
    """Strings to scrub from any text: the spec's paths (as written and resolved), their
    folder names when distinctive, the dataset name the fingerprint recorded, the run's path."""
    found: set[str] = {str(run_dir.resolve()), str(run_dir)}
    for dotted in PATH_FIELDS:
        value = _get(spec, dotted)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        found.update({value, str(path)})
        if path.is_absolute():
            found.add(str(path.resolve()))
        found.update(part for part in path.parts[1:] if _distinctive(part))
    dataset = fingerprint.get("dataset")
    if isinstance(dataset, str) and _distinctive(dataset):
        found.add(dataset)
    # Longest first, so a path is replaced whole before its parts.
    return sorted((s for s in found if len(s) > 1), key=len, reverse=True)


def _distinctive(name: str) -> bool:
    return len(name) >= 4 and name.lower() not in _GENERIC_NAMES and not name.startswith(".")


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, WITHHELD)
    return text


def scrub_paths(value: Any) -> Any:
    """Recursively replace string values that look like absolute paths."""
    if isinstance(value, dict):
        return {key: scrub_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_paths(item) for item in value]
    if isinstance(value, str) and _ABSOLUTE.match(value):
        return WITHHELD
    return value


def clean_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    # The dataset's folder name is how a site names its data (often after a study or a
    # person); the statistics without it are what a tracker needs.
    return scrub_paths({k: v for k, v in fingerprint.items() if k != "dataset"})


def spec_yaml(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(withhold_paths(spec), sort_keys=False)


def check_clean(path: Path, secrets: list[str]) -> None:
    """Last look at a staged text file: a leftover secret is replaced in place."""
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    cleaned = redact(text, secrets)
    if cleaned != text:
        path.write_text(cleaned, encoding="utf-8")
