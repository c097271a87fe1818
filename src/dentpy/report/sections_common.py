"""Report sections every task has: the problem formulation, the pipeline diagram, the data,
training, and the environment."""

from __future__ import annotations

import copy
import platform
from typing import Any

from dentpy.report import html_page as h
from dentpy.report.run_inputs import WITHHELD, RunInputs, fmt

# The spec's sections in the order a reader needs them.
SPEC_SECTIONS = (
    "objective",
    "input",
    "metrics",
    "evaluation",
    "paradigm",
    "preprocess",
    "augment",
    "model",
    "loss",
    "optimizer",
    "schedule",
    "train",
    "postprocess",
    "constraints",
    "pretrain",
)


def redacted_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with every local path withheld (dataset location, unlabeled data, weight
    files): a report may travel further than the data it describes."""
    clean = copy.deepcopy(spec)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str) and ("/" in node or "\\" in node or node.startswith("~")):
            return WITHHELD
        return node

    clean = scrub(clean)
    for key in ("data", "unlabeled"):
        if (clean.get("input") or {}).get(key):
            clean["input"][key] = WITHHELD
    return clean


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value_text(v)}" for k, v in value.items())
    if value is None:
        return "—"
    return str(value)


def summary_sentences(inputs: RunInputs) -> list[str]:
    """The formulation in a few plain sentences."""
    spec = inputs.spec
    objective = spec.get("objective", {})
    data = spec.get("input", {})
    model = spec.get("model", {})
    train = spec.get("train", {})
    optimizer = spec.get("optimizer", {})
    evaluation = spec.get("evaluation", {})
    classes = inputs.plan.get("task", {}).get("class_names") or inputs.plan.get("task", {}).get(
        "classes"
    )
    class_text = ", ".join(map(str, classes)) if classes else _value_text(objective.get("classes"))
    if len(class_text) > 240:
        class_text = f"{len(classes or [])} classes (listed in the metric tables)"
    modality = {"xray": "X-ray"}.get(str(data.get("modality")), str(data.get("modality")).upper())
    dims = str(data.get("dimensionality", "")).upper()
    what = {
        "segmentation": f"Semantic segmentation of {class_text} in {dims} {modality} scans.",
        "instance": f"Instance segmentation ({objective.get('instances')}): every tooth and its "
        f"pulp labelled with its FDI number, in {dims} {modality} scans"
        + (
            f"; also {', '.join(map(str, objective['classes']))}."
            if isinstance(objective.get("classes"), list) and objective.get("classes")
            else "."
        ),
        "classification": f"{str(objective.get('output', '')).capitalize()} classification of "
        f"{dims} {modality} images into {class_text}"
        + (
            f" (positive class: {objective.get('positive_class')})."
            if objective.get("output") == "binary"
            else "."
        ),
        "detection": f"Detection of {objective.get('box_class')} boxes ({class_text}) in "
        f"{dims} {modality} images.",
    }[inputs.kind]
    how = (
        f"Model {model.get('name')} trained for {train.get('iterations')} iterations "
        f"(batch {train.get('batch_size')}) with the {spec.get('loss', {}).get('name')} loss, "
        f"{optimizer.get('name')} at learning rate {optimizer.get('lr')}, "
        f"{spec.get('schedule', {}).get('name')} schedule; paradigm "
        f"{spec.get('paradigm', {}).get('kind')}."
    )
    selection = inputs.summary.get("model_selection", "best checkpoint chosen on validation")
    baselines = evaluation.get("baselines") or []
    judged = (
        f"Evaluated on the {inputs.split} split; {selection}; compared with the built-in "
        f"baseline(s): {', '.join(baselines) if baselines else 'none'}."
    )
    return [what, how, judged]


def formulation_section(inputs: RunInputs) -> h.Section:
    import yaml

    spec = redacted_spec(inputs.spec)
    section = h.Section("formulation", "Problem formulation")
    for sentence in summary_sentences(inputs):
        section.add(h.paragraph(sentence, "lead"))
    section.add(
        h.paragraph(
            "The resolved spec of this run (every default filled in), section by section. "
            "Local paths, such as the dataset's location, are withheld.",
            "note",
        )
    )
    blocks = []
    ordered = [s for s in SPEC_SECTIONS if s in spec] + [
        s for s in spec if s not in SPEC_SECTIONS and isinstance(spec[s], dict)
    ]
    for name in ordered:
        items = [(k, _value_text(v)) for k, v in spec[name].items()]
        blocks.append(f"<div>{h.heading(name)}{h.definition_list(items)}</div>")
    section.add(h.grid(blocks))
    raw = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    section.add(h.details("the spec as YAML (paths withheld)", h.preformatted(raw)))
    return section


def pipeline_section(inputs: RunInputs) -> h.Section:
    """The diagram from dentpy.describe (data -> preprocessing -> model -> outputs)."""
    from dentpy.describe import describe_pipeline
    from dentpy.report.diagram import pipeline_svg
    from dentpy.spec import load_spec

    section = h.Section("pipeline", "Pipeline")
    spec = load_spec(inputs.root / "spec.yaml")
    pipeline = describe_pipeline(spec, inputs.root)
    section.add(
        h.raw_svg(
            pipeline_svg(pipeline),
            "what this run does to an image, from file to result (from `dentpy describe`)",
        )
    )
    return section


def data_section(inputs: RunInputs) -> h.Section:
    fingerprint = inputs.fingerprint
    section = h.Section("data", "Dataset fingerprint")
    if not fingerprint:
        return section.add(h.paragraph("The run folder holds no fingerprint.json.", "note"))
    counts = [
        ("layout", fingerprint.get("layout", "-")),
        ("cases / images", fingerprint.get("n_cases", "-")),
        ("of which in the dataset's own test set", fingerprint.get("n_test_cases", "-")),
        ("fingerprinted", fingerprint.get("n_cases_fingerprinted", "-")),
    ]
    for name in ("train", "val", "test"):
        if name in inputs.splits:
            counts.append((f"{name} split (this run)", len(inputs.splits[name])))
    parts = [
        h.table(
            ["quantity", "value"], counts, "counts; the dataset's name and location are withheld"
        )
    ]
    geometry = []
    for key, label, unit in (
        ("spacing_mm", "voxel spacing", "mm"),
        ("shape", "scan size", "voxels"),
        ("size_wh", "image size (width, height)", "px"),
        ("box_size_wh", "box size (width, height)", "px"),
        ("boxes_per_image", "boxes per image", ""),
    ):
        stats = fingerprint.get(key)
        if isinstance(stats, dict) and "median" in stats:
            geometry.append(
                [label, unit]
                + [
                    " × ".join(fmt(v, 2).rstrip("0").rstrip(".") for v in stats[s])
                    for s in ("min", "median", "max")
                ]
            )
    if "pixel_spacing_mm" in fingerprint:
        spacing = fingerprint.get("pixel_spacing_mm")
        geometry.append(
            ["pixel spacing", "mm", "-", _value_text(spacing) if spacing else "not stored", "-"]
        )
    if geometry:
        parts.append(h.table(["size", "unit", "min", "median", "max"], geometry))
    intensity = fingerprint.get("intensity")
    if isinstance(intensity, dict):
        rows = [[f"percentile {k}", fmt(v, 1)] for k, v in intensity.get("percentiles", {}).items()]
        for key in ("mean", "std", "min", "max"):
            if key in intensity:
                rows.append([key, fmt(intensity[key], 1)])
        region = intensity.get("region", "whole image")
        n = intensity.get("n_voxels_sampled", intensity.get("n_pixels_sampled"))
        parts.append(
            h.table(["intensity", "value"], rows, f"gray values of the {region}, {n} sampled")
        )
    parts.append(_class_table(fingerprint))
    other = []
    for key in ("orientations", "dtypes", "channels", "exif_orientations"):
        if key in fingerprint:
            other.append((key, _value_text(fingerprint[key])))
    if "n_images_without_boxes" in fingerprint:
        other.append(("images without boxes", fingerprint["n_images_without_boxes"]))
    section.add(h.flow(parts))
    if other:
        section.add(h.definition_list(other))
    return section


def _class_table(fingerprint: dict[str, Any]) -> str:
    if "label_fractions" in fingerprint:
        labels = fingerprint.get("labels", {})
        rows = [
            [name, labels.get(name, "-"), f"{100 * float(share):.3f} %"]
            for name, share in fingerprint["label_fractions"].items()
        ]
        return h.table(["label", "id", "share of voxels"], rows, "class sizes")
    for key, what in (("class_counts", "images"), ("box_counts", "boxes")):
        if key in fingerprint:
            counts = fingerprint[key]
            total = sum(int(v) for v in counts.values()) or 1
            rows = [[c, int(v), f"{100 * int(v) / total:.1f} %"] for c, v in counts.items()]
            return h.table(["class", what, "share"], rows, "class sizes")
    return ""


def training_section(inputs: RunInputs) -> h.Section:
    from dentpy.report.run_plots import training_curves

    section = h.Section("training", "Training")
    train = inputs.train_summary
    facts = [
        ("iterations", train.get("iterations", "-")),
        ("best validation score", fmt(train.get("best_validation_score"))),
        ("selected by", train.get("selected_by", inputs.spec.get("metrics", {}).get("select_by"))),
        (
            "checkpoint evaluated",
            f"{inputs.summary.get('checkpoint', 'best')} "
            f"(iteration {inputs.summary.get('checkpoint_iteration', '-')})",
        ),
    ]
    for key in ("n_train_cases", "n_val_cases", "n_train_images", "n_val_images"):
        if key in train:
            facts.append((key.removeprefix("n_").replace("_", " "), train[key]))
    section.add(h.definition_list(facts))
    if not inputs.training_log:
        return section.add(h.paragraph("No training_log.csv in the run folder.", "note"))
    section.add(
        h.image(
            training_curves(inputs.training_log),
            "training curves",
            "training loss, validation metrics and learning rate, at each validation",
        )
    )
    return section


def environment_section(inputs: RunInputs) -> h.Section:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    train = inputs.train_summary
    section = h.Section("environment", "Environment and run time")
    trained = [
        ("device", train.get("device", "-")),
        ("precision", train.get("precision", "-")),
        ("training time", f"{fmt(train.get('seconds'), 1)} s"),
        ("pretrained weights", "yes" if train.get("pretrained") else "none"),
    ]
    here = [
        ("dentpy", version("dentpy")),
        ("python", platform.python_version()),
        ("torch", version("torch")),
        ("monai", version("monai")),
        ("numpy", version("numpy")),
        ("platform", platform.platform(terse=True)),
    ]
    section.add(
        h.grid(
            [
                f"<div>{h.heading('training (train_summary.json)')}"
                f"{h.definition_list(trained)}</div>",
                f"<div>{h.heading('software that wrote this report')}"
                f"{h.definition_list(here)}</div>",
            ]
        )
    )
    return section
