"""Data-parallel training (DDP under torchrun) on the CPU with gloo and 2 processes.

1. Equivalence: dentpy's Trainer made data-parallel by `distributed.prepare_trainer`, 2 ranks
   x batch b (each rank fed its half of a fixed global batch), gives the same weights and
   logged losses as 1 process x batch 2b; also with gradient accumulation (DDP no_sync).
2. End to end: `dentpy train SPEC --nproc-per-node 2` on the tiny synthetic CBCT profile:
   one run folder, one checkpoint set, a log without duplicate rows, world_size 2; resume.
3. One process: no process group, the model is not wrapped, nothing changes.
4. Shared validation: 2 ranks each predict their share of the validation cases, and both
   get exactly the scores of one process predicting all of them.

This file is also the worker script torchrun runs for (1): `python -m torch.distributed.run
--standalone --nproc-per-node 2 tests/test_distributed.py OUT`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

FAST = [
    "train.iterations=4",
    "train.validate_every=2",
    "train.patch_size=[32, 32, 32]",
    "model.channels=[8, 16, 32]",
    "train.sw_batch_size=2",
]
GLOBAL_BATCH = 4
STEPS = 5
# Plain SGD on a loss that is a mean over samples: the 2-rank and 1-process gradients
# differ only by float32 summation order (measured ~1e-8 on the weights after 5 steps).
TOLERANCE = 1e-5


class _ConstantSchedule:
    """The part of dentpy.optim.LRSchedule the Trainer uses, at a fixed LR."""

    lr = 0.1

    def step(self) -> None:
        return None

    def validated(self, score: float) -> None:
        return None


class _Record:
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.scores: list[float] = []

    def on_iteration_end(self, trainer: Any, loss: float) -> None:
        self.losses.append(loss)

    def on_validation_end(self, trainer: Any, scores: dict[str, float]) -> None:
        self.scores.append(scores["score"])


def train_fixed_stream(accumulate: int, second_forward: bool = False) -> dict[str, Any]:
    """STEPS SGD steps of a small 3D conv net on a fixed stream of global batches of
    GLOBAL_BATCH samples; under torchrun each rank trains on its own contiguous share,
    split into `accumulate` micro-batches. `second_forward`: a further loss term runs the
    network again on a second ("unlabelled") batch before the one backward, as a Mean
    Teacher does. Returns weights, logged losses, scores."""
    import torch

    from dentpy.engine import distributed
    from dentpy.engine.trainer import Trainer

    distributed.start("cpu")
    rank, world = distributed.rank(), distributed.world_size()
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 2, 1),
    )
    if rank != 0:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    share = GLOBAL_BATCH // world
    micro = share // accumulate
    calls = iter(range(10**6))

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = next(calls)
        step, part = divmod(index, accumulate)
        generator = torch.Generator().manual_seed(1000 + step)
        images = torch.randn(GLOBAL_BATCH, 1, 6, 6, 6, generator=generator)
        targets = torch.randn(GLOBAL_BATCH, 2, 6, 6, 6, generator=generator)
        lo = rank * share + part * micro
        return images[lo : lo + micro], targets[lo : lo + micro]

    def unlabelled_term(network: torch.nn.Module, iteration: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(5000 + iteration)
        images = torch.randn(GLOBAL_BATCH, 1, 6, 6, 6, generator=generator)
        return 0.5 * network(images[rank * share : (rank + 1) * share]).pow(2).mean()

    record = _Record()
    trainer = Trainer(
        model=model,
        loss_fn=torch.nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        schedule=_ConstantSchedule(),  # type: ignore[arg-type]
        next_batch=next_batch,
        # Differs per rank: every rank must end up with rank 0's scores.
        validate=lambda network: {"score": float(rank)},
        accumulate=accumulate,
        extra_loss=unlabelled_term if second_forward else None,
    )
    distributed.prepare_trainer(trainer)
    trainer.hooks = [record]
    trainer.fit(STEPS, STEPS)
    weights = trainer.exported().state_dict()
    return {
        "rank": rank,
        "world_size": world,
        "wrapped": type(trainer.model).__name__,
        "weights": {k: v.flatten().tolist() for k, v in weights.items()},
        "losses": record.losses,
        "scores": record.scores,
    }


def pretrain_fit_under_budget() -> dict[str, Any]:
    """dentpy.pretrain.loop.fit of a DDP-wrapped conv net on this rank's own random data,
    stopped by a 1-second budget that also drives the learning rate: returns the weights
    and the number of steps taken."""
    import torch

    from dentpy.engine import distributed
    from dentpy.pretrain.loop import fit

    distributed.start("cpu")
    rank = distributed.rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Conv3d(4, 1, 1))
    trained = distributed.data_parallel(model)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data

    def step(iteration: int) -> torch.Tensor:
        x = torch.randn(2, 1, 6, 6, 6, generator=generator)
        return (trained(x) - x).pow(2).mean()

    log = fit(model.parameters(), step, 10**6, 0.01, 0.0, 1 / 60, show_progress=False)
    weights = {k: v.flatten().tolist() for k, v in model.state_dict().items()}
    return {"weights": weights, "steps": len(log.rows), "losses": [r[1] for r in log.rows]}


VALIDATION_SHAPES = [(20, 16, 16), (32, 24, 16), (16, 16, 16), (40, 16, 24), (24, 24, 24)]


def validate_sharded() -> dict[str, Any]:
    """The segmentation task's validation of a small seeded network on 5 random cases of
    different sizes; under torchrun shared by the ranks. Returns the scores and the cases
    this process predicted."""
    import numpy as np
    import torch

    from dentpy.data.cache import PreparedCase
    from dentpy.engine import distributed
    from dentpy.models import build_model
    from dentpy.spec import Spec
    from dentpy.tasks.segmentation import SegmentationTask

    distributed.start("cpu")
    spec = Spec.model_validate(
        {
            "name": "v",
            "input": {"data": "unused"},
            "objective": {"classes": ["pulp", "canal"]},
            "model": {"channels": [4, 8, 16]},
            "train": {"patch_size": [16, 16, 16], "sw_window": "patch"},
        }
    )
    task = SegmentationTask(("pulp", "canal"), ((1,), (2,)))
    torch.manual_seed(0)  # the same network on every rank
    model = build_model(spec.model, in_channels=1, out_channels=task.out_channels).eval()
    rng = np.random.default_rng(0)
    cases = [
        PreparedCase(
            f"case{i}",
            rng.normal(size=shape).astype(np.float32),
            rng.integers(0, 3, size=shape).astype(np.uint8),
            (),
        )
        for i, shape in enumerate(VALIDATION_SHAPES)
    ]
    validation = task.validation(cases, spec, torch.device("cpu"), None)
    predicted: list[int] = []
    predict = validation.predict

    def recording(network: torch.nn.Module, indices: Any) -> list[Any]:
        predicted.extend(indices)
        return predict(network, indices)

    validation.predict = recording
    with torch.inference_mode():
        scores = validation(model)
    return {"scores": scores, "predicted": predicted}


def _max_difference(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    assert a.keys() == b.keys()
    return max(abs(x - y) for key in a for x, y in zip(a[key], b[key], strict=True))


def _torchrun(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def worker_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This file run as the worker of a 2-process torchrun: one JSON per rank and part."""
    out = tmp_path_factory.mktemp("ddp-worker")
    result = _torchrun(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(Path(__file__).resolve()),
            str(out),
        ],
        out,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_ranks_of_batch_b_match_one_process_of_batch_2b(worker_output: Path) -> None:
    for accumulate in (1, 2):
        ranks = [
            json.loads((worker_output / f"acc{accumulate}-rank{r}.json").read_text())
            for r in (0, 1)
        ]
        assert [r["world_size"] for r in ranks] == [2, 2]
        assert {r["wrapped"] for r in ranks} == {"DistributedDataParallel"}
        # DDP keeps the replicas identical, and rank 0's validation scores reach every rank.
        assert _max_difference(ranks[0]["weights"], ranks[1]["weights"]) == 0.0
        assert ranks[0]["scores"] == ranks[1]["scores"] == [0.0]
        assert ranks[0]["losses"] == ranks[1]["losses"]
        single = train_fixed_stream(accumulate=1)  # one process, the whole global batch
        difference = _max_difference(ranks[0]["weights"], single["weights"])
        print(
            f"accumulate {accumulate}: max |w_2x{GLOBAL_BATCH // 2} - w_1x{GLOBAL_BATCH}| "
            f"= {difference:.2e}"
        )
        assert difference < TOLERANCE
        # The logged loss is the mean over ranks = the whole batch's loss.
        for distributed_loss, single_loss in zip(ranks[0]["losses"], single["losses"], strict=True):
            assert distributed_loss == pytest.approx(single_loss, rel=1e-5)
        # And training moved the weights (the comparison is not between untouched copies).
        assert _max_difference(single["weights"], train_untrained_weights()) > 1e-3


@pytest.mark.slow
def test_a_second_forward_before_the_backward_matches_one_process(worker_output: Path) -> None:
    """A Mean Teacher runs the DDP-wrapped student on the labelled and on the unlabelled
    batch before one backward: DDP still averages the whole gradient exactly."""
    ranks = [json.loads((worker_output / f"twice-rank{r}.json").read_text()) for r in (0, 1)]
    assert _max_difference(ranks[0]["weights"], ranks[1]["weights"]) == 0.0
    single = train_fixed_stream(accumulate=1, second_forward=True)
    assert _max_difference(ranks[0]["weights"], single["weights"]) < TOLERANCE
    for distributed_loss, single_loss in zip(ranks[0]["losses"], single["losses"], strict=True):
        assert distributed_loss == pytest.approx(single_loss, rel=1e-5)
    # The second term changed training (else this would repeat the test above).
    assert _max_difference(single["weights"], train_fixed_stream(accumulate=1)["weights"]) > 1e-4


@pytest.mark.slow
def test_pretraining_ranks_stop_together_with_identical_weights(worker_output: Path) -> None:
    """The time budget sets pretraining's learning rate and its end: the ranks agree on the
    elapsed time, so they take the same learning rates and stop at the same step, and DDP
    keeps their weights identical although each saw other data."""
    ranks = [json.loads((worker_output / f"pretrain-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] > 2
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the ranks' mean
    assert _max_difference(ranks[0]["weights"], ranks[1]["weights"]) == 0.0


@pytest.mark.slow
def test_masked_pretraining_in_two_processes_writes_one_folder(cbct_workspace: Path) -> None:
    root = cbct_workspace
    done = _dentpy(
        root,
        "pretrain",
        "spec.yaml",
        "pretrain.iterations=4",
        "train.patch_size=[32, 32, 32]",
        "model.channels=[8, 16, 32]",
        "--out",
        "pretrained2",
        "--no-progress",
        "--nproc-per-node=2",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("pretraining folder: pretrained2") == 1  # rank 0 alone reports
    record = json.loads((root / "pretrained2" / "pretrain.json").read_text())
    assert record["world_size"] == 2 and record["iterations"] == 4
    rows = (root / "pretrained2" / "pretrain_loss.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["iteration", "1", "2", "3", "4"]
    assert (root / "pretrained2" / "encoder.safetensors").stat().st_size > 0


@pytest.mark.slow
def test_two_ranks_share_validation_and_get_one_process_scores(worker_output: Path) -> None:
    ranks = [json.loads((worker_output / f"validation-rank{r}.json").read_text()) for r in (0, 1)]
    shares = [set(r["predicted"]) for r in ranks]
    # Every case predicted once, by one rank; both ranks did some of the work.
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == set(range(5))
    assert all(shares)
    single = validate_sharded()  # one process: predicts every case
    assert sorted(single["predicted"]) == list(range(5))
    assert ranks[0]["scores"] == ranks[1]["scores"] == single["scores"]
    assert set(single["scores"]) == {"dice_pulp", "dice_canal", "score"}


def train_untrained_weights() -> dict[str, list[float]]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1)
    )
    return {k: v.flatten().tolist() for k, v in model.state_dict().items()}


def test_one_process_creates_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    from dentpy.engine import distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    result = train_fixed_stream(accumulate=1)
    assert not dist.is_initialized()
    assert result["wrapped"] == "Sequential"  # not wrapped in DDP
    assert result["world_size"] == 1 and result["scores"] == [0.0]
    assert distributed.rank_seed(123) == 123  # rank 0 / one process: the spec's seed
    assert distributed.all_reduce_mean(2.5) == 2.5 and distributed.any_rank(True)
    assert distributed.gather_all("x") == ["x"] and distributed.broadcast_from_main(7) == 7


def test_one_process_resumes_a_multi_process_checkpoint_from_rank_0s_streams() -> None:
    from dentpy.engine.hooks import own_streams

    rank0, rank1 = {"sampler": {"rng": 0}}, {"sampler": {"rng": 1}}
    state = {**rank0, "ranks": [rank0, rank1]}
    assert own_streams(state) is state  # world size 1 != 2: the top level (rank 0's)
    assert own_streams(rank0) is rank0  # a single-process checkpoint


def test_budget_stops_every_rank_when_any_rank_says_so() -> None:
    import time

    from dentpy.engine.hooks import BudgetHook

    class _Trainer:
        should_stop = False

    trainer = _Trainer()
    BudgetHook(60.0, time.monotonic()).on_iteration_end(trainer, 0.0)  # type: ignore[arg-type]
    assert not trainer.should_stop  # this rank's budget is not spent...
    agreed = BudgetHook(60.0, time.monotonic(), agree=lambda spent: True)
    agreed.on_iteration_end(trainer, 0.0)  # type: ignore[arg-type]
    assert trainer.should_stop  # ...but another rank's is


@pytest.fixture(scope="module")
def cbct_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    env_cache = {"DENTPY_CACHE": str(root / "cache")}
    for args in (
        ["synth", "cbct", "--out", "data", "--cases", "6", "--test-cases", "1"],
        ["init", "--template", "pulp-cbct", "--data", "data/Dataset001_SynthCBCT"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "dentpy.cli", *args],
            cwd=root,
            env={**os.environ, **env_cache},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    return root


def _dentpy(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DENTPY_CACHE": str(root / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "dentpy.cli", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_train_with_two_processes_writes_one_run_folder(cbct_workspace: Path) -> None:
    root = cbct_workspace
    done = _dentpy(
        root, "train", "spec.yaml", *FAST, "--runs", "runs", "--no-progress", "--nproc-per-node=2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("run folder: runs/pulp-cbct") == 1  # rank 0 alone reports
    run = root / "runs" / "pulp-cbct"
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["pulp-cbct"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["iterations"] == 4
    rows = (run / "training_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["iteration", "2", "4"]  # no duplicates
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == [
        "best.json",
        "ckpt-00000004.safetensors",
        "ckpt-00000004.state.pt",
        "last.json",
    ]
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    import torch

    state = torch.load(run / "checkpoints" / "ckpt-00000004.state.pt", weights_only=True)
    # Every rank's own sample stream is kept (and they differ), for an exact resume.
    assert len(state["ranks"]) == 2
    assert state["ranks"][0]["sampler"] == state["sampler"]
    assert state["ranks"][1]["sampler"] != state["sampler"]

    resumed = _dentpy(
        root,
        "train",
        "runs/pulp-cbct",
        "train.iterations=6",
        "--no-progress",
        "--resume",
        "--nproc-per-node=2",
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = (run / "training_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["iteration", "2", "4", "6"]
    assert json.loads((run / "train_summary.json").read_text())["iterations"] == 6


@pytest.mark.slow
def test_mean_teacher_trains_and_resumes_in_two_processes(cbct_workspace: Path) -> None:
    root = cbct_workspace
    semi = ["paradigm.kind=semi-supervised", "paradigm.labeled_fraction=0.5"]
    args = ["--runs", "runs", "--no-progress", "--nproc-per-node=2"]
    done = _dentpy(root, "train", "spec.yaml", *FAST, *semi, "--name", "mt2", *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = root / "runs" / "mt2"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["semi_supervised"]["method"] == "mean_teacher"
    import torch

    state = torch.load(run / "checkpoints" / "ckpt-00000004.state.pt", weights_only=True)
    # Each rank draws its own unlabelled patches, and a checkpoint keeps every rank's stream.
    own = [r["extra_streams"]["mean_teacher"]["sampler"] for r in state["ranks"]]
    assert own[0] == state["extra"]["mean_teacher"]["sampler"] and own[1] != own[0]

    resumed = _dentpy(root, "train", "runs/mt2", "train.iterations=6", "--resume", *args[2:])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = (run / "training_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["iteration", "2", "4", "6"]


@pytest.mark.slow
def test_auto_sizes_and_lr_are_planned_once_for_every_rank(cbct_workspace: Path) -> None:
    """ "auto" batch size and channels and `lr: auto` with two processes: every rank plans
    and runs the range test, rank 0's choice is broadcast, so both train the same sizes
    (a mismatch would hang DDP's first all-reduce) and one run folder records them."""
    root = cbct_workspace
    done = _dentpy(
        root,
        "train",
        "spec.yaml",
        *FAST,
        "train.batch_size=auto",
        "model.channels=auto",
        "constraints.memory_limit_gb=auto",
        "optimizer.lr=auto",
        "optimizer.lr_find_iterations=12",
        "optimizer.lr_find_max_lr=1.0",
        "--name",
        "auto2",
        "--runs",
        "runs",
        "--no-progress",
        "--nproc-per-node=2",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = root / "runs" / "auto2"
    recorded = yaml.safe_load((run / "spec.yaml").read_text())
    assert isinstance(recorded["train"]["batch_size"], int)
    assert isinstance(recorded["model"]["channels"], list)
    assert isinstance(recorded["optimizer"]["lr"], float)
    plan = json.loads((run / "plan.json").read_text())["auto_plan"]
    assert plan["chosen"]["train.batch_size"] == recorded["train"]["batch_size"]
    # Two processes on one CPU machine share its RAM: each plans with half of "auto".
    assert plan["memory_limit_rule"].endswith("/ 2 processes")
    assert json.loads((run / "lr_find.json").read_text())["suggestion"] > 0
    assert json.loads((run / "train_summary.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_pseudo_label_rounds_are_shared_by_two_processes(cbct_workspace: Path) -> None:
    """Each rank labels its share of the unlabelled cases into the run folder; every rank
    then trains on all of them, and the round's counts cover every case."""
    root = cbct_workspace
    semi = [
        "paradigm.kind=semi-supervised",
        "paradigm.labeled_fraction=0.5",
        "paradigm.method=pseudo_label",
        "paradigm.confidence_threshold=0.5",  # 2 classes: keeps every voxel, checkable
    ]
    args = ["--runs", "runs", "--no-progress", "--nproc-per-node=2"]
    done = _dentpy(root, "train", "spec.yaml", *FAST, *semi, "--name", "pl2", *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = root / "runs" / "pl2"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    (made,) = summary["semi_supervised"]["rounds"]
    files = sorted((run / "pseudo_labels" / f"round-{made['round']}").glob("*.npy"))
    assert made["cases"] == len(files) == summary["semi_supervised"]["n_unlabeled"] >= 2
    import numpy as np

    voxels = sum(int(np.load(f, mmap_mode="r").size) for f in files)
    assert made["voxels_total"] == made["voxels_kept"] == voxels  # every case counted once
    assert sum(made["voxels_kept_per_class"]) == voxels


if __name__ == "__main__":  # the torchrun worker for the equivalence test
    out = Path(sys.argv[1])
    for accumulate in (1, 2):
        result = train_fixed_stream(accumulate)
        (out / f"acc{accumulate}-rank{result['rank']}.json").write_text(json.dumps(result))
    from dentpy.engine import distributed

    pretrained = pretrain_fit_under_budget()
    (out / f"pretrain-rank{distributed.rank()}.json").write_text(json.dumps(pretrained))
    twice = train_fixed_stream(1, second_forward=True)
    (out / f"twice-rank{twice['rank']}.json").write_text(json.dumps(twice))
    validation = validate_sharded()
    (out / f"validation-rank{distributed.rank()}.json").write_text(json.dumps(validation))

    distributed.leave()
    distributed.end_process()  # as `dentpy train` ends its ranks (a gloo teardown can abort)
