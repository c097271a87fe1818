"""Shared test helpers: the fuzz budget (RELIABILITY A11).

`DENTPY_FUZZ_EXAMPLES` scales every fuzz test: small by default so CI stays fast,
large under `make fuzz`. Hypothesis runs derandomized, so a CI run is reproducible.
"""

from __future__ import annotations

import os

import pytest

FUZZ_DEFAULT = 150


def fuzz_examples(default: int = FUZZ_DEFAULT) -> int:
    """Examples per fuzz test: `DENTPY_FUZZ_EXAMPLES` if set (>= 1), else `default`."""
    raw = os.environ.get("DENTPY_FUZZ_EXAMPLES", "").strip()
    try:
        return max(1, int(raw)) if raw else default
    except ValueError:
        return default


@pytest.fixture
def fuzz_budget() -> int:
    """How many examples each fuzz test runs (see `fuzz_examples`)."""
    return fuzz_examples()


# Tiny trained and evaluated runs of every task, shared by the tests that read run folders.
from run_fixtures import (  # noqa: E402, F401
    classification_runs,
    detection_run,
    fixture_root,
    instance_run,
    segmentation_runs,
    xray_data,
)
