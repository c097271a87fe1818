from pathlib import Path

import pytest

from dentpy.errors import SpecError
from dentpy.init import TEMPLATES, render, write_spec
from dentpy.registry import Registry
from dentpy.spec import Spec, apply_overrides, load_spec, parse_spec


def test_defaults_are_a_valid_spec() -> None:
    spec = parse_spec({})
    assert spec.model.name == "unet"
    assert spec.loss.name == "dice_ce"
    assert spec.objective.task == "segmentation"


def test_unknown_top_level_key_suggests_the_close_one() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({"optimiser": {"lr": 1e-3}})
    assert "unknown key 'optimiser'" in error.value.what
    assert error.value.fix == "did you mean 'optimizer'?"


def test_unknown_nested_key_lists_the_section_fields() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({"train": {"iteratons": 10}})
    assert "train.iteratons" in error.value.what
    assert "iterations" in (error.value.expected or "")
    assert error.value.fix == "did you mean 'iterations'?"


def test_invalid_value_names_the_field() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({"optimizer": {"lr": -1}})
    assert "optimizer.lr" in error.value.what


def test_patch_must_fit_the_network_depth() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(apply_overrides({}, ["train.patch_size=[60, 64, 64]"]))
    assert "divisible by 8" in (error.value.expected or "")
    assert "(64, 64, 64)" in (error.value.expected or "")


def test_overrides_are_yaml_literals_not_code() -> None:
    data = apply_overrides(
        {}, ["optimizer.lr=3e-4", "objective.classes=[pulp]", "name=__import__('os')"]
    )
    spec = parse_spec(data)
    assert spec.optimizer.lr == pytest.approx(3e-4)
    assert spec.objective.classes == ["pulp"]
    assert spec.name == "__import__('os')"


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(SpecError) as error:
        apply_overrides({}, ["optimizer.lr"])
    assert "key=value" in error.value.what


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_templates_load_and_resolve_data_relative_to_the_spec(
    tmp_path: Path, template: str
) -> None:
    path = write_spec(tmp_path / "spec.yaml", render(template, "x", "data"))
    spec = load_spec(path)
    assert Path(spec.input.data) == (tmp_path / "data").resolve()
    text = path.read_text()
    for section in ("objective:", "input:", "metrics:", "paradigm:", "constraints:", "evaluation:"):
        assert section in text
    assert text.index("objective:") < text.index("model:")


def test_init_never_overwrites(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "spec.yaml", "name: a\n")
    with pytest.raises(SpecError) as error:
        write_spec(path, "name: b\n")
    assert "already exists" in error.value.what
    assert path.read_text() == "name: a\n"


def test_registry_suggests_names() -> None:
    registry: Registry[int] = Registry("model")
    registry.register("unet")(1)
    with pytest.raises(SpecError) as error:
        registry.get("unte")
    assert error.value.fix == "did you mean 'unet'?"


@pytest.mark.parametrize(
    ("section", "name", "registry"),
    [
        ("model", "unet3", "model"),
        ("loss", "dice_cee", "loss"),
        ("optimizer", "adamm", "optimizer"),
    ],
)
def test_unknown_component_names_fail_with_suggestion(
    section: str, name: str, registry: str
) -> None:
    from dentpy.losses import build_loss
    from dentpy.models import build_model
    from dentpy.optim import build_optimizer

    spec = parse_spec({section: {"name": name}})
    with pytest.raises(SpecError) as error:
        if section == "model":
            build_model(spec.model, 1, 2)
        elif section == "loss":
            build_loss(spec.loss.name)
        else:
            build_optimizer([], spec.optimizer)
    assert f"unknown {registry} '{name}'" in error.value.what
    assert error.value.fix is not None and error.value.fix.startswith("did you mean")


def test_digest_ignores_nothing_by_default() -> None:
    a, b = Spec(), parse_spec({"optimizer": {"lr": 0.1}})
    assert a.digest() != b.digest()
    assert a.digest(exclude=("optimizer",)) == b.digest(exclude=("optimizer",))


def test_init_without_a_terminal_uses_the_default_formulation(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dentpy.cli import app

    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(app, ["init", "--out", str(out)], input="")
    assert result.exit_code == 0, result.output
    assert "stdin is not a terminal: using defaults" in result.output
    spec = load_spec(out)
    assert spec.objective.classes == ["pulp"]
    assert spec.train.iterations == 2000


def test_precision_choice() -> None:
    import torch

    from dentpy.engine.device import autocast_dtype, choose_device

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    assert choose_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert choose_device("auto") == cpu
        with pytest.raises(SpecError) as error:
            choose_device("cuda")
        assert "no CUDA GPU is available" in error.value.what


def test_memory_layout_is_each_devices_measured_winner() -> None:
    import torch

    from dentpy.engine.device import memory_format_3d

    # docs/performance.md: channels_last_3d ~10% faster on CPU, 5-41% slower on an H100.
    assert memory_format_3d(torch.device("cpu")) == torch.channels_last_3d
    assert memory_format_3d(torch.device("cuda")) == torch.contiguous_format
