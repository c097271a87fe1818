"""Loss names and weighted sums of two losses, as a spec writes them: `dice_ce`,
`dice+focal`, `0.7*dice + 0.3*focal`.

Parsed by one strict regular expression, never evaluated. Torch-free, so the spec can
check the syntax when it is parsed; whether each term is a registered loss is checked
when the task builds its loss (the valid names depend on the task).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dentpy.errors import SpecError

MODES = ("auto", "binary", "multiclass", "multilabel")

_WEIGHT = r"(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?"
_NAME = r"([a-z][a-z0-9_]*)"
_TERM = _WEIGHT + _NAME
_EXPRESSION = re.compile(rf"^\s*{_TERM}\s*(?:\+\s*{_TERM}\s*)?$")


@dataclass(frozen=True)
class LossTerm:
    weight: float
    name: str


def parse_loss_expression(text: str) -> list[LossTerm]:
    """`"0.7*dice + 0.3*focal"` -> [LossTerm(0.7, "dice"), LossTerm(0.3, "focal")].

    One or two terms; a term without a weight has weight 1. Weights are non-negative
    decimal numbers and at least one must be positive.
    """
    match = _EXPRESSION.match(text)
    if match is None:
        raise SpecError(
            f"loss.name '{text}' is not a loss name or a weighted sum of two",
            expected="a name (dice_ce) or a sum of two: 'dice+focal', '0.7*dice + 0.3*focal'",
            found=text,
            fix="write lower-case registered names joined by '+', each optionally "
            "preceded by a number and '*'",
        )
    weight_a, name_a, weight_b, name_b = match.groups()
    terms = [LossTerm(float(weight_a) if weight_a else 1.0, name_a)]
    if name_b is not None:
        terms.append(LossTerm(float(weight_b) if weight_b else 1.0, name_b))
    if all(term.weight == 0 for term in terms):
        raise SpecError(
            f"loss.name '{text}' weights every term by zero",
            expected="at least one positive weight",
            found=text,
        )
    return terms
