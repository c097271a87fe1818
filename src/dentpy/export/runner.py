"""Run an exported model (ONNX through onnxruntime, or TorchScript) with dentpy's own
preprocessing and decoding, as the card describes them.

    from dentpy.export import ExportedModel
    model = ExportedModel.load("runs/pulp-cbct/export/onnx")
    result = model.predict_case("scan.nii.gz")      # segmentation / instance runs
    result.labels.array, result.probabilities       # file-order labels, network-space probs

The model file's sha256 is checked against the card before it is opened.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dentpy.errors import CheckpointError, SpecError

if TYPE_CHECKING:
    from dentpy.data.image2d import Image2D
    from dentpy.data.volume import IntensityImage, LabelMap

CARD_JSON = "model_card.json"
Backend = Callable[[np.ndarray], np.ndarray]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_backend(fmt: str, path: Path) -> Backend:
    """(N, 1, ...) float32 -> logits float32, through onnxruntime or torch.jit."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT's graph warnings mean nothing here
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(batch: np.ndarray) -> np.ndarray:
            feed = {name: np.ascontiguousarray(batch, dtype=np.float32)}
            return np.asarray(session.run(None, feed)[0], dtype=np.float32)

        return run_onnx
    if fmt == "torchscript":
        import torch

        module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_script(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
                return np.asarray(module(tensor).float().numpy())

        return run_script
    raise SpecError(
        f"unknown export format '{fmt}'",
        expected="onnx or torchscript",
        found=fmt,
        fix="pass --format onnx or --format torchscript",
    )


@dataclass(frozen=True)
class SegmentationPrediction:
    probabilities: np.ndarray  # (C, I', J', K') softmax in network space (canonical, resampled)
    class_map: LabelMap  # class indices (0 = background) in the input's grid, before postprocess
    labels: LabelMap  # after the card's postprocessing; instance runs: dataset label ids (FDI)


@dataclass(frozen=True)
class ClassPrediction:
    probabilities: np.ndarray  # (C,) in the card's class order
    predicted: str
    threshold: float | None  # binary runs: the decision threshold on the positive class


@dataclass(frozen=True)
class BoxPrediction:
    boxes: np.ndarray  # (K, 4) xyxy in the image's own pixels
    scores: np.ndarray
    labels: list[str]


@dataclass(frozen=True)
class ExportedModel:
    folder: Path
    card: dict[str, Any]
    backend: Backend

    @classmethod
    def load(cls, folder: str | Path) -> ExportedModel:
        folder = Path(folder)
        card_path = folder / CARD_JSON
        if not card_path.is_file():
            raise CheckpointError(
                f"{folder.name}: no {CARD_JSON}",
                expected="a folder written by `dentpy export`",
                found=f"no {CARD_JSON}",
                fix="pass the folder `dentpy export` printed (e.g. RUN/export/onnx)",
            )
        card = json.loads(card_path.read_text())
        export = card["export"]
        model_path = folder / export["file"]
        if not model_path.is_file() or sha256_of(model_path) != export["sha256"]:
            raise CheckpointError(
                f"{folder.name}/{export['file']} is missing or was changed after export",
                expected=f"sha256 {export['sha256'][:16]}… (from {CARD_JSON})",
                found="missing file" if not model_path.is_file() else "different content",
                fix="export again with `dentpy export RUN --force`",
            )
        return cls(folder, card, open_backend(export["format"], model_path))

    @property
    def task(self) -> str:
        return str(self.card["task"])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.backend(batch)

    # -- 3D segmentation -------------------------------------------------------------

    def predict_case(
        self, image: IntensityImage | str | Path, postprocess: bool = True
    ) -> SegmentationPrediction:
        """dentpy's preprocessing (canonical orientation, per-case clip + z-score,
        resampling), MONAI's Gaussian sliding window over the exported network, softmax,
        argmax in the input's own grid; then the card's postprocessing."""
        import torch
        from monai.inferers import sliding_window_inference

        from dentpy.data.io import read_image
        from dentpy.data.volume import LabelMap
        from dentpy.preprocess import PreprocessPlan, prepare_image, probabilities_to_original

        self._require("segmentation", "instance segmentation")
        volume = read_image(Path(image)) if isinstance(image, (str, Path)) else image
        prep = self.card["preprocessing"]
        window = prep["sliding_window"]
        network, orientation = prepare_image(volume, PreprocessPlan.from_dict(prep["plan"]))

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(self.backend(batch.cpu().numpy()))

        tensor = torch.from_numpy(np.asarray(network, dtype=np.float32))[None, None]
        with torch.inference_mode():
            logits = sliding_window_inference(
                tensor,
                roi_size=tuple(window["roi_size"]),
                sw_batch_size=int(window["sw_batch_size"]),
                predictor=predictor,
                overlap=float(window["overlap"]),
                mode=str(window["mode"]),
                sigma_scale=float(window["sigma_scale"]),
            )
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"sliding window returned {type(logits).__name__}")
        probabilities = torch.softmax(logits[0].float(), dim=0)
        classes = probabilities_to_original(probabilities, orientation)
        class_map = LabelMap(array=classes, affine=volume.affine)
        labels = self._postprocess(class_map) if postprocess else class_map
        return SegmentationPrediction(probabilities.numpy(), class_map, labels)

    def _postprocess(self, class_map: LabelMap) -> LabelMap:
        from dentpy.inference import postprocess
        from dentpy.tasks.segmentation import SegmentationTask

        task = SegmentationTask.from_dict(self.card["decoding"]["task_plan"])
        keep = self.card["postprocessing"]["keep_largest"]
        result = postprocess(class_map, list(task.class_names), keep)
        if task.instances is not None:
            from dentpy.instances import instance_postprocess

            result, _ = instance_postprocess(result, task)
        return result

    # -- 2D classification and detection ---------------------------------------------

    def predict_image(self, image: Image2D | str | Path) -> ClassPrediction:
        """dentpy's 2D preprocessing (gray, clip + z-score, resize), the exported network,
        the task's probabilities and the card's decision rule."""
        import torch

        from dentpy.data.prepare2d import to_network
        from dentpy.tasks.classification import ClassificationTask

        self._require("classification")
        image2d = _image2d(image)
        prep = self.card["preprocessing"]
        size = (int(prep["image_size"][0]), int(prep["image_size"][1]))
        clip = (float(prep["clip_percentiles"][0]), float(prep["clip_percentiles"][1]))
        network = to_network(image2d, size, clip, "image")
        task = ClassificationTask.from_dict(self.card["decoding"]["task_plan"])
        logits = torch.from_numpy(self.backend(network[None]))
        probs = task.probabilities(logits)[0].numpy()
        threshold = self.card["decoding"].get("threshold")
        if task.output == "binary" and task.positive_index is not None:
            positive = task.positive_index
            chosen = positive if probs[positive] >= float(threshold) else 1 - positive
        else:
            chosen = int(np.argmax(probs))
        return ClassPrediction(probs, task.classes[chosen], threshold)

    def predict_boxes(self, image: Image2D | str | Path) -> BoxPrediction:
        """Letterbox, the exported network's packed CenterNet output, dentpy's decoding
        (peaks, top-k, class-aware NMS) and the card's confidence threshold."""
        import torch

        from dentpy.data.prepare_boxes import letterbox_image
        from dentpy.detection import detect_packed

        self._require("detection")
        image2d = _image2d(image)
        prep, decoding = self.card["preprocessing"], self.card["decoding"]
        size = (int(prep["image_size"][0]), int(prep["image_size"][1]))
        clip = (float(prep["clip_percentiles"][0]), float(prep["clip_percentiles"][1]))
        network, mapping = letterbox_image(image2d, size, clip, "image")
        packed = torch.from_numpy(self.backend(network[None]))
        ((boxes, scores, labels),) = detect_packed(
            packed, nms_iou=decoding["nms_iou"], max_detections=int(decoding["max_detections"])
        )
        keep = scores >= float(decoding["score_threshold"])
        boxes = mapping.boxes_to_image(boxes[keep])
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, image2d.width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, image2d.height)
        names = [c["name"] for c in self.card["classes"]]
        return BoxPrediction(boxes, scores[keep], [names[int(i)] for i in labels[keep]])

    def _require(self, *tasks: str) -> None:
        if self.task not in tasks:
            raise SpecError(
                f"this exported model is a {self.task} model",
                expected=" or ".join(tasks),
                found=self.task,
                fix="use predict_case for 3D segmentation, predict_image for classification, "
                "predict_boxes for detection",
            )


def _image2d(image: Image2D | str | Path) -> Image2D:
    if isinstance(image, (str, Path)):
        from dentpy.data.image2d_io import read_any

        return read_any(Path(image), mask=False)
    return image
