"""dentpy: dental imaging from problem formulation to a trained, evaluated, usable model.

The public API is small and imports its heavy dependencies lazily, so `import dentpy`
stays fast::

    import dentpy
    spec = dentpy.load_spec("spec.yaml")
    run_dir = dentpy.train(spec)
    table = dentpy.evaluate(run_dir, split="test")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "load_spec", "measure_volumes", "predict", "train"]


def load_spec(path: Any, overrides: list[str] | None = None) -> Any:
    """Read and validate a problem spec (YAML) with optional `key=value` overrides."""
    from dentpy.spec import load_spec as _load

    return _load(path, overrides or [])


def train(spec: Any, **kwargs: Any) -> Any:
    """Train the model a spec describes; returns the run folder."""
    from dentpy.train import train as _train

    return _train(spec, **kwargs)


def evaluate(run_dir: Any, split: str = "test") -> Any:
    """Evaluate a run on a split; returns the per-case table."""
    from dentpy.evaluate import evaluate_run

    return evaluate_run(run_dir, split=split)


def predict(run_dir: Any, inputs: list[Any], out_dir: Any, **kwargs: Any) -> Any:
    """Segment new scans with a trained run; outputs keep each input's geometry."""
    from dentpy.inference import predict_files

    return predict_files(run_dir, inputs, out_dir, **kwargs)


def measure_volumes(mask_path: Any, instances: bool = False) -> Any:
    """Volume per label (and per connected instance) in voxels and mm³."""
    from dentpy.measure import volumes_of_file

    return volumes_of_file(mask_path, instances=instances)
