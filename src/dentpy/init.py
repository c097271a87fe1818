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
    patch: int = 96


TEMPLATES: dict[str, Template] = {
    "pulp-cbct": Template("pulp segmentation in CBCT", "[pulp]"),
    "ian-cbct": Template(
        "inferior alveolar nerve canals in CBCT", "[left_ian, right_ian]", "[left_ian, right_ian]"
    ),
    "teeth-cbct": Template("teeth and pulp in CBCT", "[tooth, pulp]"),
}

QUESTIONS = (
    ("What should the model segment? (pulp / ian / teeth)", "pulp"),
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
    text = resources.files("dentpy").joinpath("templates/spec.yaml").read_text()
    for key, value in {
        "title": chosen.title,
        "name": name,
        "classes": chosen.classes,
        "keep_largest": chosen.keep_largest,
        "data": data,
        "iterations": str(iterations or chosen.iterations),
        "patch": str(chosen.patch),
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
