import json
from pathlib import Path

import pytest
import torch

from dentpy.engine.checkpoint import load_checkpoint, save_checkpoint
from dentpy.errors import CheckpointError

IDENTITY = {"spec": "abc", "data": "def"}


def _save(folder: Path, iteration: int, tags: tuple[str, ...] = ("last",)) -> None:
    weights = {"w": torch.full((3,), float(iteration))}
    state = {"iteration": iteration, "rng": torch.get_rng_state(), "list": [1, 2.0, "x"]}
    save_checkpoint(folder, iteration, weights, state, IDENTITY, tags=tags)


def test_round_trip_and_cleanup(tmp_path: Path) -> None:
    _save(tmp_path, 1, ("last", "best"))
    _save(tmp_path, 2)
    loaded = load_checkpoint(tmp_path, "last", IDENTITY)
    assert loaded.iteration == 2
    assert torch.equal(loaded.weights["w"], torch.full((3,), 2.0))
    assert load_checkpoint(tmp_path, "best").iteration == 1
    _save(tmp_path, 3, ("last", "best"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "best.json",
        "ckpt-00000003.safetensors",
        "ckpt-00000003.state.pt",
        "last.json",
    ]


def test_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path, "last")
    assert "no 'last' checkpoint" in error.value.what


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    manifest = json.loads((tmp_path / "last.json").read_text())
    path = tmp_path / manifest["weights"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path, "last")
    assert "missing or corrupt" in error.value.what
    assert error.value.found == "different content"


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path, "last", {"spec": "other", "data": "def"})
    assert "another spec" in error.value.what


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            import os

            return (os.system, (f"touch {sentinel}",))

    manifest = json.loads((tmp_path / "last.json").read_text())
    state_path = tmp_path / manifest["state"]
    torch.save({"iteration": 1, "evil": Evil()}, state_path)
    # An attacker who can write the file can also rewrite the manifest's hash.
    import hashlib

    manifest["state_sha256"] = hashlib.sha256(state_path.read_bytes()).hexdigest()
    (tmp_path / "last.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path, "last")
    assert "could not be loaded safely" in error.value.what
    assert not sentinel.exists()


def test_failed_write_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path, 1)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError) as error:
        _save(tmp_path, 2)
    monkeypatch.undo()
    assert "No space left on device" in (error.value.found or "")
    assert "previous checkpoint is intact" in (error.value.fix or "")
    assert load_checkpoint(tmp_path, "last").iteration == 1
    assert not list(tmp_path.glob(".*.tmp"))
    assert not list(tmp_path.glob("ckpt-00000002*"))


def test_leftovers_of_a_killed_write_are_removed_by_the_next_save(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    (tmp_path / ".ckpt-00000002.safetensors.tmp").write_bytes(b"half")
    _save(tmp_path, 2)
    assert not list(tmp_path.glob(".*.tmp"))
    assert load_checkpoint(tmp_path, "last").iteration == 2


def test_file_size_limit_during_save_is_reported_and_previous_kept(tmp_path: Path) -> None:
    """A real write failure (RLIMIT_FSIZE -> EFBIG) in a separate process."""
    import subprocess
    import sys

    script = f"""
import resource, signal, sys, torch
from pathlib import Path
from dentpy.engine.checkpoint import save_checkpoint
from dentpy.errors import CheckpointError
folder = Path({str(tmp_path)!r})
ident = {{"spec": "abc", "data": "def"}}
save_checkpoint(folder, 1, {{"w": torch.zeros(10)}}, {{"iteration": 1}}, ident)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    save_checkpoint(folder, 2, {{"w": torch.zeros(1_000_000)}}, {{"iteration": 2}}, ident)
except CheckpointError as exc:
    print(exc.what)
    sys.exit(3)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "could not write checkpoint ckpt-00000002" in result.stdout
    assert load_checkpoint(tmp_path, "last", IDENTITY).iteration == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-00000001.safetensors",
        "ckpt-00000001.state.pt",
        "last.json",
    ]
