"""Self-configuration (`dentpy plan`, "auto" sizes): from the dataset fingerprint and the
constraints to patch size, batch size, network widths and iterations, with a memory and
time estimate. See docs/planning.md.

inputs: what a plan is made from; network: depth/widths and tensor sizes; memory: the
peak-memory model; limits: the memory limit; steps/timing/measure: real training steps,
their time and peak memory; chooser: the rules; resolve: spec "auto" -> numbers;
from_spec: a plan straight from a spec file (the CLI)."""

from __future__ import annotations

from dentpy.planning.resolve import adopt_recorded_auto, has_auto, require_numbers, resolve_auto

__all__ = ["adopt_recorded_auto", "has_auto", "require_numbers", "resolve_auto"]
