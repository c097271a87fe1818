"""Sliding-window inference with Gaussian blending, and predictions written back in the
input's own geometry (same shape, same affine), never an identity affine."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dentpy.data.volume import IntensityImage, LabelMap
from dentpy.errors import OutputError, SpecError
from dentpy.inference_window import Window, patch_window, window_for
from dentpy.preprocess import PreprocessPlan, prepare_image, probabilities_to_original
from dentpy.registry import did_you_mean

if TYPE_CHECKING:
    import torch

    from dentpy.engine.run import TrainedModel
    from dentpy.spec import Spec
    from dentpy.tasks.segmentation import SegmentationTask


def sliding_window_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    device: torch.device,
    sw_batch_size: int = 4,
    amp_dtype: torch.dtype | None = None,
    overlap: float | Sequence[float] = 0.5,
    mirror_swap: Sequence[int] | None = None,
) -> torch.Tensor:
    """Network-space image (I, J, K) -> softmax probabilities (C, I, J, K) on `device`,
    from windows of `patch_size` (the training patch, or a larger window: see
    dentpy.inference_window) overlapping by `overlap` (a share of the window, per axis).

    `mirror_swap` (class -> class after a left/right flip, the task's swap table) turns on
    mirror test-time augmentation: the left/right-flipped volume is predicted too, flipped
    back with its side-specific classes swapped (left IAN <-> right IAN, FDI 3x <-> 4x),
    and the two probability maps are averaged. Only the left/right axis is mirrored: it is
    the one flip training augments with; an upside-down jaw is not a plausible scan."""
    import torch
    from monai.inferers import sliding_window_inference

    from dentpy.augment import LEFT_RIGHT_AXIS
    from dentpy.engine.device import inference_memory_format_3d

    tensor = torch.from_numpy(np.array(image, dtype=np.float32))[None, None]
    tensor = tensor.to(device)
    layout = inference_memory_format_3d(device)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        # MONAI stacks the windows channels-first; the network's layout is the device's.
        return model(window.contiguous(memory_format=layout))

    # Volumes smaller than a patch are padded by MONAI and cropped back.
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    )

    def probabilities(volume: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast:
            logits = sliding_window_inference(
                volume,
                roi_size=tuple(patch_size),
                sw_batch_size=sw_batch_size,
                predictor=predictor,
                overlap=overlap,
                mode="gaussian",
            )
        if not isinstance(logits, torch.Tensor):  # MONAI's return type is a union
            raise TypeError(f"model returned {type(logits).__name__}, expected a tensor")
        return torch.softmax(logits[0].float(), dim=0)

    direct = probabilities(tensor)
    if mirror_swap is None:
        return direct
    axis = 2 + LEFT_RIGHT_AXIS
    mirrored = probabilities(tensor.flip(axis)).flip(axis - 1)
    # The flipped scan's class k is class swap[k] of the original (swap is an involution).
    swap = torch.as_tensor(list(mirror_swap), dtype=torch.long, device=mirrored.device)
    return 0.5 * (direct + mirrored[swap])


def predict_volume(
    model: torch.nn.Module,
    image: IntensityImage,
    plan: PreprocessPlan,
    patch_size: Sequence[int],
    device: torch.device,
    sw_batch_size: int = 4,
    amp_dtype: torch.dtype | None = None,
    mirror_swap: Sequence[int] | None = None,
    window: Callable[[Sequence[int]], Window] | None = None,
) -> LabelMap:
    """Class indices (I, J, K) in the input's own voxel grid and affine (`mirror_swap`:
    see `sliding_window_probabilities`). `window` chooses the sliding window for the
    network-space image's shape; without it, `patch_size` windows at 50% overlap."""
    network_image, orientation = prepare_image(image, plan)
    chosen = window(network_image.shape) if window else patch_window(patch_size)
    probabilities = sliding_window_probabilities(
        model,
        network_image,
        chosen.roi,
        device,
        sw_batch_size,
        amp_dtype,
        chosen.overlap,
        mirror_swap=mirror_swap,
    )
    labels = probabilities_to_original(probabilities, orientation)
    return LabelMap(array=labels, affine=image.affine)


def network_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    spec: Spec,
    out_channels: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """`sliding_window_probabilities` of a network-space image with the spec's window
    (`train.sw_window`) and window batch: what validation, pseudo-labels and the
    suspicious-label check predict with, as `dentpy predict` does."""
    chosen = window_for(spec, out_channels, image.shape, device)
    return sliding_window_probabilities(
        model, image, chosen.roi, device, spec.train.sw_batch_size, amp_dtype, chosen.overlap
    )


def predict_with_run(trained: TrainedModel, image: IntensityImage) -> LabelMap:
    """`predict_volume` with everything a trained run fixes: its preprocessing plan, patch,
    sliding window (`train.sw_window`) and window batch, device, precision and
    (postprocess.mirror_tta) mirror averaging."""
    spec = trained.spec
    out_channels = trained.task.out_channels
    return predict_volume(
        trained.model,
        image,
        trained.plan,
        spec.train.patch_size,
        trained.device,
        spec.train.sw_batch_size,
        trained.amp_dtype,
        mirror_swap=mirror_swap_for(spec, trained.task),
        window=lambda shape: window_for(spec, out_channels, shape, trained.device),
    )


def mirror_swap_for(spec: Spec, task: SegmentationTask) -> list[int] | None:
    """The swap table for mirror test-time augmentation when the spec asks for it."""
    if not spec.postprocess.mirror_tta:
        return None
    swap = task.swap_table()
    if swap is None:
        raise SpecError(
            "postprocess.mirror_tta needs a left/right swap of every side-specific class",
            expected="each left class paired with its right class (e.g. left_ian/right_ian)",
            found="a side-specific class without a partner",
            fix="set postprocess.mirror_tta: false, or learn both sides' classes",
        )
    return swap


def keep_largest_component(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """For each class index in `classes`, keep only its largest 26-connected component
    (the other components become background)."""
    import cc3d

    out = labels.copy()
    for c in classes:
        mask = labels == c
        if not mask.any():
            continue
        components = cc3d.connected_components(mask, connectivity=26)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[mask & (components != int(sizes.argmax()))] = 0
    return out


def postprocess(
    prediction: LabelMap, class_names: Sequence[str], keep_largest: Sequence[str]
) -> LabelMap:
    """Apply the spec's postprocessing (class indices are 1-based positions in class_names)."""
    if not keep_largest:
        return prediction
    indices = [class_names.index(name) + 1 for name in keep_largest]
    return LabelMap(
        array=keep_largest_component(prediction.array, indices), affine=prediction.affine
    )


def refuse_overwrites(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    """Refuse (before anything is written) if an output would replace an input, an existing
    file, or another output of the same run (two inputs with the same name).

    Paths are compared after following symlinks. Errors name the output folder and file,
    never an absolute path."""
    sources = {_resolved(path) for path in inputs}
    twice = Counter(_resolved(path) for path in outputs)
    for path in outputs:
        where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
        resolved = _resolved(path)
        if resolved in sources:
            raise OutputError(
                f"{where}: the output would overwrite an input",
                expected="an output folder apart from the inputs (or no input of that name)",
                found=f"{path.name} is one of the inputs",
                fix="choose another --out folder; dentpy never overwrites its inputs",
            )
        if path.exists() or path.is_symlink():
            raise OutputError(
                f"{where}: the output file already exists",
                expected=f"no {path.name} in the output folder",
                found=f"an existing {'folder' if path.is_dir() else 'file'} {path.name}",
                fix="choose another --out folder, or move the earlier file away; "
                "dentpy never overwrites files",
            )
        if twice[resolved] > 1:
            raise OutputError(
                f"{where}: two inputs would write the same output",
                expected="inputs with distinct names (the output is named after the input)",
                found=f"{twice[resolved]} inputs named {path.name.rsplit('_', 1)[0]!r}",
                fix="rename one of the inputs, or predict them into separate --out folders",
            )


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return path.absolute()


def predict_files(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    keep_largest: Sequence[str] | None = None,
    checkpoint: str = "best",
    overlay: bool = False,
    report: bool = False,
) -> list[Path]:
    """Segment each input volume with a trained run; writes `<name>_seg.nii.gz` per input.

    Each input is a volume file, a DICOM series folder, or a folder of those (as `dentpy
    data check` reads them). `keep_largest` lists classes reduced to their largest
    component; None uses the run's spec (`postprocess.keep_largest`). `overlay` also writes
    `<name>_overlay.png`. Semantic runs write class indices (1 = first class); instance
    runs write the dataset's label ids (a tooth's value is its FDI number, its pulp's
    100 + FDI), and `report` adds `<name>_teeth.csv` and `<name>_teeth.json` (per-tooth
    volumes, pulp/tooth ratio, apex-to-canal distance, numbering findings)."""
    from dentpy.data.io import read_image, write_volume
    from dentpy.data.layouts.files import read as read_scans
    from dentpy.engine.run import load_trained

    # All inputs are listed (and bad ones refused) before the model is loaded. Inputs are
    # named by the user one by one, so a symlink among them may lead anywhere.
    scans = [
        replace(record, confined=False)
        for path in inputs
        for record in read_scans(Path(path)).test_records
    ]
    # Every output name is checked before the model loads: nothing is ever overwritten.
    suffixes = ["_seg.nii.gz", *(["_overlay.png"] if overlay else [])]
    suffixes += ["_teeth.csv", "_teeth.json"] if report else []
    planned = [Path(out_dir) / f"{scan.source_name}{end}" for scan in scans for end in suffixes]
    refuse_overwrites(planned, [scan.image_path for scan in scans])
    trained = load_trained(Path(run_dir), checkpoint=checkpoint)
    instances = trained.task.instances is not None
    if report and not instances:
        raise SpecError(
            "--report lists teeth, and this run does not number teeth",
            expected="a run trained with objective.output: instance",
            found=f"a {trained.spec.objective.output} segmentation run",
            fix="measure structures with `dentpy volume FILE` instead",
        )
    written = []
    for scan in scans:
        image = read_image(scan.image_path)
        prediction = predict_with_run(trained, image)
        names = list(trained.task.class_names)
        chosen = trained.spec.postprocess.keep_largest if keep_largest is None else keep_largest
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise SpecError(
                f"--keep-largest names a class the run did not learn: {unknown[0]}",
                expected=f"some of: {', '.join(names)}",
                found=", ".join(unknown),
                fix=did_you_mean(unknown[0], names),
            )
        prediction = postprocess(prediction, names, chosen)
        stem = scan.source_name
        if instances:
            from dentpy.instances import instance_postprocess

            prediction, findings = instance_postprocess(prediction, trained.task)
        written.append(write_volume(prediction, Path(out_dir) / f"{stem}_seg.nii.gz"))
        if overlay and instances:
            from dentpy.report.instance_overlay import save_instance_overlay

            save_instance_overlay(image, prediction, Path(out_dir) / f"{stem}_overlay.png")
        elif overlay:
            from dentpy.report.overlay import save_overlay

            save_overlay(image, prediction, names, Path(out_dir) / f"{stem}_overlay.png")
        if report:
            from dentpy.report.teeth import write_teeth_report

            write_teeth_report(prediction, trained.task, findings, Path(out_dir) / stem)
    return written
