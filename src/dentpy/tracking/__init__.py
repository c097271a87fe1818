"""Experiment tracking: log a run folder to MLflow and/or Weights & Biases.

TensorBoard needs nothing here: training writes RUN/tensorboard itself. `sync_run` reads
what a run folder holds (spec, curves, evaluation, report, model) and logs it, leaving out
every filesystem path and dataset name (see docs/tracking.md). The trackers are imported
only when a run asks for them.
"""

from __future__ import annotations

from dentpy.tracking.sync import configured_backends, summary_lines, sync_run

__all__ = ["configured_backends", "summary_lines", "sync_run"]
