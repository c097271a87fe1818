"""`dentpy plan` and "auto" sizes (dentpy.planning): deterministic choices, the memory limit,
divisibility, iterations from a time budget, the memory model against a measured peak, and
`auto` in a spec training end to end on the tiny synthetic profile."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import SpecError
from dentpy.planning.chooser import Constraints, apply_plan, choose
from dentpy.planning.inputs import PlanInputs
from dentpy.planning.memory import GIB, MIB
from dentpy.spec import Spec, parse_spec

AUTO = {
    "train": {"patch_size": "auto", "batch_size": "auto", "iterations": "auto"},
    "model": {"channels": "auto"},
}
# A CBCT-like dataset in network space: 20 cases of 160 x 128 x 96 voxels, pulp + background.
INPUTS = PlanInputs(
    target_spacing_mm=(0.3, 0.3, 0.3),
    median_shape=(160, 128, 96),
    n_train_cases=20,
    dataset_voxels=20 * 160 * 128 * 96,
    largest_case_voxels=180 * 140 * 100,
    out_channels=2,
)


def cpu(limit_gb: float, minutes: float | None = None) -> Constraints:
    return Constraints("cpu", False, int(limit_gb * GIB), f"{limit_gb} GiB", minutes)


def test_defaults_are_unchanged() -> None:
    spec = Spec()
    assert spec.train.patch_size == (64, 64, 64)
    assert spec.train.batch_size == 2 and spec.train.iterations == 1000
    assert spec.model.channels == [16, 32, 64, 128]
    assert spec.constraints.memory_limit_gb is None


def test_same_inputs_give_the_same_plan() -> None:
    spec = parse_spec(AUTO)
    first = choose(spec, INPUTS, cpu(2.0), time_per_iteration=None).to_dict()
    second = choose(parse_spec(AUTO), INPUTS, cpu(2.0), time_per_iteration=None).to_dict()
    assert first == second
    assert first["rules"]["train.iterations"].startswith("no constraints.time_budget_minutes")


@pytest.mark.parametrize("limit_gb", [0.7, 1.0, 2.0, 8.0])
def test_plan_fits_the_limit_and_the_network(limit_gb: float) -> None:
    plan = choose(parse_spec(AUTO), INPUTS, cpu(limit_gb))
    assert plan.memory.peak <= limit_gb * GIB
    assert plan.batch_size >= 2
    factor = 2 ** (len(plan.channels) - 1)
    assert all(side % factor == 0 for side in plan.patch_size), (plan.patch_size, factor)
    assert min(plan.patch_size) // factor >= 4  # bottleneck >= 4 voxels per axis
    assert all(p <= m for p, m in zip(plan.patch_size, INPUTS.median_shape, strict=True))
    # The resolved spec validates (patch divisible by the network's factor).
    resolved = apply_plan(parse_spec(AUTO), plan)
    parse_spec(resolved.to_dict())


def test_more_memory_never_gives_a_smaller_patch() -> None:
    volumes = [math.prod(choose(parse_spec(AUTO), INPUTS, cpu(g)).patch_size) for g in (0.7, 1, 2)]
    assert volumes == sorted(volumes) and volumes[0] < volumes[-1]
    # With room to spare, the patch is the median case shape (aspect follows the data).
    assert choose(parse_spec(AUTO), INPUTS, cpu(64)).patch_size == INPUTS.median_shape


def test_a_limit_nothing_fits_says_what_the_smallest_needs() -> None:
    with pytest.raises(SpecError) as caught:
        choose(parse_spec(AUTO), INPUTS, cpu(0.3))
    error = caught.value
    assert "no configuration fits" in str(error)
    assert "smallest configuration" in str(error.found) and "MiB" in str(error.found)
    assert "memory_limit_gb" in str(error.fix)


def test_fixed_sizes_are_kept_and_only_estimated() -> None:
    spec = parse_spec({"train": {"batch_size": 3, "patch_size": [64, 64, 32]}})
    plan = choose(spec, INPUTS, cpu(64))
    assert (plan.patch_size, plan.batch_size, plan.channels) == ((64, 64, 32), 3, [16, 32, 64, 128])
    assert plan.rules["train.patch_size"] == "from the spec"


def test_iterations_follow_the_time_budget() -> None:
    spec = parse_spec({**AUTO, "constraints": {"time_budget_minutes": 2}})
    plan = choose(spec, INPUTS, cpu(2.0, minutes=2), time_per_iteration=0.5)
    assert plan.iterations == int(2 * 60 * 0.8 / 0.5)
    assert plan.to_dict()["time"]["seconds_per_iteration"] == 0.5


def test_measured_validation_time_is_spread_over_the_validation_cadence() -> None:
    """With validation timed, 95% of the budget goes to steps plus validations: 2 min,
    0.5 s per step and 10 s per validation every 100 steps = 0.6 s per iteration."""
    spec = parse_spec({**AUTO, "constraints": {"time_budget_minutes": 2}})
    timed: list[object] = []

    def validation(resolved: object) -> float:
        timed.append(resolved)
        return 10.0

    plan = choose(spec, INPUTS, cpu(2.0, minutes=2), 0.5, validation)

    assert plan.iterations == int(2 * 60 * 0.95 / (0.5 + 10.0 / 100))
    assert len(timed) == 1 and "per validation" in plan.rules["train.iterations"]
    assert plan.to_dict()["time"]["seconds_per_validation"] == 10.0
    fixed = parse_spec({**AUTO, "train": {**AUTO["train"], "iterations": 50}})
    assert choose(fixed, INPUTS, cpu(2.0), None, validation).iterations == 50


def test_validation_timing_predicts_the_largest_case_and_scales_by_voxels() -> None:
    import torch

    from dentpy.planning.timing import seconds_per_validation

    spec = parse_spec(
        {
            **AUTO,
            "model": {"channels": [4, 8, 16]},
            "train": {"patch_size": [16, 16, 16], "batch_size": 2, "iterations": 5},
        }
    )
    shapes = [(32, 32, 16), (16, 16, 16)]
    state = torch.random.get_rng_state()
    seconds = seconds_per_validation(spec, 2, torch.device("cpu"), None, shapes)
    assert seconds > 0
    assert torch.equal(state, torch.random.get_rng_state())  # the run's stream is untouched
    assert seconds_per_validation(spec, 2, torch.device("cpu"), None, []) == 0.0


def test_shared_validation_is_timed_by_its_most_loaded_rank() -> None:
    from dentpy.planning.timing import ranked_voxels

    shapes = [(32, 32, 16), (16, 16, 16), (16, 16, 16), (16, 16, 8)]  # 16384, 4096 x2, 2048
    assert ranked_voxels(shapes, 1) == 16384 + 4096 + 4096 + 2048
    assert ranked_voxels(shapes, 2) == 16384  # the largest case alone outweighs the rest
    assert ranked_voxels([(16, 16, 16)] * 4, 2) == 2 * 4096
    assert ranked_voxels([(16, 16, 16)] * 3, 4) == 4096  # more ranks than cases


def test_auto_is_refused_outside_segmentation() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "objective": {"task": "classification", "output": "binary"},
                "input": {"dimensionality": "2d"},
                "train": {"batch_size": "auto"},
            }
        )
    assert "3D segmentation only" in caught.value.expected


def test_memory_estimate_is_within_25_percent_of_measured() -> None:
    """The memory model against the peak RSS of a process running 3 real training steps."""
    from dentpy.planning.measure import measure_peak

    spec = parse_spec(
        {
            "train": {"patch_size": [64, 64, 48], "batch_size": 2},
            "constraints": {"precision": "fp32", "threads": 1},
        }
    )
    plan = choose(spec, INPUTS, cpu(64))
    measured = measure_peak(spec.to_dict(), INPUTS.out_channels, "cpu", steps=3)
    ratio = plan.memory.training / measured["peak_bytes"]
    assert 0.75 <= ratio <= 1.25, (plan.memory.to_dict(), measured["peak_bytes"] / MIB)


runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plan")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    invoke("synth", "cbct", "--out", str(root / "D"), "--cases", "6", "--test-cases", "1")
    invoke("init", "--template", "pulp-cbct", "--data", "D", "--out", str(root / "spec.yaml"))
    return root


@pytest.mark.slow
def test_auto_sizes_train_end_to_end(workspace: Path) -> None:
    runs = workspace / "runs"
    invoke(
        "train",
        str(workspace / "spec.yaml"),
        "train.iterations=4",
        "train.validate_every=2",
        "train.sw_batch_size=2",
        "train.patch_size=auto",
        "train.batch_size=auto",
        "model.channels=auto",
        "constraints.memory_limit_gb=0.62",
        "--runs",
        str(runs),
        "--no-progress",
    )
    run = next(runs.iterdir())
    recorded = yaml.safe_load((run / "spec.yaml").read_text())
    auto_plan = json.loads((run / "plan.json").read_text())["auto_plan"]
    patch, channels = recorded["train"]["patch_size"], recorded["model"]["channels"]
    assert patch == auto_plan["chosen"]["train.patch_size"] and isinstance(patch[0], int)
    assert channels == auto_plan["chosen"]["model.channels"]
    assert recorded["train"]["batch_size"] == auto_plan["chosen"]["train.batch_size"] >= 2
    assert recorded["train"]["iterations"] == 4
    assert auto_plan["memory_estimate"]["peak_mib"] <= auto_plan["memory_limit_mib"]
    factor = 2 ** (len(channels) - 1)
    assert all(side % factor == 0 for side in patch)
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["iterations"] == 4


@pytest.mark.slow
def test_budget_planned_iterations_are_re_planned_from_the_measured_pace(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dentpy.planning.timing as timing

    measured = timing.seconds_per_iteration

    def slow_timing(*args: object, **kwargs: object) -> float:
        # The planner's few timed steps ran 4x slower than training will (a busy moment
        # on a shared machine): it plans too few iterations, and the pacer must add them.
        return 4 * measured(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(timing, "seconds_per_iteration", slow_timing)
    runs = workspace / "paced-runs"
    output = invoke(
        "train",
        str(workspace / "spec.yaml"),
        "train.iterations=auto",
        "train.validate_every=10",
        "train.patch_size=auto",
        "train.batch_size=auto",
        "model.channels=auto",
        "constraints.memory_limit_gb=0.62",
        "constraints.time_budget_minutes=0.4",
        "--runs",
        str(runs),
        "--no-progress",
    )
    run = next(runs.iterdir())
    planned = json.loads((run / "plan.json").read_text())["auto_plan"]["chosen"]["train.iterations"]
    summary = json.loads((run / "train_summary.json").read_text())
    pacing = summary["pacing"]
    assert pacing["planned_iterations"] == planned
    assert pacing["replans"] and pacing["replans"][0]["new_total"] > planned
    final = pacing["replans"][-1]["new_total"]
    # The run's spec.yaml holds the moved end, so --resume continues to it.
    assert yaml.safe_load((run / "spec.yaml").read_text())["train"]["iterations"] == final
    assert planned < summary["iterations"] <= final
    assert f"the plan's {planned} iterations became {final}" in output


@pytest.mark.slow
def test_plan_command_writes_json_and_refuses_to_overwrite(workspace: Path) -> None:
    out = workspace / "plan.json"
    args = ["plan", str(workspace / "spec.yaml"), "--memory-gb", "0.62", "--out", str(out)]
    printed = invoke(*args, "--minutes", "1", "train.sw_batch_size=2")
    plan = json.loads(out.read_text())
    assert set(plan["chosen"]) == {
        "preprocess.target_spacing_mm",
        "train.patch_size",
        "train.batch_size",
        "model.channels",
        "train.iterations",
    }
    assert plan["time"]["seconds_per_iteration"] > 0
    assert "estimated peak memory" in printed and "train.patch_size" in printed
    assert "D" not in plan["inputs"]["fingerprint"].get("dataset", "")
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    other = [*args, "--force", "objective.task=detection", "objective.output=boxes"]
    refused = runner.invoke(app, [*other, "input.dimensionality=2d"])
    assert refused.exit_code == 2 and "plans 3D segmentation" in refused.output


def test_a_resume_takes_the_numbers_the_run_started_with() -> None:
    from dentpy.planning import adopt_recorded_auto

    recorded = parse_spec(
        {
            "train": {"patch_size": [32, 32, 32], "batch_size": 3, "iterations": 7},
            "model": {"channels": [8, 16, 32]},
        }
    )
    spec = parse_spec(AUTO)
    adopt_recorded_auto(spec, recorded)
    assert spec.digest() == recorded.digest()


def test_auto_memory_limit_is_70_percent_of_total_ram() -> None:
    from dentpy.planning.limits import memory_limit, total_memory_bytes

    limit, rule = memory_limit("auto", "cpu")
    assert limit == int(0.7 * total_memory_bytes("cpu")) and "70%" in rule
    assert memory_limit(None, "cpu") == (limit, rule)
    assert memory_limit(2.5, "cpu")[0] == 2_500_000_000


def test_commands_that_do_not_plan_refuse_auto_sizes_clearly(tmp_path: Path) -> None:
    from dentpy.pretrain.run import pretrain
    from dentpy.spec import load_spec

    runner = CliRunner()
    spec = tmp_path / "spec.yaml"
    result = runner.invoke(app, ["init", "--template", "pulp-cbct", "--out", str(spec)])
    assert result.exit_code == 0, result.output
    text = spec.read_text()
    spec.write_text(text.replace("patch_size: [", "patch_size: auto #["))
    loaded = load_spec(spec)
    assert loaded.train.patch_size == "auto"
    with pytest.raises(SpecError, match=r"needs numbers for train\.patch_size"):
        pretrain(loaded, out=tmp_path / "pre", show_progress=False)
    result = runner.invoke(app, ["describe", str(spec)])
    assert result.exit_code == 2
    assert "`dentpy describe` needs numbers for train.patch_size" in result.output
    assert "dentpy plan SPEC" in result.output


def test_in_place_activations_are_not_counted_as_new_tensors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from dentpy.models import MODELS
    from dentpy.planning.network import network_sizes

    def probe(inplace: bool):
        def factory(in_channels: int, out_channels: int, _dims: int, _cfg: object):
            conv = torch.nn.Conv3d(in_channels, out_channels, 3, padding=1)
            return torch.nn.Sequential(conv, torch.nn.ReLU(inplace=inplace))

        return factory

    items = {**MODELS._items, "probe_copy": probe(False), "probe_inplace": probe(True)}
    monkeypatch.setattr(MODELS, "_items", items)
    patch = (8, 8, 8)
    copy = network_sizes("probe_copy", (4,), 0, 4, patch)
    inplace = network_sizes("probe_inplace", (4,), 0, 4, patch)
    voxels = 8 * 8 * 8
    assert copy.activation_elements == 2 * 4 * voxels  # conv output + ReLU's new tensor
    assert inplace.activation_elements == 4 * voxels  # ReLU writes into the conv output


def test_train_reports_its_peak_memory_next_to_the_plans_estimate() -> None:
    from dentpy.train import peak_memory_line

    plan = {"auto_plan": {"memory_estimate": {"peak_mib": 1624.0, "process_overhead": 500.0}}}
    cpu = {"peak_memory_mib": {"process_rss": 1522.4, "cuda_allocated": None}}
    assert peak_memory_line(cpu, plan) == (
        "peak memory 1522 MiB (process RSS) (the plan estimated 1624 MiB)"
    )
    assert peak_memory_line(cpu, {}) == "peak memory 1522 MiB (process RSS)"
    cuda = {"peak_memory_mib": {"process_rss": 2361.0, "cuda_allocated": 852.3}}
    plan["auto_plan"]["memory_estimate"]["process_overhead"] = 600.0
    assert peak_memory_line(cuda, plan) == (
        "peak GPU memory 852 MiB allocated by torch "
        "(the plan estimated 1024 MiB without the CUDA context)"
    )
    assert peak_memory_line({"iterations": 4}, plan) is None  # runs from before this field


def test_validation_memory_follows_the_window_sw_window_auto_chooses() -> None:
    """`sw_window: auto` predicts a large case in one window: its forward pass, not a
    patch's, is what validation adds to the peak, up to the window's memory budget."""
    from dentpy.inference_window import FORWARD_FIXED_BYTES
    from dentpy.planning.memory import WINDOW_OUTPUT_SHARE, MemoryInputs, estimate_memory
    from dentpy.planning.network import network_sizes

    patch = (64, 64, 64)
    case = 144 * 120 * 80
    sizes = network_sizes("unet", (16, 32, 64, 128), 2, 2, patch)
    per_voxel = 4 * sizes.activation_elements / 64**3

    def extra(window: object, budget: int) -> float:
        inputs = MemoryInputs("cpu", False, "adam", 2, 0, case, 4, window, budget)  # type: ignore[arg-type]
        return estimate_memory(sizes, patch, 2, inputs).validation_extra

    tiled = extra("patch", 0)
    whole = extra("auto", 4 * 2**30)
    arrays = case * 3 * 4 + case * 5
    training = 2 * (2.8 * per_voxel * 64**3 + 4 * 64**3 * 2 * 4 + 3 * 64**3 * 5)
    expected = arrays + FORWARD_FIXED_BYTES + WINDOW_OUTPUT_SHARE * per_voxel * case - training
    assert whole == pytest.approx(expected, rel=1e-6) and whole > tiled + 100 * 2**20
    # A budget that fits only part of the case: the window shrinks, and so does its memory.
    shrunk = extra("auto", FORWARD_FIXED_BYTES + int(per_voxel * case / 2))
    assert tiled < shrunk < whole
    # A budget below the patch's forward pass: validation tiles with the patch.
    assert extra("auto", FORWARD_FIXED_BYTES // 2) == tiled
