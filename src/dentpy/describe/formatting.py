"""Numbers, shapes and name lists written the same way in every stage."""

from __future__ import annotations

from typing import Any

# Longer class lists are cut to this many names plus a count (a box stays readable).
LIST_AT_MOST = 6


def tuple_text(shape: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def dims(values: Any, unit: str = "") -> str:
    text = " × ".join(number(v) for v in values)
    return f"{text} {unit}".rstrip()


def number(value: Any) -> str:
    as_float = float(value)
    if as_float.is_integer() and abs(as_float) >= 10:
        return str(int(as_float))
    return f"{as_float:g}"


def listed(names: tuple[str, ...] | list[str]) -> str:
    names = list(names)
    if len(names) <= LIST_AT_MOST:
        return ", ".join(names)
    return ", ".join(names[:LIST_AT_MOST]) + f", … (+{len(names) - LIST_AT_MOST})"


def percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def value_range(values: tuple[float, float]) -> str:
    return f"{number(values[0])}–{number(values[1])}"
