"""`dentpy init`: write a commented spec from a template or from a few questions."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dentpy.errors import SpecError
from dentpy.registry import did_you_mean


@dataclass(frozen=True)
class Template:
    title: str
    classes: str
    keep_largest: str = "[]"
    iterations: int = 2000
    patch: int | str = 96
    file: str = "spec.yaml"
    # Instance templates only.
    instances: str = ""
    spacing: str = "median"
    # Detection templates only.
    box_class: str = "label"
    # Base width 16: ~0.6 s (bitewing) / ~1.2 s (panoramic) per batch of 8 on one CPU thread;
    # use 32 or more on a GPU.
    width_features: int = 16
    # Classification templates only.
    output: str = ""
    positive: str = "auto"
    # Measured on 2 CPU cores (docs/classification.md): tiny_cnn at 128 x 96 reaches the
    # issue's bar in ~7 minutes; resnet18 is ~28x slower per step there
    # (benchmarks/classifier_step.py); use it on a GPU.
    model: str = "tiny_cnn"
    loss: str = "ce"
    height: int = 128
    width: int = 96


# ToothFairy2/3 names of the canals, learnt with the teeth for apex-to-canal distances.
_CANALS = ("Left Inferior Alveolar Canal", "Right Inferior Alveolar Canal")
INSTANCE_ITERATIONS = 3000

TEMPLATES: dict[str, Template] = {
    "caries-boxes": Template(
        "caries lesion boxes on bitewings (COCO / YOLO)",
        "auto",
        iterations=1800,
        file="detection.yaml",
        height=256,
        width=384,
    ),
    "teeth-boxes": Template(
        "tooth boxes numbered by FDI on panoramics (tooth enumeration)",
        "auto",
        iterations=1000,
        file="detection.yaml",
        height=256,
        width=640,
        box_class="tooth",
    ),
    "pulp-cbct": Template("pulp segmentation in CBCT", "[pulp]"),
    "ian-cbct": Template(
        "inferior alveolar nerve canals in CBCT", "[left_ian, right_ian]", "[left_ian, right_ian]"
    ),
    "teeth-cbct": Template("teeth and pulp in CBCT", "[tooth, pulp]"),
    "teeth-fdi-cbct": Template(
        "every tooth by FDI number in CBCT (instance segmentation)",
        f"[{', '.join(_CANALS)}]",
        f"[{', '.join(_CANALS)}]",
        iterations=INSTANCE_ITERATIONS,
        patch="[80, 64, 48]",
        file="instance.yaml",
        instances="teeth",
        spacing="[1.0, 1.0, 1.0]",
    ),
    "pulp-instances-cbct": Template(
        "every tooth and its pulp by FDI number in CBCT (pulp = 100 + FDI)",
        f"[{', '.join(_CANALS)}]",
        f"[{', '.join(_CANALS)}]",
        iterations=INSTANCE_ITERATIONS,
        patch="[96, 80, 64]",
        file="instance.yaml",
        instances="teeth+pulp",
        spacing="[0.6, 0.6, 0.6]",
    ),
    "caries-binary": Template(
        "caries present? (tooth crops from bitewings)",
        "auto",
        iterations=2500,
        file="classification.yaml",
        output="binary",
        positive="caries",
    ),
    "caries-severity": Template(
        "caries grade: sound < mild < moderate < severe (ICCMS radiographic depth)",
        "[sound, mild, moderate, severe]",
        iterations=2500,
        file="classification.yaml",
        output="ordinal",
        loss="coral",
    ),
}

QUESTIONS = (
    (
        "What should the model learn? (pulp / ian / teeth / fdi (each tooth by number) / "
        "pulps (each tooth's pulp) / caries / grade)",
        "pulp",
    ),
    ("Where is the dataset folder?", "data"),
    ("How many training iterations?", "2000"),
)


def render(template: str, name: str, data: str, iterations: int | None = None) -> str:
    if template not in TEMPLATES:
        raise SpecError(
            f"unknown template '{template}'",
            expected=f"one of: {', '.join(TEMPLATES)}",
            found=template,
            fix=did_you_mean(template, list(TEMPLATES)),
        )
    chosen = TEMPLATES[template]
    text = resources.files("dentpy").joinpath(f"templates/{chosen.file}").read_text()
    for key, value in {
        "output": chosen.output,
        "positive": chosen.positive,
        "model": chosen.model,
        "loss": chosen.loss,
        "height": str(chosen.height),
        "width": str(chosen.width),
        "title": chosen.title,
        "name": name,
        "classes": chosen.classes,
        "keep_largest": chosen.keep_largest,
        "data": data,
        "iterations": str(iterations or chosen.iterations),
        "patch": str(chosen.patch),
        "instances": chosen.instances,
        "box_class": chosen.box_class,
        "width_features": str(chosen.width_features),
        "spacing": chosen.spacing,
    }.items():
        text = text.replace("{" + key + "}", value)
    return text


def write_spec(out: Path, text: str, force: bool = False) -> Path:
    if out.exists() and not force:
        raise SpecError(
            f"{out} already exists",
            expected="a new file name",
            found="an existing file (dentpy never overwrites a spec silently)",
            fix="choose another --out, or pass --force to replace it",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
