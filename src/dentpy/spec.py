"""The problem formulation as a typed, validated spec.

Sections follow how a dental AI problem is formulated: `objective`, `input`, `metrics`,
`paradigm`, `constraints`, `evaluation`; then the how: `preprocess`, `augment`, `model`,
`loss`, `optimizer`, `schedule`, `train`. Every field has a default that works. Unknown
keys are errors with a "did you mean". `key=value` overrides use dotted paths and YAML
literals (`optimizer.lr=3e-4`, `objective.classes=[pulp]`); nothing is evaluated.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

# Sizes `dentpy plan` can choose ("auto", docs/planning.md). `dentpy train` resolves them
# (dentpy.planning.resolve_auto) before anything reads them and records the numbers in the
# run's spec.yaml, so the type checker sees the resolved types; at runtime "auto" is allowed.
if TYPE_CHECKING:
    AutoInt = int
    AutoPatch = tuple[int, int, int]
    AutoChannels = list[int]
else:
    AutoInt = Annotated[int, Field(ge=1)] | Literal["auto"]
    AutoPatch = tuple[int, int, int] | Literal["auto"]
    AutoChannels = list[int] | Literal["auto"]
AUTO_SIZES = ("train.patch_size", "train.batch_size", "train.iterations", "model.channels")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Objective(_Section):
    task: Literal["segmentation", "classification", "detection"] = "segmentation"
    # segmentation: semantic (one label per structure) or instance (one label per tooth,
    # numbered by FDI; see `instances`). classification: binary (present/absent),
    # multiclass, or ordinal (grades in class order, e.g. sound < mild < moderate < severe).
    # detection: boxes (one class per box).
    output: Literal["semantic", "instance", "binary", "multiclass", "ordinal", "boxes"] = "semantic"
    # Instance segmentation: which instances to learn from a dataset whose label ids are
    # FDI numbers (ToothFairy2/3): each tooth (11-48), each tooth's pulp (100 + FDI), or both.
    instances: Literal["teeth", "pulp", "teeth+pulp"] = "teeth"
    # Segmentation: dataset label names to learn; every other label becomes background.
    # `left_*`/`right_*` names are side-specific, so a left/right flip swaps them.
    # Instance output: further (non-tooth) structures to learn alongside, e.g. the canals
    # for apex-to-canal distances; "auto" = none.
    # Classification: the classes in order ("auto": the dataset's order).
    classes: list[str] | Literal["auto"] = "auto"
    # Detection: what a box's class is when the dataset also numbers teeth (DENTEX, Tufts,
    # synthetic): its label (diagnosis), its tooth ("tooth": the FDI number), or both
    # ("label_on_tooth": e.g. "caries@36").
    box_class: Literal["label", "tooth", "label_on_tooth"] = "label"
    # Binary classification: the class that counts as positive (e.g. "caries"); "auto"
    # recognises the negative one by name (sound, healthy, normal, negative, absent, no, 0).
    positive_class: str = "auto"
    report_volumes: bool = True

    @model_validator(mode="after")
    def _output_fits_task(self) -> Objective:
        allowed = {
            "segmentation": ("semantic", "instance"),
            "classification": ("binary", "multiclass", "ordinal"),
            "detection": ("boxes",),
        }
        if self.output not in allowed[self.task]:
            raise ValueError(
                f"objective.output {self.output!r} does not fit objective.task {self.task!r}; "
                f"use one of {', '.join(allowed[self.task])}"
            )
        return self


class Input(_Section):
    data: str = "data"
    layout: Literal[
        "auto",
        "nnunet",
        "msd",
        "pulpy",
        "toothfairy",
        "files",
        "coco",
        "yolo",
        "tufts",
        "imagefolder",
        "csv",
        "images",
    ] = "auto"
    modality: Literal["cbct", "ct", "xray", "photo"] = "cbct"
    dimensionality: Literal["3d", "2d"] = "3d"
    # For datasets whose files store a wrong spacing (Pulpy3D stores 1.0 mm).
    assume_spacing_mm: tuple[float, float, float] | None = None
    # Semi-supervised training: a folder of unlabelled volumes (3D) or images (2D); a
    # relative path is resolved against the spec file's folder, like `data`.
    unlabeled: str | None = None


class Metrics(_Section):
    # What model selection maximises on the validation split. "auto": Dice (segmentation),
    # ROC-AUC (binary), balanced accuracy (multiclass), quadratic weighted kappa (ordinal).
    # Detection: "ap50" (AP at IoU 0.5, mean over classes) or "ap" (AP at IoU 0.50:0.95).
    select_by: Literal["auto", "dice", "roc_auc", "balanced_accuracy", "kappa", "ap50", "ap"] = (
        "auto"
    )
    report: list[str] = Field(
        default_factory=lambda: [
            "dice",
            "iou",
            "hd95_mm",
            "precision",
            "recall",
            "specificity",
            "volume",
        ]
    )


class Paradigm(_Section):
    # semi-supervised: also learn from unlabelled cases (`input.unlabeled`, and/or the
    # training cases whose labels `labeled_fraction` hides). See docs/training.md.
    kind: Literal["supervised", "semi-supervised"] = "supervised"
    # mean_teacher: consistency with an EMA teacher; pseudo_label: self-training rounds.
    method: Literal["mean_teacher", "pseudo_label"] = "mean_teacher"
    # Keep labels for only this fraction of the training patients (simulated label
    # scarcity, seeded by evaluation.split_seed); the others become unlabelled cases.
    labeled_fraction: float | None = Field(default=None, gt=0, le=1)
    # Mean Teacher: teacher = EMA of the student, warm start min(1 - 1/(step+1), decay).
    ema_decay: float = Field(default=0.99, ge=0, lt=1)
    # Mean Teacher: weight of the consistency loss, reached by a sigmoid ramp-up over
    # rampup_iterations (null: a quarter of train.iterations).
    consistency_weight: float = Field(default=1.0, ge=0)
    # Mean Teacher: the network validated and saved as the run's model. "teacher" (the EMA
    # average, the paper's choice) or "student" (the network the optimizer trains).
    validate_with: Literal["teacher", "student"] = "teacher"
    rampup_iterations: int | None = Field(default=None, ge=0)
    # Unlabelled images/patches per step (null: train.batch_size).
    unlabeled_batch_size: int | None = Field(default=None, ge=1)
    # Pseudo-labelling: keep voxels/images whose top probability reaches this; the
    # iterations are split evenly: supervised first, then one part per round.
    confidence_threshold: float = Field(default=0.9, gt=0, le=1)
    pseudo_label_rounds: int = Field(default=1, ge=1)


class Constraints(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int | None = Field(default=None, ge=1)
    time_budget_minutes: float | None = Field(default=None, gt=0)
    # Memory `dentpy plan` (and "auto" sizes) may use, in GB: a number, "auto" (70% of the
    # machine's RAM on CPU, of the GPU's total memory on CUDA), or null (= auto when planning).
    memory_limit_gb: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    deterministic: bool = False
    # Classification with rare classes: "auto" picks from the training split's class counts
    # (weighted loss when the rarest class has under a third of the commonest's images).
    class_imbalance: Literal["auto", "none", "weighted_loss", "balanced_sampler", "focal"] = "auto"
    # Segmentation with tiny targets (dentpy.imbalance; the resolved values are recorded
    # in the run's plan.json). Share of patches centred on a foreground voxel: a number,
    # "auto" (0.33-0.67 by how small the rarest class is), or null = train.foreground_fraction.
    foreground_oversampling: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] | None = None
    # Which class a foreground patch is centred on: "uniform" over the classes the case
    # holds, "inverse_size" / "auto" (proportional to 1/sqrt(class voxel fraction)), or
    # one probability per foreground class in objective.classes order.
    class_sampling: Literal["auto", "uniform", "inverse_size"] | list[float] = "uniform"
    # Per-class loss weights, background first: "none", "auto" (sqrt(commonest class
    # fraction / class fraction), clipped to [1, 10]), or a list of len(classes) + 1.
    class_weights: Literal["auto", "none"] | list[float] = "none"

    @model_validator(mode="after")
    def _imbalance_lists(self) -> Constraints:
        sampling = self.class_sampling
        if isinstance(sampling, list) and (not sampling or min(sampling) < 0 or sum(sampling) <= 0):
            raise ValueError(
                "constraints.class_sampling must list non-negative probabilities "
                "(one per foreground class) with a positive sum"
            )
        weights = self.class_weights
        if isinstance(weights, list) and (not weights or min(weights) < 0):
            raise ValueError(
                "constraints.class_weights must list non-negative weights, background first"
            )
        return self


class Evaluation(_Section):
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, ge=0, lt=1)
    split_seed: int = 0
    # Segmentation: "threshold" (best training-set intensity window per class).
    # Classification: "majority" (always the commonest training class) and
    # "intensity_logistic" (logistic regression on simple gray-value features).
    # Detection: "blob_boxes" (boxes around intensity blobs, fitted on training images).
    baselines: (
        list[Literal["threshold", "majority", "intensity_logistic", "blob_boxes"]] | Literal["auto"]
    ) = "auto"
    # Binary classification: how the decision threshold is chosen, on validation only:
    # "youden" maximises sensitivity + specificity - 1; "sensitivity" takes the highest
    # threshold reaching `target_sensitivity`.
    threshold: Literal["youden", "sensitivity"] = "youden"
    target_sensitivity: float = Field(default=0.9, gt=0, le=1)
    # Bootstrap resamples (over patients) for the 95% confidence intervals.
    bootstrap: int = Field(default=1000, ge=0)


class Preprocess(_Section):
    # "median" takes the training set's median spacing (nnU-Net's choice for isotropic data).
    target_spacing_mm: tuple[float, float, float] | Literal["median"] = "median"
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    # 2D classification: every image is resized to this (height, width) for the network
    # (a declared input transform; the image files are never changed).
    image_size: tuple[int, int] = (128, 128)


class Postprocess(_Section):
    # Classes that are one structure per scan (e.g. each IAN canal): keep only their largest
    # connected component. Not for pulp or teeth, which have one component per tooth.
    keep_largest: list[str] = Field(default_factory=list)
    # 3D segmentation: mirror test-time augmentation (evaluate, predict): also predict the
    # left/right-flipped scan (side classes swapped back) and average; twice the time.
    mirror_tta: bool = False
    # Detection: class-aware non-maximum suppression IoU (null: none), boxes kept per image,
    # and the confidence for predict's outputs ("auto": chosen on validation for best F1).
    nms_iou: float | None = Field(default=0.5, gt=0, le=1)
    max_detections: int = Field(default=100, ge=1)
    score_threshold: float | Literal["auto"] = "auto"


class Augment(_Section):
    flip_left_right: bool = True
    rotate_degrees: float = Field(default=10.0, ge=0, le=45)
    scale_range: tuple[float, float] = (0.9, 1.1)
    intensity_scale: float = Field(default=0.1, ge=0)
    intensity_shift: float = Field(default=0.1, ge=0)
    gamma_range: tuple[float, float] = (0.8, 1.25)
    # Every patch gets Gaussian noise whose std is drawn half-normally, |N(0, 1)| x noise_std
    # (MONAI and TorchIO draw it uniformly in [0, std]; docs/benchmarks.md measured no
    # difference in Dice between the two).
    noise_std: float = Field(default=0.05, ge=0)
    probability: float = Field(default=0.5, ge=0, le=1)


class Model(_Section):
    # Segmentation: unet, basic_unet, segresnet. Classification (2D): resnet18, resnet34,
    # densenet121, efficientnet_b0. "auto": unet / resnet18.
    name: str = "auto"
    # Widths per level (the depth is their number), or "auto": `dentpy plan` chooses them.
    channels: AutoChannels = Field(default_factory=lambda: [16, 32, 64, 128])
    num_res_units: int = Field(default=1, ge=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # A `dentpy pretrain` output (its folder or encoder.safetensors) to start from: every
    # tensor whose name and shape match is loaded (not the output layer). Relative paths
    # are resolved against the spec file's folder.
    pretrained: str | None = None


class Loss(_Section):
    # A name, or a weighted sum of two: "dice+focal", "0.7*dice + 0.3*focal" (docs/training.md).
    # Both tasks: ce, bce, focal, gce / sce (noisy labels), mse, l1 (= mae).
    # Segmentation only: dice, dice_ce (default), dice_focal, jaccard, jaccard_focal,
    # tversky, generalized_dice. Classification only: coral (ordinal, the ordinal default).
    name: str = "auto"
    # How logits become probabilities: multiclass (softmax), binary (one sigmoid logit; a
    # 2-class head's logit difference), multilabel (sigmoid per class). auto: multiclass.
    mode: Literal["auto", "binary", "multiclass", "multilabel"] = "auto"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)  # pointwise terms (ce, focal, ...)
    focal_gamma: float = Field(default=2.0, ge=0)
    tversky_alpha: float = Field(default=0.3, ge=0)  # weight of false positives
    tversky_beta: float = Field(default=0.7, ge=0)  # weight of false negatives
    gce_q: float = Field(default=0.7, gt=0, le=1)  # gce: q -> 0 is CE, q = 1 is MAE
    sce_alpha: float = Field(default=0.1, ge=0)  # sce: weight of CE
    sce_beta: float = Field(default=1.0, ge=0)  # sce: weight of reverse CE
    # Per-class weights of ce/bce/focal/gce/sce/mse/l1 and dice/jaccard terms (segmentation:
    # background first). auto: segmentation per constraints.class_weights, classification
    # per constraints.class_imbalance. none: unweighted.
    class_weights: Literal["auto", "none"] | list[float] = "auto"

    @model_validator(mode="after")
    def _check(self) -> Loss:
        from dentpy.losses_names import parse_loss_expression

        if self.name != "auto":
            try:
                parse_loss_expression(self.name)
            except SpecError as error:
                raise ValueError(f"{error.what}; {error.expected}") from None
        if isinstance(self.class_weights, list) and (
            any(w < 0 for w in self.class_weights) or not any(w > 0 for w in self.class_weights)
        ):
            raise ValueError("loss.class_weights must be >= 0 with at least one > 0")
        return self


class Optimizer(_Section):
    # sgd (plain) | momentum | nesterov | rmsprop | adam | adamw (dentpy.optim.OPTIMIZERS)
    name: str = "adamw"
    # A number, or "auto": `dentpy train` first runs the LR range test (dentpy.lr_find) and
    # writes the LR it chose into the run's spec.yaml, which a resume then reuses.
    lr: Annotated[float, Field(gt=0)] | Literal["auto"] = 2e-3
    weight_decay: float = Field(default=1e-5, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # momentum / nesterov / rmsprop
    # With `momentum`: use Nesterov's variant. `sgd` + nesterov: true (what `sgd` meant
    # before it became plain SGD) resolves to name `nesterov`, so old specs keep their meaning.
    nesterov: bool = False
    grad_clip_norm: float | None = Field(default=12.0, gt=0)
    # The LR range test (`dentpy lr-find`, `lr: auto`): iterations, and the LR range it sweeps.
    lr_find_iterations: int = Field(default=100, ge=10)
    lr_find_min_lr: float = Field(default=1e-7, gt=0)
    lr_find_max_lr: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _honest_sgd(self) -> Optimizer:
        if self.name == "sgd" and self.nesterov:
            self.name = "nesterov"
        if self.lr_find_min_lr >= self.lr_find_max_lr:
            raise ValueError("optimizer.lr_find_min_lr must be below optimizer.lr_find_max_lr")
        return self


class Schedule(_Section):
    # cosine | poly | constant | plateau | step | onecycle (dentpy.optim.SCHEDULES)
    name: str = "cosine"
    warmup_iterations: int = Field(default=20, ge=0)
    # Floor of the decaying schedules (cosine, poly, step, onecycle), as a fraction of the LR.
    min_lr_fraction: float = Field(default=0.01, ge=0, le=1)
    poly_power: float = Field(default=0.9, gt=0)
    plateau_patience: int = Field(default=3, ge=1)
    plateau_factor: float = Field(default=0.5, gt=0, lt=1)
    # step: multiply the LR by step_gamma every step_iterations after the warm-up.
    step_gamma: float = Field(default=0.1, gt=0, le=1)
    step_iterations: int = Field(default=300, ge=1)
    # onecycle: the factor its warm-up starts from (torch OneCycleLR's 1 / div_factor).
    onecycle_start_fraction: float = Field(default=0.04, gt=0, le=1)


class Train(_Section):
    # iterations, batch_size, patch_size: a number, or "auto" (3D segmentation): chosen from
    # the dataset and constraints (memory limit, time budget) as `dentpy plan` shows.
    iterations: AutoInt = 1000
    batch_size: AutoInt = 2
    patch_size: AutoPatch = (64, 64, 64)
    foreground_fraction: float = Field(default=0.5, ge=0, le=1)
    validate_every: int = Field(default=100, ge=1)
    seed: int = 0
    sw_batch_size: int = Field(default=4, ge=1)
    # Sliding window of validation and inference (dentpy.inference_window): "auto" = as
    # large as a quarter of the memory limit allows, up to the whole volume in one pass;
    # "patch" = train.patch_size at 50% overlap; or [x, y, z] voxels.
    sw_window: Literal["auto", "patch"] | tuple[PositiveInt, PositiveInt, PositiveInt] = "auto"
    # 3D segmentation: batches prepared ahead in a background thread while the device
    # trains (0: none, every batch is cropped when the step asks for it).
    prefetch: int = Field(default=2, ge=0)
    checkpoint_every: int | None = Field(default=None, ge=1)
    # Gradient accumulation: batches summed into one optimizer step (an iteration), for a
    # larger effective batch (batch_size x accumulate_batches) than memory allows.
    accumulate_batches: int = Field(default=1, ge=1)


class Pretrain(_Section):
    """`dentpy pretrain`: self-supervised learning from images only (labels never read)."""

    # "auto": masked-volume reconstruction for 3D segmentation, contrastive (SimCLR) for 2D.
    method: Literal["auto", "masked", "contrastive"] = "auto"
    # Masked: fraction of the patch hidden, in cubes (3D) or squares (2D) of `block_size`
    # voxels, filled with zeros (the z-scored mean) or Gaussian noise.
    mask_ratio: float = Field(default=0.6, gt=0, lt=1)
    block_size: int = Field(default=8, ge=1)
    mask_fill: Literal["zeros", "noise"] = "zeros"
    # Masked: the input also gets a random gain/offset; the target stays the original.
    intensity_augment: bool = True
    iterations: int = Field(default=300, ge=1)
    # null: train.batch_size (masked 3D) or 32 (contrastive: negatives come from the batch,
    # so it needs at least 2).
    batch_size: int | None = Field(default=None, ge=1)
    # null: train.patch_size.
    patch_size: tuple[int, int, int] | None = None
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    # Contrastive: NT-Xent temperature and the projection head's output width.
    temperature: float = Field(default=0.2, gt=0)
    projection_dim: int = Field(default=64, ge=2)
    # Stop early after this many minutes (the encoder is still written); null:
    # constraints.time_budget_minutes. The learning rate decays over the budget too.
    time_budget_minutes: float | None = Field(default=None, gt=0)
    seed: int = 0


TRACKING_BACKENDS = ("tensorboard", "mlflow", "wandb")


class Tracking(_Section):
    """Experiment trackers a run is logged to (docs/tracking.md). TensorBoard is always
    written during training; mlflow and wandb are synced from the run folder after train,
    evaluate and report (and by `dentpy track`)."""

    backends: list[str] = Field(default_factory=lambda: ["tensorboard"])
    # null: a local SQLite store next to the runs: RUNS/mlflow.db, artifacts in RUNS/mlartifacts.
    mlflow_uri: str | None = None
    # MLflow experiment / W&B group; null: the spec's name.
    experiment: str | None = None
    wandb_project: str = "dentpy"
    # offline: written under RUNS/wandb, uploaded only by a later `wandb sync`; online needs
    # a W&B login and sends the (path-free) run to W&B's servers at once.
    wandb_mode: Literal["offline", "online"] = "offline"

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, backends: list[str]) -> list[str]:
        for name in backends:
            if name not in TRACKING_BACKENDS:
                raise ValueError(
                    f"unknown tracking backend {name!r}; "
                    + did_you_mean(name, list(TRACKING_BACKENDS))
                )
        return list(dict.fromkeys(backends))


class Spec(_Section):
    """The whole problem formulation. See `dentpy init` for a commented example."""

    name: str = "run"
    objective: Objective = Field(default_factory=Objective)
    input: Input = Field(default_factory=Input)
    metrics: Metrics = Field(default_factory=Metrics)
    paradigm: Paradigm = Field(default_factory=Paradigm)
    constraints: Constraints = Field(default_factory=Constraints)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    preprocess: Preprocess = Field(default_factory=Preprocess)
    augment: Augment = Field(default_factory=Augment)
    postprocess: Postprocess = Field(default_factory=Postprocess)
    model: Model = Field(default_factory=Model)
    loss: Loss = Field(default_factory=Loss)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule = Field(default_factory=Schedule)
    train: Train = Field(default_factory=Train)
    pretrain: Pretrain = Field(default_factory=Pretrain)
    tracking: Tracking = Field(default_factory=Tracking)

    @model_validator(mode="after")
    def _resolve_auto(self) -> Spec:
        """Turn "auto" choices into the task's defaults, so the resolved spec a run folder
        keeps names exactly what was used."""
        task = self.objective.task
        segmentation = task == "segmentation"
        if segmentation and self.input.dimensionality != "3d":
            raise ValueError("segmentation is built for 3D volumes; set input.dimensionality: 3d")
        if not segmentation and self.input.dimensionality != "2d":
            raise ValueError(f"{task} is built for 2D images; set input.dimensionality: 2d")
        if self.model.name == "auto":
            self.model.name = {
                "segmentation": "unet",
                "classification": "resnet18",
                "detection": "centernet",
            }[task]
        if self.loss.name == "auto":
            ordinal = self.objective.output == "ordinal"
            self.loss.name = {
                "segmentation": "dice_ce",
                "classification": "coral" if ordinal else "ce",
                "detection": "centernet",
            }[task]
        if self.metrics.select_by == "auto":
            by_output = {
                "semantic": "dice",
                "instance": "dice",
                "binary": "roc_auc",
                "multiclass": "balanced_accuracy",
                "ordinal": "kappa",
                "boxes": "ap50",
            }
            self.metrics.select_by = by_output[self.objective.output]  # type: ignore[assignment]
        if self.evaluation.baselines == "auto":
            # An intensity window cannot number teeth: instance output has no baseline yet.
            self.evaluation.baselines = (
                []
                if self.objective.output == "instance"
                else ["threshold"]
                if segmentation
                else ["blob_boxes"]
                if task == "detection"
                else ["majority", "intensity_logistic"]
            )
        return self

    @model_validator(mode="after")
    def _patch_fits_network(self) -> Spec:
        from dentpy.models import downsampling_factor

        autos = [name for name in AUTO_SIZES if _dotted(self, name) == "auto"]
        if autos and self.objective.task != "segmentation":
            raise ValueError(
                f"{', '.join(autos)}: 'auto' is planned for 3D segmentation only (semantic "
                "and instance: patch size, batch size, network channels and iterations); "
                f"{self.objective.task} needs numbers there"
            )
        if self.objective.task != "segmentation" or {"train.patch_size", "model.channels"} & set(
            autos
        ):
            return self  # an "auto" patch or depth is made to fit when it is planned

        # Each network level halves the patch, so every side must divide by the total factor.
        step = downsampling_factor(self.model)
        if any(size % step for size in self.train.patch_size):
            suggestion = tuple(max(step, round(s / step) * step) for s in self.train.patch_size)
            raise ValueError(
                f"train.patch_size {self.train.patch_size} must be divisible by {step} on every "
                f"axis for model '{self.model.name}' with {len(self.model.channels)} levels; "
                f"try {suggestion}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self, exclude: tuple[str, ...] = ()) -> str:
        """A hash of the resolved spec (optionally without some top-level sections).
        `tracking` says where a run is logged, not what it is, so it never counts (and
        runs made before the section existed keep their identity)."""
        data = {k: v for k, v in self.to_dict().items() if k not in exclude and k != "tracking"}
        # Fields added after runs existed count only when set away from their default, so
        # a run trained before they existed keeps its identity (and can be resumed).
        for section, key in LATE_FIELDS:
            part = data.get(section)
            if isinstance(part, dict) and part.get(key) == LATE_FIELDS[(section, key)]:
                part.pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


LATE_FIELDS: dict[tuple[str, str], Any] = {
    ("postprocess", "mirror_tta"): False,
    ("train", "sw_window"): "auto",
}


def _dotted(spec: Spec, name: str) -> Any:
    section, field = name.split(".")
    return getattr(getattr(spec, section), field)


def _fields_at(location: tuple[Any, ...]) -> list[str]:
    model: Any = Spec
    for part in location:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            break
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) else None
        if model is None or not issubclass(model, BaseModel):
            return []
    return list(getattr(model, "model_fields", {}).keys())


def _spec_error(exc: ValidationError, source: str) -> SpecError:
    first = exc.errors()[0]
    location = tuple(first["loc"])
    dotted = ".".join(str(p) for p in location)
    if first["type"] == "extra_forbidden":
        choices = _fields_at(location[:-1])
        return SpecError(
            f"{source}: unknown key '{dotted}'",
            expected=f"one of: {', '.join(choices)}",
            found=str(location[-1]),
            fix=did_you_mean(str(location[-1]), choices),
        )
    return SpecError(
        f"{source}: invalid value for '{dotted}'",
        expected=first["msg"],
        found=repr(first.get("input"))[:200],
        fix="edit the spec or pass a corrected override, e.g. "
        f"{dotted}=<value>  (`dentpy init` writes a commented example)",
    )


# YAML aliases share nodes, so a few lines can expand into a "billion laughs" tree that
# validation and error messages would walk for hours. A real spec has a few hundred nodes.
MAX_SPEC_NODES = 100_000


def _too_large(value: Any, limit: int = MAX_SPEC_NODES) -> bool:
    """Whether `value`, with aliases expanded, has more than `limit` nodes (stops early)."""
    stack = [value]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(node.keys())
        elif isinstance(node, list | tuple | set):
            stack.extend(node)
    return False


def _alias_bomb(source: str) -> SpecError:
    return SpecError(
        f"{source}: YAML expands to more than {MAX_SPEC_NODES:,} values",
        expected="a spec of plain sections and values (as `dentpy init` writes)",
        found="anchors/aliases (&name, *name) nested into a huge structure",
        fix="write the values out instead of nesting aliases",
    )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are YAML literals, never code."""
    for item in overrides:
        if "=" not in item:
            raise SpecError(
                f"override '{item}' is not of the form key=value",
                expected="dotted.key=value, e.g. optimizer.lr=3e-4",
                found=item,
            )
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if _too_large(value):
            raise _alias_bomb(f"override '{item[:60]}'")
        parts = key.strip().split(".")
        target = data
        for part in parts[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(
                    f"override '{item}': '{part}' is a value, not a section",
                    expected="a dotted path to a field",
                    found=key,
                )
            target = node
        target[parts[-1]] = value
    return data


def parse_spec(data: dict[str, Any], source: str = "spec") -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, source) from None


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Read a YAML spec, apply overrides, validate. Relative `input.data` is resolved
    against the spec file's folder, so a spec works from any working directory."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"spec file not found: {path}",
            expected="a YAML file written by `dentpy init`",
            found="nothing at that path",
            fix="run `dentpy init --template pulp-cbct` to write one",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"{path.name}: cannot be read as text",
            expected="a UTF-8 YAML file written by `dentpy init`",
            # An OSError's text holds the absolute path; strerror does not.
            found=f"{type(exc).__name__}: "
            + (str(exc.strerror) if isinstance(exc, OSError) else str(exc)[:200]),
            fix=f"re-save {path.name} as UTF-8 text, or write a new one with `dentpy init`",
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SpecError(
            f"{path.name}: not valid YAML",
            expected="a YAML mapping of sections",
            found=str(exc).splitlines()[0],
        ) from None
    if _too_large(data):
        raise _alias_bomb(path.name)
    if not isinstance(data, dict):
        raise SpecError(
            f"{path.name}: the spec must be a mapping of sections",
            expected="objective:, input:, ...",
            found=type(data).__name__,
        )
    data = apply_overrides(data, overrides or [])
    spec = parse_spec(data, source=path.name)
    data_path = Path(spec.input.data).expanduser()
    if not data_path.is_absolute():
        spec.input.data = str((path.parent / data_path).resolve())
    if spec.input.unlabeled is not None:
        unlabeled = Path(spec.input.unlabeled).expanduser()
        if not unlabeled.is_absolute():
            spec.input.unlabeled = str((path.parent / unlabeled).resolve())
    if spec.model.pretrained is not None:
        weights = Path(spec.model.pretrained).expanduser()
        if not weights.is_absolute():
            spec.model.pretrained = str((path.parent / weights).resolve())
    return spec
