"""Validation split into per-item predictions and one score over all items, so that
several processes (DDP) can share it.

In one process every item (case, image) is predicted and scored, as before. Under DDP each
rank predicts its own share of the items, the results are gathered in item order, and
every rank scores the same ordered list: the scores are those of one process predicting
everything, reached in about 1/N of the time, and every rank takes the same
best-checkpoint and LR-plateau decisions. (The alternative, rank 0 validating alone while
the others wait, costs the whole validation every `validate_every` steps.)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def shard(costs: Sequence[float], rank: int, world_size: int) -> list[int]:
    """The items (indices, ascending) rank `rank` of `world_size` predicts: longest first,
    each to the rank with the least cost so far (ties: the lower rank), so large and small
    volumes spread evenly. Deterministic, so every rank computes the same division."""
    if world_size <= 1:
        return list(range(len(costs)))
    load = [(0.0, r) for r in range(world_size)]
    owned: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        total, r = heapq.heappop(load)
        owned[r].append(index)
        heapq.heappush(load, (total + costs[index], r))
    return sorted(owned[rank])


@dataclass
class ShardedValidation:
    """`predict(network, indices)` -> one result per index (picklable, small: per-class
    Dice, a probability row, an image's boxes); `score(results in item order)` -> the
    scores, `score` among them. `costs`: relative cost per item (e.g. voxels), for an even
    division; None: equal."""

    n_items: int
    predict: Callable[[torch.nn.Module, Sequence[int]], list[Any]]
    score: Callable[[list[Any]], dict[str, float]]
    costs: Sequence[float] | None = None

    def __call__(self, network: torch.nn.Module) -> dict[str, float]:
        return self.score(predict_shared(network, self.n_items, self.predict, self.costs))


def predict_shared(
    network: torch.nn.Module,
    n_items: int,
    predict: Callable[[torch.nn.Module, Sequence[int]], list[Any]],
    costs: Sequence[float] | None = None,
) -> list[Any]:
    """`predict(network, indices)` over all `n_items`, in item order, on every rank: each
    rank predicts its share (`shard` by `costs`; None: equal) and the results are gathered.
    In one process, one call over every item."""
    from dentpy.engine import distributed

    if not distributed.active():
        return predict(network, range(n_items))
    own = shard(costs if costs is not None else [1.0] * n_items, *distributed.position())
    ordered: list[Any] = [None] * n_items
    for indices, values in distributed.gather_all((own, predict(network, own))):
        for index, value in zip(indices, values, strict=True):
            ordered[index] = value
    return ordered
