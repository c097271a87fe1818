import numpy as np
import pytest
import torch

from dentpy.augment import BatchAugment, side_swap_table
from dentpy.spec import Augment


def test_swap_table_pairs_left_and_right() -> None:
    assert side_swap_table(["pulp", "left_ian", "right_ian"]) == [0, 1, 3, 2]
    assert side_swap_table(["pulp"]) == [0, 1]
    assert side_swap_table(["left_ian"]) is None  # a side without its partner cannot flip


def _flip_only() -> Augment:
    return Augment(
        flip_left_right=True,
        rotate_degrees=0,
        scale_range=(1, 1),
        intensity_scale=0,
        intensity_shift=0,
        gamma_range=(1, 1),
        noise_std=0,
        probability=0,
    )


def test_flip_mirrors_image_and_swaps_side_labels() -> None:
    augment = BatchAugment(_flip_only(), [0, 1, 3, 2], torch.device("cpu"), seed=0)
    image = torch.arange(16 * 8 * 8, dtype=torch.float32).reshape(1, 1, 16, 8, 8)
    label = torch.zeros(1, 1, 16, 8, 8, dtype=torch.uint8)
    label[0, 0, :4] = 2  # left canal on the low side of axis 0
    label[0, 0, -4:] = 3
    label[0, 0, 6:8] = 1
    params = augment.draw(1)
    params["flip"] = torch.tensor([True])
    out_image, out_label = augment.apply(image, label, params)
    assert torch.equal(out_image, image.flip(2))
    assert (out_label[0, 0, :4] == 2).all()  # the mirrored right canal is now labelled left
    assert (out_label[0, 0, -4:] == 3).all()
    assert (out_label[0, 0, 8:10] == 1).all()


def test_labels_stay_labels_under_rotation() -> None:
    cfg = Augment(rotate_degrees=30, probability=1.0)
    augment = BatchAugment(cfg, [0, 1], torch.device("cpu"), seed=1)
    image = torch.randn(2, 1, 16, 16, 16)
    label = (torch.rand(2, 1, 16, 16, 16) > 0.5).to(torch.uint8)
    _, out_label, params = augment(image, label)
    assert set(np.unique(out_label.numpy())) <= {0, 1}
    assert params["spatial"].all()


def test_same_seed_same_augmentation_and_state_round_trip() -> None:
    cfg = Augment(probability=1.0)
    image = torch.randn(2, 1, 16, 16, 16)
    label = torch.zeros(2, 1, 16, 16, 16, dtype=torch.uint8)
    a = BatchAugment(cfg, [0, 1], torch.device("cpu"), seed=3)
    state = a.state_dict()
    first, _, _ = a(image, label)
    a.load_state_dict(state)
    again, _, _ = a(image, label)
    assert torch.equal(first, again)


@pytest.mark.parametrize("names", [["tooth", "pulp"], ["pulp", "left_ian", "right_ian"]])
def test_flip_table_is_an_involution(names: list[str]) -> None:
    table = side_swap_table(names)
    assert table is not None
    assert [table[t] for t in table] == list(range(len(names) + 1))


def test_a_shrunk_patch_repeats_its_edges_instead_of_a_dark_frame() -> None:
    # Bright edges, dark centre: a fill with the minimum would put the dark value into the
    # frame that zooming out exposes, and a zero-filled label would mark it background.
    axis = torch.linspace(-1, 1, 16).abs()
    image = torch.maximum(axis.view(-1, 1, 1), axis.view(1, -1, 1)).expand(16, 16, 16)
    image = image.reshape(1, 1, 16, 16, 16).contiguous() + 1.0
    label = torch.ones(1, 1, 16, 16, 16, dtype=torch.uint8)
    aug = BatchAugment(Augment(probability=1.0), None, torch.device("cpu"), seed=0)
    params = aug.draw(1)
    params["spatial"] = torch.tensor([True])
    params["angles"] = torch.zeros(1, 3)
    params["scale"] = torch.tensor([0.7])  # zoom out: the patch samples past its edges
    for key in ("intensity", "gamma_on"):
        params[key] = torch.tensor([False])
    params["noise"] = torch.zeros(1)
    out_image, out_label = aug.apply(image, label, params)
    assert bool((out_label == 1).all())
    # The exposed frame keeps the edges' brightness (~2), never the centre's (~1).
    assert float(out_image[0, 0, 0, 0, 0]) > 1.9
    assert float(out_image[0, 0, :, :, 8].amin()) > 1.0


def test_noise_std_is_drawn_half_normally_as_the_spec_says() -> None:
    # The spec documents std = |N(0, 1)| x noise_std (not MONAI's uniform [0, std]): mean
    # noise_std * sqrt(2 / pi), and about a third of the patches above noise_std.
    aug = BatchAugment(Augment(noise_std=0.05), None, torch.device("cpu"), seed=0)
    drawn = aug.draw(20000)["noise"]
    assert bool((drawn >= 0).all())
    assert abs(float(drawn.mean()) - 0.05 * np.sqrt(2 / np.pi)) < 0.001
    assert 0.29 < float((drawn > 0.05).float().mean()) < 0.345
