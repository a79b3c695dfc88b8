"""The search stage's configuration: what a Ray Tune search varies (``SearchSpace``), the whole search
(``SearchConfig``: what to train, the grid, where it runs), and its scheduler choices.

A leaf module: no Ray, no torch, nothing of the project but configs/train.py, so the CLI's parser and the
flows' parameters read these choices and defaults without importing the search.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from merflow.configs.base import Config, choice
from merflow.configs.names import RunId
from merflow.configs.train import TrainConfig

SCHEDULERS = ("asha", "fifo")  # ASHA with rungs per fold (training/search/scheduler.py), or none
SEARCHED = ("shots", "meta_lr", "pretrain_lr")  # the TrainConfig fields a search may vary
SELECTION_METRICS = ("accuracy", "uf1", "uar")  # what picks each fold's configuration (training/selection.py)
Scheduler = choice(SCHEDULERS)
SelectBy = choice(SELECTION_METRICS)


class SearchSpace(Config):
    """The settings searched: every combination is a configuration, evaluated on every fold; the α
    grid is scored inside each trial (α changes no weights)."""

    shots: tuple[int, ...] = Field((1, 3, 5, 10), description="support shots per class to search: a list or "
                                                               "start:stop:step")
    alphas: tuple[float, ...] = Field(tuple(round(0.1 * i, 1) for i in range(1, 11)),
                                      description="fusion weights α scored in every trial, d = d_micro + α·d_macro")
    # empty: the base configuration's value only
    meta_lr: tuple[float, ...] = Field((), description="meta-training learning rates to search, e.g. 0.05,0.01")
    pretrain_lr: tuple[float, ...] = Field((), description="pretraining learning rates to search")

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


class SearchConfig(Config):
    """A whole search: what to train, what to vary, where it runs; recorded in the run's row.

    Locations are kept as given; the search engine (flows/search.py) makes local ones absolute.
    """

    catalog_dir: str
    store: str
    protocol: str = "loso"
    dataset: str | None = "casme2"
    class_set: str | None = None
    out: str = "results"
    run: RunId | None = None  # a name of configs/names.py's form: it names the search's folders
    base: TrainConfig = Field(default_factory=TrainConfig)
    space: SearchSpace = Field(default_factory=SearchSpace)
    scheduler: Scheduler = Field(
        "asha", description="asha: stop weak configurations early, per fold, on validation; fifo: run all")
    select_by: SelectBy = Field("accuracy", description="validation metric that picks each fold's configuration and α")
    cpus_per_trial: Annotated[float, Field(gt=0)] = Field(1.0, description="CPUs per trial")
    gpus_per_trial: Annotated[float, Field(ge=0)] = Field(
        0.0, description="GPUs per trial, a fraction shares one GPU, e.g. 0.25")
    max_failures: Annotated[int, Field(ge=0)] = Field(2, description="retries of a failed trial")
    max_folds: int | None = Field(None, description="only the first N folds: a quick look, not a result to report")
    ray_address: str | None = Field(
        None, description="an existing Ray cluster: auto, or ray://HOST:10001 (default: a local Ray)")
    sample_list: str | None = None       # 'survey': only the samples of the survey's lists (tasks/sample_lists.py)
    sample_lists: str | None = None      # their folder (default $MERFLOW_SAMPLE_LISTS)
    feature_config: str | None = None    # hash of the store's feature configuration, where it holds several

    @model_validator(mode="after")
    def _validation_subjects(self):
        if self.base.validation_fraction == 0:
            raise ValueError("a search chooses each fold's configuration and α on its validation subjects: "
                             "validation_fraction must be above 0")
        return self

    def to_dict(self) -> dict:
        """Every setting as plain values (the base TrainConfig and the grid as their ``to_dict()``)."""
        return {name: getattr(self, name) for name in type(self).model_fields} | {
            "base": self.base.to_dict(), "space": self.space.to_dict()}

    def recorded(self) -> dict:
        """What decides the numbers (not where it ran): compared when a run is resumed."""
        settings = self.to_dict()
        for name in ("run", "ray_address", "cpus_per_trial", "gpus_per_trial", "max_failures", "out"):
            settings.pop(name)
        settings["base"].pop("device")
        return json.loads(json.dumps(settings))
