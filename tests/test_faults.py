"""Fault injection: lying volume headers under a 1 GB address-space limit (RELIABILITY.md
A8), and a training loss that turns NaN (A24)."""

from __future__ import annotations

import gzip
import json
import math
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from dentpy.errors import TrainingError

# --- A8: lying headers ---------------------------------------------------------------------

# The child imports everything a read needs, then limits its address space to 1 GB. It
# prints a dentpy error and exits 0; anything else (another exception, MemoryError escaping,
# a kill) is a failure of the promise.
CHILD = """
import resource, sys
import nibabel, SimpleITK  # imported before the limit: importing them needs room too
from dentpy.data import io
from dentpy.errors import DentpyError
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
try:
    volume = io.read_image(sys.argv[1])
except DentpyError as exc:
    print("DENTPY-ERROR")
    print(exc)
    sys.exit(0)
array = volume.array
print("READ", array.shape, array.dtype, float(array.min()), float(array.max()))
"""

# NIfTI-1 header field offsets (bytes).
DIM, VOX_OFFSET, SCL_SLOPE = 40, 108, 112


def nifti_bytes(edit: Any) -> bytes:
    """A valid 4x4x4 int16 NIfTI-1 (all ones) whose raw header `edit` then changes."""
    raw = bytearray(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)).to_bytes())
    edit(raw)
    return bytes(raw)


def claim_dims(*dims: int) -> Any:
    return lambda raw: struct.pack_into("<8h", raw, DIM, 3, *dims, 1, 1, 1, 1)


def claim_offset(offset: float) -> Any:
    return lambda raw: struct.pack_into("<f", raw, VOX_OFFSET, offset)


def claim_scaling(slope: float, inter: float) -> Any:
    return lambda raw: struct.pack_into("<2f", raw, SCL_SLOPE, slope, inter)


def write(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def read_limited(path: Path) -> str:
    """Read `path` in a child limited to 1 GB of address space; its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"child died ({result.returncode}):\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(params=[".nii", ".nii.gz"])
def suffix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_limited_child_reads_an_honest_file(tmp_path: Path, suffix: str) -> None:
    # The harness itself works under the limit: an honest file reads.
    out = read_limited(write(tmp_path / f"ok{suffix}", nifti_bytes(lambda raw: None)))
    assert out.startswith("READ (4, 4, 4) int16 1.0 1.0"), out


def test_header_claiming_60000_cubed_voxels_is_refused_before_allocating(
    tmp_path: Path, suffix: str
) -> None:
    # int16 dims stop at 32767, so the NIfTI-1 way to say "60000^3" is dims past 30000.
    path = write(tmp_path / f"huge{suffix}", nifti_bytes(claim_dims(30000, 30000, 30000)))
    out = read_limited(path)
    assert "DENTPY-ERROR" in out, out
    assert f"huge{suffix}: header claims an implausibly large volume" in out
    assert "(30000, 30000, 30000)" in out
    assert "MemoryError" not in out
    assert str(tmp_path) not in out


def test_nifti2_header_claiming_60000_cubed_voxels_is_refused(tmp_path: Path) -> None:
    image = nib.Nifti2Image(np.ones((4, 4, 4), np.int16), np.eye(4))
    raw = bytearray(image.to_bytes())
    struct.pack_into("<8q", raw, 16, 3, 60000, 60000, 60000, 1, 1, 1, 1)  # NIfTI-2 dim
    out = read_limited(write(tmp_path / "huge2.nii.gz", bytes(raw)))
    assert "DENTPY-ERROR" in out, out
    assert "header claims an implausibly large volume" in out
    assert "(60000, 60000, 60000)" in out


def test_header_claiming_more_data_than_the_file_holds_is_refused_before_allocating(
    tmp_path: Path, suffix: str
) -> None:
    path = write(tmp_path / f"short{suffix}", nifti_bytes(claim_dims(1000, 1000, 1000)))
    out = read_limited(path)
    assert "DENTPY-ERROR" in out, out  # holds today: the process survives
    assert "MemoryError" not in out, out  # fails today: it tried to allocate 2 GB first


def test_mha_header_claiming_more_data_than_the_file_holds_is_refused_before_allocating(
    tmp_path: Path,
) -> None:
    path = tmp_path / "short.mha"
    header = "ObjectType = Image\nNDims = 3\nDimSize = 1000 1000 1000\n"
    path.write_bytes((header + "ElementType = MET_SHORT\nElementDataFile = LOCAL\n").encode())
    with path.open("ab") as handle:
        handle.write(b"abcd")
    out = read_limited(path)
    assert "DENTPY-ERROR" in out, out  # holds today: the process survives
    assert "ImportImageContainer" not in out, out  # fails today: the allocation was tried


def test_mha_header_claiming_60000_cubed_voxels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.mha"
    header = "ObjectType = Image\nNDims = 3\nDimSize = 60000 60000 60000\n"
    path.write_bytes((header + "ElementType = MET_SHORT\nElementDataFile = LOCAL\n").encode())
    with path.open("ab") as handle:
        handle.write(b"abcd")
    out = read_limited(path)
    assert "DENTPY-ERROR" in out, out
    assert "header claims an implausibly large volume" in out
    assert "(60000, 60000, 60000)" in out


def test_voxel_offset_past_the_end_of_the_file_is_refused(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"offset{suffix}", nifti_bytes(claim_offset(1e9)))
    out = read_limited(path)
    assert "DENTPY-ERROR" in out, out
    assert f"offset{suffix}: voxel data is shorter than the header says" in out
    assert "MemoryError" not in out


def test_io_errors_name_no_absolute_path(tmp_path: Path) -> None:
    out = read_limited(write(tmp_path / "offset.nii", nifti_bytes(claim_offset(1e9))))
    assert "DENTPY-ERROR" in out, out
    assert str(tmp_path) not in out, out


def test_dataset_errors_for_a_lying_header_name_the_file_relative_to_the_dataset(
    tmp_path: Path, suffix: str
) -> None:
    from dentpy.data.case import CaseRecord
    from dentpy.errors import InputDataError

    root = tmp_path / "Dataset001_X"
    (root / "imagesTr").mkdir(parents=True)
    path = write(root / "imagesTr" / f"a_0000{suffix}", nifti_bytes(claim_offset(1e9)))
    with pytest.raises(InputDataError) as caught:
        CaseRecord("case-1", "case-1", path, root=root).load()
    message = str(caught.value)
    assert (
        f"case case-1 (imagesTr/a_0000{suffix}): voxel data is shorter than the header says"
        in message
    )
    assert str(tmp_path) not in message


@pytest.mark.parametrize("inter", [math.nan, math.inf])
def test_non_finite_intercept_is_refused(tmp_path: Path, suffix: str, inter: float) -> None:
    path = write(tmp_path / f"inter{suffix}", nifti_bytes(claim_scaling(2.0, inter)))
    out = read_limited(path)
    assert "DENTPY-ERROR" in out, out
    assert "invalid intercept" in out


@pytest.mark.parametrize("slope", [math.nan, math.inf, -math.inf])
def test_non_finite_slope_never_yields_non_finite_voxels(
    tmp_path: Path, suffix: str, slope: float
) -> None:
    # NIfTI readers (nibabel, ITK) treat a non-finite scl_slope as "no scaling" - nibabel
    # itself writes NaN there for unscaled data - so the stored voxels are read as they are.
    # What must never happen is NaN/Inf voxels reaching a model or a crash.
    path = write(tmp_path / f"slope{suffix}", nifti_bytes(claim_scaling(slope, 0.0)))
    out = read_limited(path)
    assert out.startswith("READ (4, 4, 4) int16 1.0 1.0"), out


def test_scaling_that_overflows_to_infinity_is_refused(tmp_path: Path) -> None:
    # A finite slope so large that scaled voxels overflow float32 -> refused as Inf voxels
    # (or read as finite float64 values); never Inf in the array.
    path = write(tmp_path / "big.nii.gz", nifti_bytes(claim_scaling(3e38, 3e38)))
    out = read_limited(path)
    if "DENTPY-ERROR" in out:
        assert "NaN or infinite voxels" in out
    else:
        values = [float(v) for v in out.split()[-2:]]
        assert all(math.isfinite(v) for v in values), out


# --- A24: NaN loss, and non-finite weights never saved as "best" ---------------------------


class _Schedule:
    lr = 0.01

    def step(self) -> None:
        return None

    def validated(self, score: float) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}


class _Stateless:
    def state_dict(self) -> dict[str, Any]:
        return {}


def _trainer(nan_at: int | None, hooks: list[Any] | None = None) -> Any:
    import torch

    from dentpy.engine.trainer import Trainer

    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 2, kernel_size=1)
    calls = {"n": 0}

    def loss_fn(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits, label)
        return loss * float("nan") if calls["n"] == nan_at else loss

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(1, 1, 4, 4, 4), torch.randint(0, 2, (1, 4, 4, 4))

    return Trainer(
        model=model,
        loss_fn=loss_fn,  # type: ignore[arg-type]
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        schedule=_Schedule(),  # type: ignore[arg-type]
        next_batch=next_batch,
        validate=lambda m: {"score": 0.5},
        hooks=hooks or [],
    )


def test_nan_loss_stops_training_naming_the_iteration() -> None:
    import torch

    trainer = _trainer(nan_at=3)
    with pytest.raises(TrainingError) as caught:
        trainer.fit(total_iterations=10, validate_every=100)
    message = str(caught.value)
    assert "training loss became nan at iteration 3" in message
    assert "fix:" in message and "lr" in message
    # The step that produced NaN was not applied: two good steps, finite weights.
    assert trainer.iteration == 2
    assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())


def test_a_finite_run_is_not_stopped() -> None:
    trainer = _trainer(nan_at=None)
    trainer.fit(total_iterations=5, validate_every=100)
    assert trainer.iteration == 5


def _setup(tmp_path: Path, trainer: Any) -> Any:
    from dentpy.engine.hooks import TrainingSetup
    from dentpy.engine.run import RunFolder

    return TrainingSetup(
        spec=None,  # type: ignore[arg-type]
        run=RunFolder(tmp_path / "run"),
        trainer=trainer,
        sampler=_Stateless(),
        augment=_Stateless(),
        identity={"spec": "test"},
    )


def _manifest(setup: Any, tag: str) -> dict[str, Any] | None:
    path = setup.run.checkpoints / f"{tag}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_non_finite_weights_are_never_saved_as_best(tmp_path: Path) -> None:
    import torch

    from dentpy.engine.hooks import CheckpointHook

    trainer = _trainer(nan_at=None)
    setup = _setup(tmp_path, trainer)
    hook = CheckpointHook(setup)

    trainer.iteration = 2
    hook.on_validation_end(trainer, {"score": 0.5})
    best = _manifest(setup, "best")
    assert best is not None and best["iteration"] == 2

    # Weights diverge to NaN; validation (on garbage) reports a higher score.
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    trainer.iteration = 4
    hook.on_validation_end(trainer, {"score": 0.99})

    assert _manifest(setup, "best") == best  # "best" still points at iteration 2
    assert setup.best_score == 0.5
    last = _manifest(setup, "last")
    assert last is not None and last["iteration"] == 4  # "last" records where training got


def test_non_finite_weights_from_the_start_never_create_a_best(tmp_path: Path) -> None:
    import torch

    from dentpy.engine.hooks import CheckpointHook

    trainer = _trainer(nan_at=None)
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("inf")
    setup = _setup(tmp_path, trainer)
    trainer.iteration = 2
    CheckpointHook(setup).on_validation_end(trainer, {"score": 0.9})
    assert _manifest(setup, "best") is None
    assert _manifest(setup, "last") is not None


def test_a_nan_score_is_never_best(tmp_path: Path) -> None:
    from dentpy.engine.hooks import CheckpointHook

    trainer = _trainer(nan_at=None)
    setup = _setup(tmp_path, trainer)
    trainer.iteration = 2
    CheckpointHook(setup).on_validation_end(trainer, {"score": math.nan})
    assert _manifest(setup, "best") is None
    assert setup.best_score == -1.0
