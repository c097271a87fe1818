"""The plain data a pipeline description is made of: stages in order, and what kind each is."""

from __future__ import annotations

from dataclasses import dataclass

# Stage keys in pipeline order; every Pipeline holds each of them once.
STAGE_KEYS: tuple[str, ...] = (
    "input",
    "preprocess",
    "augment",
    "model",
    "training",
    "decode",
    "postprocess",
    "outputs",
    "metrics",
)
# What kind of step each stage is (the diagram colours and the legend use it).
STAGE_KIND: dict[str, str] = {
    "input": "data",
    "preprocess": "transform",
    "augment": "training",
    "model": "network",
    "training": "training",
    "decode": "transform",
    "postprocess": "transform",
    "outputs": "data",
    "metrics": "evaluation",
}


@dataclass(frozen=True)
class Stage:
    """One step: `shape` is the tensor/array shape text of what the step hands on."""

    key: str
    title: str
    details: tuple[str, ...]
    shape: str = ""
    training_only: bool = False

    @property
    def kind(self) -> str:
        return STAGE_KIND.get(self.key, "transform")


@dataclass(frozen=True)
class Pipeline:
    title: str
    subtitle: str
    stages: tuple[Stage, ...]
    # Where class counts and shapes came from ("the run's plan.json", "the spec", ...).
    source: str

    def stage(self, key: str) -> Stage:
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise KeyError(key)
