"""What a search tries: its grid, its configuration, configuration ids and each trial's TrainConfig.

No Ray here: the CLI reads grids (``parse_grid``) and a notebook builds a search without starting an engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field

from merflow.configs import config_hash
from merflow.configs.search import SCHEDULERS, SEARCHED, SearchSpace
from merflow.configs.train import TrainConfig
from merflow.storage import locations

__all__ = ["SCHEDULERS", "SEARCHED", "SearchConfig", "SearchSpace", "config_id", "parse_grid", "safe_name",
           "trial_specs", "trial_train_config"]


def parse_grid(text: str, kind=float) -> tuple:
    """'0.1:1.0:0.1' (start:stop:step, stop included) or '1,3,5' into a sorted tuple without repeats."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(part) for part in text.split(",") if part.strip()]
        if kind is int:
            if any(v != int(v) for v in values):
                raise ValueError
            values = [int(v) for v in values]
    except ValueError:
        raise ValueError(f"can't read the grid {text!r}: give start:stop:step (e.g. 0.1:1.0:0.1) or a comma list "
                         f"(e.g. 1,3,5){' of whole numbers' if kind is int else ''}") from None
    if not values:
        raise ValueError(f"the grid {text!r} is empty")
    return tuple(sorted(set(values)))


def config_id(searched: dict) -> str:
    """A short name of a configuration, the same for the same settings in any run."""
    return "c" + config_hash(searched, length=8)


# A dataclass, not a configs/ model: it holds a TrainConfig (configs/train.py, a pydantic model), which a
# leaf module can't import; its grid, SearchSpace, is the leaf's (configs/search.py).
@dataclass(frozen=True)
class SearchConfig:
    """A whole search: what to train, what to vary, where it runs; recorded in the run's row."""

    catalog_dir: str
    store: str
    protocol: str = "loso"
    dataset: str | None = "casme2"
    class_set: str | None = None
    out: str = "results"
    run: str | None = None
    base: TrainConfig = field(default_factory=TrainConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    scheduler: str = "asha"
    select_by: str = "accuracy"          # the validation metric that picks each fold's configuration
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2                # retries of a failed trial
    max_folds: int | None = None         # the first N folds only: a quick look, not a result to report
    ray_address: str | None = None       # None: a local Ray; "auto" or ray://HOST:10001: a cluster
    sample_list: str | None = None       # 'survey': only the samples of the survey's lists (tasks/sample_lists.py)
    sample_lists: str | None = None      # their folder (default $MERFLOW_SAMPLE_LISTS)
    feature_config: str | None = None    # hash of the store's feature configuration, where it holds several

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError("cpus per trial must be positive and gpus per trial not negative")
        if self.base.validation_fraction == 0:
            raise ValueError("a search chooses each fold's configuration and α on its validation subjects: "
                             "validation_fraction must be above 0")

    def to_dict(self) -> dict:
        """Every setting as plain values (the base TrainConfig and the grid as dicts)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {
            "base": self.base.to_dict(), "space": self.space.to_dict()}

    def replace(self, **changes) -> SearchConfig:
        """A copy with some fields changed, checked again."""
        return dataclasses.replace(self, **changes)

    def absolute(self) -> SearchConfig:
        """The same search with local paths made absolute (Tune runs each trial in its own folder) and
        URLs as they are (storage/locations.py)."""
        lists = self.sample_lists or (os.environ.get("MERFLOW_SAMPLE_LISTS") if self.sample_list else None)
        return dataclasses.replace(self, catalog_dir=locations.normalise(self.catalog_dir),
                                   store=locations.normalise(self.store), out=locations.normalise(self.out),
                                   sample_lists=locations.normalise(lists) if lists else None)

    def recorded(self) -> dict:
        """What decides the numbers (not where it ran): compared when a run is resumed."""
        settings = self.to_dict()
        for name in ("run", "ray_address", "cpus_per_trial", "gpus_per_trial", "max_failures", "out"):
            settings.pop(name)
        settings["base"].pop("device")
        return json.loads(json.dumps(settings))


def safe_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``_.-`` as one ``_`` (file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def trial_train_config(search: SearchConfig, searched: dict) -> TrainConfig:
    """The TrainConfig of one configuration: the search's base with its searched settings and the α grid."""
    return search.base.replace(alphas=search.space.alphas, **searched)


def trial_specs(search: SearchConfig, fold_names: list[str]) -> list[dict]:
    """Every (configuration, fold), configuration-major: concurrent trials then work on different folds
    (no one waits for another's pretraining) and later configurations find the folds' encoders trained."""
    return [{"id": config_id(searched), "searched": searched, "fold": fold}
            for searched in search.space.configurations() for fold in fold_names]
