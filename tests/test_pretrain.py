"""Self-supervised pretraining: block masks, the masked loss, NT-Xent, `dentpy pretrain` end
to end (3D masked reconstruction, 2D contrastive), and fine-tuning from its encoder."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dentpy.cli import app
from dentpy.errors import CheckpointError
from dentpy.pretrain.contrastive2d import nt_xent
from dentpy.pretrain.masking import batch_mask, block_mask, masked_mse
from dentpy.pretrained import load_pretrained, sha256_of
from dentpy.spec import load_spec

runner = CliRunner()
TINY_3D = [
    "train.patch_size=[16, 16, 16]",
    "model.channels=[4, 8]",
    "model.num_res_units=0",
    "train.sw_batch_size=2",
]
TINY_2D = ["model.name=tiny_cnn", "preprocess.image_size=[32, 32]"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# --- masks and losses ------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.25, 0.6, 0.75])
def test_block_mask_hides_the_requested_ratio_in_blocks(ratio: float) -> None:
    mask = block_mask((32, 32, 16), ratio, 8, torch.Generator().manual_seed(0))
    # 4 x 4 x 2 = 32 blocks: round(ratio * 32) of them hidden, exactly.
    assert mask.shape == (32, 32, 16)
    assert float(mask.float().mean()) == pytest.approx(round(ratio * 32) / 32)
    assert abs(float(mask.float().mean()) - ratio) <= 1 / 64
    # Whole 8-voxel blocks: each block is all hidden or all visible.
    blocks = mask.reshape(4, 8, 4, 8, 2, 8).float().mean(dim=(1, 3, 5))
    assert set(blocks.unique().tolist()) <= {0.0, 1.0}


def test_block_mask_ratio_holds_for_patches_that_do_not_divide() -> None:
    g = torch.Generator().manual_seed(3)
    masks = batch_mask(16, (20, 12, 28), 0.6, 8, g)
    assert masks.shape == (16, 1, 20, 12, 28) and masks.dtype == torch.bool
    assert float(masks.float().mean()) == pytest.approx(0.6, abs=0.07)


def test_block_mask_is_deterministic_per_seed() -> None:
    def draw(seed: int) -> torch.Tensor:
        return batch_mask(3, (16, 16, 16), 0.6, 4, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))
    # Samples of one batch get different masks.
    masks = draw(7)
    assert not torch.equal(masks[0], masks[1])


def test_masked_mse_counts_hidden_voxels_only() -> None:
    target = torch.arange(8, dtype=torch.float32).reshape(1, 1, 2, 2, 2)
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[0, 0, 0, 0, 1] = mask[0, 0, 1, 1, 1] = True  # values 1 and 7
    prediction = torch.zeros_like(target)
    assert float(masked_mse(prediction, target, mask)) == pytest.approx((1 + 49) / 2)
    # Whatever the network outputs at visible voxels does not matter...
    prediction[~mask] = 100.0
    assert float(masked_mse(prediction, target, mask)) == pytest.approx(25.0)
    # ...and a perfect reconstruction of the hidden ones scores 0.
    prediction[mask] = target[mask]
    assert float(masked_mse(prediction, target, mask)) == 0.0


def test_nt_xent_matches_a_hand_computed_value() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    t = 0.5
    # Unit vectors: a=(1,0), b=(0,1), c=(1,1)/sqrt2, d=(0,-1); views 0,1 | 2,3 = a,b | c,d.
    s = 1 / math.sqrt(2)
    cos = {
        (0, 1): 0.0,
        (0, 2): s,
        (0, 3): 0.0,
        (1, 2): s,
        (1, 3): -1.0,
        (2, 3): -s,
    }

    def sim(i: int, j: int) -> float:
        return cos[(min(i, j), max(i, j))] / t

    partner = {0: 2, 1: 3, 2: 0, 3: 1}
    losses = []
    for i in range(4):
        others = [j for j in range(4) if j != i]
        log_sum = math.log(sum(math.exp(sim(i, j)) for j in others))
        losses.append(log_sum - sim(i, partner[i]))
    expected = sum(losses) / 4
    assert float(nt_xent(z1, z2, t)) == pytest.approx(expected, rel=1e-5)


def test_masked_pretraining_loss_decreases_on_a_toy_volume() -> None:
    from dentpy.pretrain.masked3d import pretrain_masked
    from dentpy.spec import parse_spec

    torch.set_num_threads(2)
    # Smooth structure (blurred blobs) that can be inferred from the visible context.
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"), axis=-1)
    volume = np.zeros((24, 24, 24), dtype=np.float32)
    for _ in range(12):
        centre, radius = rng.uniform(0, 24, 3), rng.uniform(3, 6)
        volume += np.exp(-((grid - centre) ** 2).sum(-1) / (2 * radius**2)).astype(np.float32)
    volume = (volume - volume.mean()) / volume.std()
    spec = parse_spec(
        {
            "model": {"channels": [8, 16], "num_res_units": 0},
            "train": {"patch_size": [16, 16, 16]},
            "pretrain": {
                "iterations": 30,
                "batch_size": 2,
                "block_size": 4,
                "lr": 3e-3,
                "intensity_augment": False,
            },
        }
    )
    result = pretrain_masked(spec, [volume], torch.device("cpu"), show_progress=False)
    losses = [row[1] for row in result.log.rows]
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    # The held-out example is reconstructed better than by predicting the mean.
    assert result.example_loss < result.example_baseline_loss


# --- end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cbct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrain3d")
    os.environ["DENTPY_CACHE"] = str(root / "cache")
    invoke("synth", "cbct", "--out", str(root / "data"), "--cases", "5")
    invoke(
        "init",
        "--template",
        "pulp-cbct",
        "--data",
        "data/Dataset001_SynthCBCT",
        "--out",
        str(root / "spec.yaml"),
    )
    out = root / "pre"
    invoke(
        "pretrain",
        str(root / "spec.yaml"),
        *TINY_3D,
        "pretrain.iterations=3",
        "pretrain.batch_size=2",
        "--out",
        str(out),
        "--no-progress",
    )
    return root


def test_pretrain_3d_writes_the_folder(cbct: Path) -> None:
    out = cbct / "pre"
    for name in ("pretrain_spec.yaml", "encoder.safetensors", "pretrain_loss.csv"):
        assert (out / name).is_file(), name
    record = json.loads((out / "pretrain.json").read_text())
    assert record["method"] == "masked" and record["iterations"] == 3
    assert record["weights_sha256"] == sha256_of(out / "encoder.safetensors")
    assert record["signature"] == {
        "spatial_dims": 3,
        "model": "unet",
        "in_channels": 1,
        "channels": [4, 8],
        "num_res_units": 0,
    }
    assert record["excluded_output_layer"]  # the 1-channel reconstruction layer
    # Only the training split is read: never validation or test cases.
    spec = load_spec(cbct / "spec.yaml", TINY_3D)
    from dentpy.data.dataset import open_dataset
    from dentpy.train import make_splits

    splits = make_splits(spec, open_dataset(spec.input.data))
    assert record["data"]["train_split_images"] == len(splits["train"]) < 5
    assert record["data"]["labels_read"] is False
    rows = list(csv.DictReader((out / "pretrain_loss.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    picture = Image.open(out / "reconstruction.png")
    assert picture.width > 2 * picture.height  # three titled panels side by side


def test_fine_tune_3d_loads_the_encoder_and_refuses_another_architecture(cbct: Path) -> None:
    from safetensors.torch import load_file

    from dentpy.models import build_model

    spec = load_spec(cbct / "spec.yaml", [*TINY_3D, "model.pretrained=pre"])
    assert spec.model.pretrained == str((cbct / "pre").resolve())
    model = build_model(spec.model, 1, 3)
    info = load_pretrained(model, spec)
    saved = load_file(str(cbct / "pre" / "encoder.safetensors"))
    state = model.state_dict()
    assert info is not None and info["tensors_loaded"] == len(saved) > 4
    assert info["file"] == "encoder.safetensors" and str(cbct) not in json.dumps(info)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert info["tensors_not_in_checkpoint"]  # the 3-class output layer stays random

    other = load_spec(
        cbct / "spec.yaml", [*TINY_3D, "model.channels=[4, 16]", "model.pretrained=pre"]
    )
    with pytest.raises(CheckpointError, match="another architecture") as caught:
        load_pretrained(build_model(other.model, 1, 3), other)
    assert "channels [4, 16]" in caught.value.expected and "channels [4, 8]" in caught.value.found

    # Through `dentpy train`: the summary records the encoder (file name and hash only).
    invoke(
        "train",
        str(cbct / "spec.yaml"),
        *TINY_3D,
        "model.pretrained=pre",
        "train.iterations=2",
        "train.validate_every=2",
        "--runs",
        str(cbct / "runs"),
        "--no-progress",
    )
    summary = json.loads((cbct / "runs" / "pulp-cbct" / "train_summary.json").read_text())
    assert summary["pretrained"]["sha256"] == sha256_of(cbct / "pre" / "encoder.safetensors")
    assert summary["pretrained"]["tensors_loaded"] == len(saved)


def _image_folder(root: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = "caries" if i % 3 == 0 else "sound"
        image = rng.normal(2000, 300, (40, 36))
        if label == "caries":
            image[10:20, 4:12] -= 900
        path = root / label / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.clip(0, 4095).astype(np.uint16)).save(path)
    return root


def test_pretrain_2d_contrastive_then_fine_tune(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from dentpy.models2d import build_classifier

    _image_folder(tmp_path / "crops")
    (tmp_path / "unlabelled").mkdir()
    for i in range(5):
        pixels = np.random.default_rng(i).normal(2000, 300, (30, 30)).clip(0, 4095)
        Image.fromarray(pixels.astype(np.uint16)).save(tmp_path / "unlabelled" / f"u{i}.png")
    spec_path = tmp_path / "spec.yaml"
    invoke("init", "--template", "caries-binary", "--data", "crops", "--out", str(spec_path))
    out = tmp_path / "pre2d"
    invoke(
        "pretrain",
        str(spec_path),
        *TINY_2D,
        "pretrain.iterations=4",
        "pretrain.batch_size=8",
        "input.unlabeled=unlabelled",
        "--out",
        str(out),
        "--no-progress",
    )
    record = json.loads((out / "pretrain.json").read_text())
    assert record["method"] == "contrastive" and record["iterations"] == 4
    assert record["signature"] == {"spatial_dims": 2, "model": "tiny_cnn", "in_channels": 1}
    assert record["data"]["train_split_images"] < 24  # validation and test images left out
    assert record["data"]["unlabeled_images"] == 5
    assert math.isfinite(record["final_loss"])
    saved = load_file(str(out / "encoder.safetensors"))
    # The final linear layer (first layer of the projection head) is not kept.
    assert set(record["excluded_output_layer"]) == {"18.weight", "18.bias"}
    assert not set(saved) & set(record["excluded_output_layer"])

    spec = load_spec(spec_path, [*TINY_2D, "model.pretrained=pre2d"])
    model = build_classifier("tiny_cnn", 2)
    info = load_pretrained(model, spec)
    assert info is not None and info["tensors_loaded"] == len(saved)
    for name, tensor in saved.items():
        assert torch.equal(model.state_dict()[name], tensor), name

    wrong = load_spec(spec_path, ["model.name=resnet18", "model.pretrained=pre2d"])
    with pytest.raises(CheckpointError, match="another architecture"):
        load_pretrained(build_classifier("resnet18", 2), wrong)

    output = invoke(
        "train",
        str(spec_path),
        *TINY_2D,
        "model.pretrained=pre2d",
        "train.iterations=2",
        "train.validate_every=2",
        "train.batch_size=4",
        "--runs",
        str(tmp_path / "runs"),
        "--no-progress",
    )
    summary = json.loads((tmp_path / "runs" / "caries-binary" / "train_summary.json").read_text())
    assert summary["pretrained"]["tensors_loaded"] == len(saved)
    assert f"{len(saved)} tensors loaded, 0 skipped" in output


def test_missing_or_tampered_encoder_is_refused(tmp_path: Path) -> None:
    from dentpy.models2d import build_classifier
    from dentpy.spec import parse_spec

    spec = parse_spec(
        {
            "objective": {"task": "classification", "output": "binary"},
            "input": {"dimensionality": "2d"},
            "model": {"name": "tiny_cnn", "pretrained": str(tmp_path / "nothing")},
        }
    )
    with pytest.raises(CheckpointError, match="no pretrained encoder"):
        load_pretrained(build_classifier("tiny_cnn", 2), spec)
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "encoder.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "pre" / "pretrain.json").write_text(
        json.dumps({"weights": "encoder.safetensors", "weights_sha256": "0" * 64})
    )
    spec.model.pretrained = str(tmp_path / "pre")
    with pytest.raises(CheckpointError, match="corrupt or was replaced"):
        load_pretrained(build_classifier("tiny_cnn", 2), spec)
