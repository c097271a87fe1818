"""Render the card's JSON as Markdown for people (the JSON stays the source of truth)."""

from __future__ import annotations

import json
from typing import Any


def render_markdown(card: dict[str, Any]) -> str:
    export, use = card["export"], card["intended_use"]
    lines = [
        f"# Model card: {card['run']} ({card['task']})",
        "",
        *(f"> **{limit}**" for limit in use["limits"] if limit.startswith("SYNTHETIC")),
        "",
        "## Exported model",
        "",
        f"- file: `{export['file']}` ({export['format']}), sha256 `{export['sha256']}`",
        f"- exported {card['export_date']} from checkpoint {card['model']['checkpoint']} "
        f"(iteration {card['model']['checkpoint_iteration']}), CPU, fp32, eval mode",
        f"- architecture: {card['model']['architecture']} {card['model']['channels'] or ''}, "
        f"{card['model']['parameters']:,} parameters",
        f"- input `{export['input']['name']}` {export['input']['shape']} float32; "
        f"output `{export['output']['name']}` {export['output']['shape']}",
        f"- verification: max |exported - PyTorch| = {export['verification']['max_abs_diff']:.3g}"
        f" (tolerance {export['verification']['tolerance']:.3g}) on "
        f"{export['verification']['inputs']}",
    ]
    if export.get("exporter"):
        lines.append(f"- exporter: {export['exporter']}, opset {export.get('opset')}")
    lines += [f"- note: {note}" for note in export.get("notes", [])]
    lines += ["", "## Classes", "", "| index | name | label ids | FDI |", "|---|---|---|---|"]
    for row in card["classes"]:
        ids = ", ".join(str(i) for i in row.get("label_ids", [])) or "-"
        lines.append(f"| {row['index']} | {row['name']} | {ids} | {row.get('fdi') or '-'} |")
    lines += ["", "## Input", "", *_bullets(card["input"])]
    lines += ["", "## Preprocessing", "", *_bullets(card["preprocessing"], skip=("plan",))]
    lines += ["", "## Decoding", "", *_bullets(card["decoding"], skip=("task_plan",))]
    if card.get("postprocessing"):
        lines += ["", "## Postprocessing", "", *_bullets(card["postprocessing"])]
    lines += ["", "## Metrics", "", *_metrics(card["metrics"])]
    lines += ["", "## Training", "", *_bullets(card["training"])]
    lines += ["", "## Training data (fingerprint)", "", *_bullets(card["training_data"])]
    lines += ["", "## Intended use and limits", "", f"- {use['intended_use']}"]
    lines += [f"- {limit}" for limit in use["limits"]]
    lines += ["", "## Software", "", *_bullets(card["software"]), ""]
    return "\n".join(lines)


def _bullets(section: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    return [f"- {key}: {_short(value)}" for key, value in section.items() if key not in skip]


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value)}`"
    return str(value)


def _metrics(metrics: dict[str, Any]) -> list[str]:
    if "status" in metrics:
        return [metrics["status"]]
    lines = [
        f"Split {metrics.get('split')}, checkpoint {metrics.get('checkpoint')} (iteration "
        f"{metrics.get('checkpoint_iteration')}). {metrics.get('model_selection') or ''}",
        "",
    ]
    if "warning" in metrics:
        lines += [f"**Warning:** {metrics['warning']}", ""]
    if "per_class" in metrics:
        lines += ["| class | metric | mean | 95% CI |", "|---|---|---|---|"]
        for name, row in metrics["per_class"].items():
            for metric, value in row["metrics"].items():
                lines.append(
                    f"| {name} | {metric} | {_num(value['mean'])} | {_ci(value['ci95'])} |"
                )
    elif "ap" in metrics.get("metrics", {}):
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_short(v)} |" for k, v in metrics["metrics"].items()]
    else:
        lines += ["| metric | value | 95% CI |", "|---|---|---|"]
        for key, value in metrics.get("metrics", {}).items():
            lines.append(f"| {key} | {_num(value)} | {_ci(metrics['ci95'].get(key))} |")
        lines += ["", f"Decision threshold {metrics.get('threshold')}: "
                  f"{metrics.get('threshold_policy')}"]  # fmt: skip
    if metrics.get("ci_definition"):
        lines += ["", f"Confidence intervals: {metrics['ci_definition']}"]
    lines += ["", "Definitions:", ""]
    lines += [f"- {k}: {v}" for k, v in metrics.get("definitions", {}).items()]
    return lines


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _ci(ci: Any) -> str:
    if not isinstance(ci, dict) or ci.get("low") is None:
        return "-"
    return f"[{_num(ci['low'])}, {_num(ci['high'])}]"
