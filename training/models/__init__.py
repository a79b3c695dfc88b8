"""The model registry: ``merflow train --model NAME`` (and ``tune``) look a model up here.

One small interface, the same for every model. ``MODELS[name]`` is a ``ModelInfo`` saying what the model
reads, whether it pretrains on CK+ once a run, how many folds it trains at once and how it is run by
default; ``ModelInfo.load()`` imports its module, which defines:

- ``NAME``: the name, as written in the result tables' ``method`` column (storage/results.py);
- ``Config``: a configs.base.Config model (frozen, validated) of everything that decides its numbers, with ``to_dict()``, ``seed``,
  ``recipe`` (a name, or None where the model has none; the tables' ``recipe`` column) and
  ``validation_fraction`` (the share of training subjects kept to choose on; 0.0 where nothing is chosen);
- ``default_config(**overrides) -> Config``;
- ``plan(data, config, protocol, dataset, class_set) -> RunPlan``: what the model makes of a protocol
  loaded by flows/protocol.py ``load_protocol`` (``data``: a training.run.ProtocolData): the folds it trains, the notes of the run's row,
  the run's identity, the lines to tell before training, the runs row's configuration;
- ``prepare(data, config, checkpoints)`` (``checkpoints``: a ``CheckpointCache``): the run-wide work before any fold (Meta-MMFNet: the CK+ macro
  pretraining, checkpointed), passed to ``run_folds`` as ``prepared``; None where there is none;
- ``run_folds(data, folds, config, checkpoints, *, prepared=None, on_fold=None) -> list[FoldResult]``:
  train and evaluate ``folds`` (training.folds.Fold), checkpointing in ``checkpoints``, in their
  order; ``on_fold(done, len(folds), fold)`` hears each finished fold. A fold nothing can be trained on
  comes back with ``skipped`` (its reason) and no predictions; the run goes on without it;
- ``smoke_step(seed=0) -> dict``: a forward pass and one optimisation step on a tiny random batch, for
  the registry's test (tests/test_models.py): ``{"loss": float, "change": float, "logits": (n, classes)}``
  (a model with no optimisation step reports its one update instead: nearest-centroid, the class means moving).

What a whole run does around them is the same for every model (flows/protocol.py ``train_protocol`` without
Prefect, flows/train.py with a task per unit): load the protocol, plan, prepare, train the folds
(``ModelInfo.folds_per_task`` at a time), the floor (``nearest_centroid.floor``) on the folds that trained,
the metrics, and the tables written through storage/results.py ``write_run``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # the registry itself imports nothing heavy (the CLI's parser reads it)
    import pandas as pd

    from merflow.training.folds import Fold

# none: every sample; undersample: every class subsampled to the smallest before the folds are built (the
# survey's, leaky: the held-out subject's samples are removed by their labels, so its classes become the
# training minority); undersample-training: each fold's training samples only, after the split (honest).
BALANCES = ("none", "undersample", "undersample-training")
LEAKY_BALANCES = ("undersample",)  # as training/folds.py LEAKY_BALANCES (this module imports nothing heavy)


class PublishedSettings:
    """A model configuration whose authors fixed some settings: ``PUBLISHED`` maps each such field to the
    authors' value (the model module says where each is read). ``recipe`` is "published" only when every
    one of them is the authors', else "custom"; ``recipe_differences`` lists what differs, as recorded in
    the runs row and shown to the user."""

    PUBLISHED: ClassVar[dict[str, Any]] = {}

    @property
    def recipe_differences(self) -> list[str]:
        """Each fixed setting that is not the authors': ``"epochs 3 (published: 150)"``."""
        return [f"{name} {getattr(self, name)} (published: {value})" for name, value in self.PUBLISHED.items()
                if getattr(self, name) != value]

    @property
    def recipe(self) -> str:
        """'published' when every setting the authors fixed is theirs, else 'custom'."""
        return "custom" if self.recipe_differences else "published"


class CheckpointCache(Protocol):
    """Where a model's stages keep what they made (``checkpoints`` below): storage/checkpoints.py
    ``Checkpoints``, which the flows hand in (training/ opens no location itself)."""

    def folder(self, *parts: str) -> CheckpointCache:
        """The checkpoints of a sub-folder (a fold's)."""

    def load_or_make(self, stage: str, key: str, make: Callable[[], Any], codec: str = "torch") -> Any:
        """The payload saved for ``stage`` and ``key``, or ``make()``'s, saved first."""


@dataclass
class FoldResult:
    """One fold's outcome, the same for every model."""

    fold: Fold
    predictions: pd.DataFrame | None   # training.run.fold_predictions' columns; None where the fold was skipped
    chosen: dict                       # what the fold chose on its validation subjects ({} where nothing is)
    skipped: str | None = None         # why nothing could be trained on the fold


@dataclass
class RunPlan:
    """What a model makes of a loaded protocol before any fold trains."""

    folds: list[Fold]                  # the folds it trains (survey-cnn: rebuilt on the balanced samples)
    notes: dict                        # what the runs row records besides the configuration (its "data")
    identity: dict                     # what the run's weights are made from (storage.checkpoints.check_run_identity)
    messages: list[str]                # lines to tell before training
    settings: dict                     # the runs row's configuration (the notes are added as "data")
    leaky: bool = False                # a held-out sample's person has other clips in training (LOVO)
    shots: int | None = None           # the tables' shots column (Meta-MMFNet's support shots; None elsewhere)


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model reads and how a run uses it (its module implements the interface above)."""

    name: str
    module: str                      # the module implementing the interface above
    description: str
    # The feature store's arrays a fold reads per sample (storage/features.py): ``inputs`` it cannot run
    # without (a store lacking one is one line at load: training.data.FeatureSource.require), and
    # ``optional_inputs`` read where the store holds them (an imported group holds only what it imported),
    # which the model asks for itself (``require``) where it needs one.
    inputs: tuple[str, ...]
    macro_pretraining: bool          # also reads CK+ macro-expressions
    default_balance: str             # "none" or "undersample" (training.folds.undersample)
    tunable: bool                    # `merflow tune` searches it
    # Folds trained in one call of run_folds (one Prefect task of the train flow): None, all of them at
    # once (survey-cnn stacks its folds' networks; nearest-centroid builds its feature matrix once).
    folds_per_task: int | None = 1
    optional_inputs: tuple[str, ...] = ()

    def load(self) -> ModuleType:
        """The module implementing the interface above."""
        return importlib.import_module(self.module)


MODELS: dict[str, ModelInfo] = {info.name: info for info in [
    ModelInfo("meta-mmfnet", "merflow.training.models.meta_mmfnet",
              "Meta-MMFNet (Gong et al., ACM TOMM 2023): micro and macro encoders meta-trained as prototype "
              "classifiers, fused as d_micro + α·d_macro", ("diff", "flow"), True, "none", True),
    ModelInfo("survey-cnn", "merflow.training.models.survey_cnn",
              "the survey baseline (Gong, An, Elfiky 2022): one small CNN on the 28x28 apex frame, MATLAB "
              "main4.m's schedule", ("apex",), False, "undersample", False, None,
              optional_inputs=("middle",)),  # the middle frame for SMIC (no apex); an imported group has none
    ModelInfo("ststnet", "merflow.training.models.ststnet",
              "STSTNet (Liong et al., FG 2019): three shallow streams on the 28x28 flow image (strain, v, u), "
              "its official code's 800-epoch schedule", ("flow",), False, "none", False, None),
    ModelInfo("nearest-centroid", "merflow.training.models.nearest_centroid",
              "the floor: class means of the training samples' flow u, v (or difference, or both), each channel "
              "scaled on the training samples only; the nearest mean wins, nothing learned", (), False,
              "none", False, None, optional_inputs=("diff", "flow", "apex")),
]}
DEFAULT_MODEL = "meta-mmfnet"


def get(name: str) -> ModelInfo:
    """The registered model ``name``; an unknown name is one line listing the models."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the models are {', '.join(MODELS)}")
    return MODELS[name]


def load(name: str) -> ModuleType:
    """The module implementing model ``name``."""
    return get(name).load()
