"""Image classification (2D): caries present?, caries grade, ...

One label per image. `binary` and `multiclass` use C softmax logits. `ordinal` (grades in
class order) uses C softmax logits with `loss.name: ce`, or C-1 cumulative logits
P(grade > k) with `loss.name: coral` (the default for ordinal). `probabilities` turns
either into class probabilities (N, C), so metrics and reports never see the difference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dentpy.errors import SpecError
from dentpy.registry import did_you_mean

if TYPE_CHECKING:
    import torch

    from dentpy.spec import Spec

OUTPUTS = ("binary", "multiclass", "ordinal")
IMBALANCE = ("none", "weighted_loss", "balanced_sampler", "focal")
# Words that name the negative class of a present/absent question ("auto" positive class).
NEGATIVE_WORDS = frozenset(
    {"sound", "healthy", "normal", "negative", "absent", "no", "none", "non", "not", "0", "false"}
)


def looks_negative(name: str) -> bool:
    """True for class names such as "sound", "no_caries", "Healthy tooth", "0"."""
    tokens = [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]
    return any(t in NEGATIVE_WORDS for t in tokens)


def resolve_imbalance(setting: str, class_counts: Sequence[int]) -> str:
    """Resolve `constraints.class_imbalance`. "auto" weights the loss when the rarest class
    has under a third of the commonest class's training images: below that an unweighted
    loss lets the network ignore the rare class (often the one that matters, e.g. caries)
    and still look accurate. Explicit settings are kept."""
    if setting != "auto":
        if setting not in IMBALANCE:
            raise SpecError(
                f"unknown constraints.class_imbalance '{setting}'",
                expected=f"auto or one of: {', '.join(IMBALANCE)}",
                found=setting,
                fix=did_you_mean(setting, list(IMBALANCE)),
            )
        return setting
    counts = [int(c) for c in class_counts]
    if not counts or max(counts) == 0:
        return "none"
    return "weighted_loss" if min(counts) / max(counts) < 1 / 3 else "none"


def inverse_frequency_weights(class_counts: Sequence[int]) -> list[float]:
    """Weight each class by 1/count, normalised to mean 1 so the loss keeps its usual scale
    (and the learning rate keeps its meaning)."""
    inverse = [1.0 / max(int(c), 1) for c in class_counts]
    mean = sum(inverse) / len(inverse)
    return [w / mean for w in inverse]


@dataclass(frozen=True)
class ClassificationTask:
    """Class i of the network = `classes[i]` (for ordinal: the i-th grade, lowest first)."""

    classes: tuple[str, ...]
    output: str
    positive_class: str | None
    imbalance: str
    class_counts: tuple[int, ...]
    loss_name: str = "ce"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def positive_index(self) -> int | None:
        """Index of the positive class (binary only; None otherwise)."""
        if self.positive_class is None:
            return None
        return self.classes.index(self.positive_class)

    @property
    def cumulative(self) -> bool:
        """Whether the network emits C-1 cumulative logits P(y > k) (CORAL)."""
        return self.loss_name == "coral"

    @property
    def n_outputs(self) -> int:
        return self.n_classes - 1 if self.cumulative else self.n_classes

    def build_model(self, spec: Spec) -> torch.nn.Module:
        from dentpy.models2d import build_classifier

        return build_classifier(spec.model.name, self.n_outputs, spec.model.dropout)

    def class_weights(self) -> list[float] | None:
        """Inverse-frequency weights when the imbalance setting asks for a weighted loss."""
        if self.imbalance == "weighted_loss":
            return inverse_frequency_weights(self.class_counts)
        return None

    def build_loss(self, spec: Spec) -> torch.nn.Module:
        """The loss this task resolved (`loss_name`), with the spec's `loss` settings.

        `loss.class_weights: auto` follows the imbalance setting. A `balanced_sampler`
        setting leaves the loss unweighted: the sampler already shows the classes equally
        often, and weighting as well would over-correct."""
        from dentpy.losses import loss_config
        from dentpy.losses_classification import build_configured_classification_loss

        config = loss_config(
            spec.loss, self.n_classes, background=False, auto_weights=self.class_weights()
        )
        if self.cumulative and config.mode != "multiclass":
            raise SpecError(
                f"loss.mode {config.mode} does not apply to the coral loss",
                expected="loss.mode auto with coral (C-1 cumulative sigmoid logits)",
                found=f"loss.mode: {config.mode}",
                fix="set loss.mode=auto",
            )
        return build_configured_classification_loss(self.loss_name, self.n_classes, config)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C) from network outputs.

        Cumulative (CORAL) outputs are sigmoid-ed to P(y > k), forced non-increasing in k by
        a running minimum (an unconstrained head can predict P(y > 2) > P(y > 1)), and
        differenced into P(y = k); any rounding below zero is clipped and rows renormalised.
        """
        import torch

        logits = logits.float()
        if not self.cumulative:
            return torch.softmax(logits, dim=1)
        above = torch.sigmoid(logits)
        above = torch.cummin(above, dim=1).values
        ones = torch.ones_like(above[:, :1])
        zeros = torch.zeros_like(above[:, :1])
        bounds = torch.cat([ones, above, zeros], dim=1)
        probs = (bounds[:, :-1] - bounds[:, 1:]).clamp(min=0)
        return probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "classification",
            "classes": list(self.classes),
            "output": self.output,
            "positive_class": self.positive_class,
            "imbalance": self.imbalance,
            "class_counts": list(self.class_counts),
            "loss_name": self.loss_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassificationTask:
        return cls(
            classes=tuple(data["classes"]),
            output=str(data["output"]),
            positive_class=data.get("positive_class"),
            imbalance=str(data["imbalance"]),
            class_counts=tuple(int(c) for c in data["class_counts"]),
            loss_name=str(data.get("loss_name", "ce")),
        )


def _resolve_classes(spec: Spec, dataset_classes: Sequence[str]) -> tuple[str, ...]:
    available = list(dataset_classes)
    if spec.objective.classes == "auto":
        return tuple(available)
    wanted = list(spec.objective.classes)
    for name in wanted:
        if name not in available:
            raise SpecError(
                f"objective.classes names '{name}', which is not a class of the dataset",
                expected=f"the dataset's classes: {', '.join(available)}",
                found=name,
                fix=did_you_mean(name, available),
            )
    if len(set(wanted)) != len(wanted):
        duplicate = next(n for n in wanted if wanted.count(n) > 1)
        raise SpecError(
            f"objective.classes lists '{duplicate}' twice",
            expected="each class once, in the order the network should use",
            found=", ".join(wanted),
        )
    missing = [n for n in available if n not in wanted]
    if missing:
        # Dropping images silently would change the question being answered.
        raise SpecError(
            f"objective.classes leaves out dataset classes: {', '.join(missing)}",
            expected=f"every dataset class listed: {', '.join(available)}",
            found=", ".join(wanted),
            fix="list them all (in the order you want), or merge/remove classes first with "
            "`dentpy data convert --label-map`",
        )
    return tuple(wanted)


def _resolve_positive(spec: Spec, classes: tuple[str, ...]) -> str | None:
    setting = spec.objective.positive_class
    if spec.objective.output != "binary":
        if setting != "auto":
            raise SpecError(
                "objective.positive_class is only used by binary classification",
                expected=f"objective.output: binary (found {spec.objective.output})",
                found=setting,
                fix="remove objective.positive_class, or set objective.output: binary",
            )
        return None
    if setting != "auto":
        if setting not in classes:
            raise SpecError(
                f"objective.positive_class '{setting}' is not one of the classes",
                expected=f"one of: {', '.join(classes)}",
                found=setting,
                fix=did_you_mean(setting, list(classes)),
            )
        return setting
    negative = [looks_negative(c) for c in classes]
    if sum(negative) != 1:
        reason = "both look like" if all(negative) else "neither looks like"
        raise SpecError(
            f"cannot tell which class is positive: {reason} the negative one "
            f"({', '.join(classes)})",
            expected="one class named like sound/healthy/normal/negative/absent/no/0",
            found=", ".join(classes),
            fix=f"set objective.positive_class, e.g. objective.positive_class={classes[1]}",
        )
    return classes[negative.index(False)]


def _resolve_loss(spec: Spec, output: str, imbalance: str) -> str:
    from dentpy.losses_classification import check_classification_loss

    name = spec.loss.name
    check_classification_loss(name)
    if name == "coral" and output != "ordinal":
        raise SpecError(
            "loss.name 'coral' is for ordinal grades",
            expected="objective.output: ordinal, or loss.name ce/focal",
            found=f"objective.output: {output}",
            fix="set loss.name=ce (or objective.output=ordinal if the classes are grades)",
        )
    if imbalance == "focal":
        if name == "coral":
            raise SpecError(
                "constraints.class_imbalance 'focal' cannot be combined with the coral loss",
                expected="class_imbalance weighted_loss/balanced_sampler/none with coral",
                found="class_imbalance: focal, loss.name: coral",
                fix="set constraints.class_imbalance=weighted_loss, or loss.name=focal",
            )
        return "focal"
    return name


def build_classification_task(
    spec: Spec, dataset_classes: Sequence[str], train_labels: Sequence[str]
) -> ClassificationTask:
    """Resolve the spec's classification objective against the dataset.

    `dataset_classes` are the dataset's class names in its own order; `train_labels` the
    class name of every training image (counts drive the imbalance handling and the
    check that every class can be learned).
    """
    if spec.objective.task != "classification":
        raise SpecError(
            "build_classification_task needs objective.task: classification",
            expected="classification",
            found=spec.objective.task,
        )
    output = spec.objective.output
    classes = _resolve_classes(spec, dataset_classes)
    if output == "binary" and len(classes) != 2:
        raise SpecError(
            f"binary classification needs exactly 2 classes, the dataset has {len(classes)}",
            expected="2 classes (e.g. sound, caries)",
            found=", ".join(classes),
            fix="set objective.output=multiclass (or ordinal for grades), or merge classes "
            "into two with `dentpy data convert --label-map`",
        )
    if output == "multiclass" and len(classes) < 2:
        raise SpecError(
            "classification needs at least 2 classes",
            expected="2 or more classes",
            found=", ".join(classes) or "none",
        )
    if output == "ordinal" and len(classes) < 3:
        raise SpecError(
            f"ordinal classification needs at least 3 grades, found {len(classes)}",
            expected="3 or more classes in grade order",
            found=", ".join(classes),
            fix="set objective.output=binary for two classes",
        )
    positive = _resolve_positive(spec, classes)
    counter = Counter(train_labels)
    unknown = sorted(set(counter) - set(classes))
    if unknown:
        raise SpecError(
            f"training images are labelled with classes the dataset does not list: "
            f"{', '.join(unknown)}",
            expected=f"labels among: {', '.join(classes)}",
            found=", ".join(unknown),
            fix="check the dataset's class list (`dentpy data check`)",
        )
    counts = tuple(int(counter.get(c, 0)) for c in classes)
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise SpecError(
            f"no training images of class {', '.join(repr(c) for c in empty)}: the network "
            "cannot learn it",
            expected="at least one training image per class (ideally dozens)",
            found=", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=True)),
            fix="add images of that class, change evaluation.split_seed / fractions, or "
            "merge or remove the class with `dentpy data convert --label-map`",
        )
    imbalance = resolve_imbalance(spec.constraints.class_imbalance, counts)
    loss_name = _resolve_loss(spec, output, imbalance)
    return ClassificationTask(
        classes=classes,
        output=output,
        positive_class=positive,
        imbalance=imbalance,
        class_counts=counts,
        loss_name=loss_name,
    )
