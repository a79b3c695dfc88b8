"""What a search tries: grids read from text, configuration ids and each trial's TrainConfig (the grid and
the search's configuration, ``SearchSpace`` and ``SearchConfig``, are configs/search.py's).

No Ray here: the CLI reads grids (``parse_grid``) and a notebook builds a search without starting an engine.
"""

from __future__ import annotations

from merflow.configs import config_hash
from merflow.configs.names import encoded_name
from merflow.configs.search import SearchConfig
from merflow.configs.train import TrainConfig

__all__ = ["config_id", "parse_grid", "safe_name", "trial_specs", "trial_train_config"]


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


def safe_name(text: str) -> str:
    """``text`` as a file name: itself where it is a name of configs/names.py's form, else a readable part and
    a digest (``encoded_name``: two fold names never share a trial's folder or part)."""
    return encoded_name(text)


def trial_train_config(search: SearchConfig, searched: dict) -> TrainConfig:
    """The TrainConfig of one configuration: the search's base with its searched settings and the α grid."""
    return search.base.replace(alphas=search.space.alphas, **searched)


def trial_specs(search: SearchConfig, fold_names: list[str]) -> list[dict]:
    """Every (configuration, fold), configuration-major: concurrent trials then work on different folds
    (no one waits for another's pretraining) and later configurations find the folds' encoders trained."""
    return [{"id": config_id(searched), "searched": searched, "fold": fold}
            for searched in search.space.configurations() for fold in fold_names]
