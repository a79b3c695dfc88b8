"""The search stage's grid: what a Ray Tune search varies (training/search/), and its scheduler choices.

A leaf module: no Ray, no torch, nothing of the project, so the CLI's parser and the flows' parameters
read these choices and defaults without importing the search.
"""

from __future__ import annotations

from pydantic import field_validator

from merflow.configs.base import Config

SCHEDULERS = ("asha", "fifo")  # ASHA with rungs per fold (training/search/scheduler.py), or none
SEARCHED = ("shots", "meta_lr", "pretrain_lr")  # the TrainConfig fields a search may vary


class SearchSpace(Config):
    """The settings searched: every combination is a configuration, evaluated on every fold; the α
    grid is scored inside each trial (α changes no weights)."""

    shots: tuple[int, ...] = (1, 3, 5, 10)
    alphas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))
    meta_lr: tuple[float, ...] = ()       # empty: the base configuration's value only
    pretrain_lr: tuple[float, ...] = ()

    @field_validator("shots")
    @classmethod
    def _at_least_one_shot(cls, shots: tuple[int, ...]) -> tuple[int, ...]:
        if any(value < 1 for value in shots):
            raise ValueError(f"shots must be at least 1, got {shots}")
        return shots

    def configurations(self) -> list[dict]:
        """Every combination of the searched settings (shots first), as the TrainConfig fields it sets."""
        grid = [{"shots": shots} for shots in self.shots]
        for name in ("meta_lr", "pretrain_lr"):
            values = getattr(self, name)
            if values:
                grid = [g | {name: v} for g in grid for v in values]
        return grid
