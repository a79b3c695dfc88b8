"""The model registry: a model is one module of this package, and nothing else names it.

A model module (``training/models/<name>.py``) defines, and registers at import:

- ``NAME``: its name (`merflow train --model NAME`, the result tables' ``method`` column);
- ``Config``: its configuration model, a configs.base.Config (frozen, validated) of everything that decides its
  numbers, with ``seed``, ``recipe`` (a name, or None where it has none: the tables' ``recipe`` column) and
  ``validation_fraction`` (the share of training subjects kept to choose on; 0.0 where nothing is chosen); a
  field or property ``epochs`` where ``chooses`` is "nothing" and ``recipe`` is set (the summaries' title);
- ``default_config(**overrides) -> Config``;
- ``plan(data, config, protocol, dataset, class_set) -> RunPlan``: what it makes of a loaded protocol
  (``data``: training.run.ProtocolData, from flows/protocol.py ``load_protocol``): the folds it trains, the
  notes of the run's row, the run's identity, the lines to tell before training, the runs row's configuration;
- ``prepare(data, config, checkpoints)``: the run-wide work before any fold (Meta-MMFNet: the CK+ macro
  pretraining, checkpointed), handed to ``run_folds`` as ``prepared``; None where there is none;
- ``run_folds(data, folds, config, checkpoints, *, prepared=None, on_fold=None) -> list[FoldResult]``:
  train and evaluate ``folds`` (training.folds.Fold) in their order, checkpointing in ``checkpoints`` (a
  ``CheckpointCache``); each fold's rows made by training/predictions.py (``prediction_frame``, the one
  builder); ``on_fold(done, len(folds), fold)`` hears each finished fold. A fold nothing can be trained on
  comes back with ``skipped`` (its reason) and no predictions;
- ``smoke_step(seed=0) -> dict``: a forward pass and one optimisation step on a tiny random batch
  (tests/test_models.py): ``{"loss": float, "change": float, "logits": (n, classes)}``;
- ``PARAMETERS`` and ``network()`` (optional, together): the parameter count its authors published and the
  network at that shape (a torch module); the registry's test checks that they agree;
- ``search_fold(data, fold, config, checkpoints, *, on_epoch=None) -> FoldResult`` (where ``search_space``
  is set): one fold of a search's trial (flows/trial.py), ``on_epoch(epoch, validation_accuracy)`` after
  each epoch for early stopping, ``chosen`` holding ``validation_accuracy`` and what it chose;
- ``TINY_SETTINGS`` (optional): ``default_config``'s overrides that train the registry test's one tiny fold
  in seconds on a CPU (a few epochs, ``device`` cpu);
- ``MODEL = register_model(ModelInfo(NAME, __name__, description, Config, inputs=..., options=..., ...))``:
  what it reads, its CLI options (fields of ``Config``), what chooses its settings, its summaries' title, its
  search space, how its folds are batched (``ModelInfo``'s fields below).

Discovery: the first use of the registry (``registry()``, ``get``, ``MODELS``) imports every module of this
package's ``__path__`` (``pkgutil``), so a new module is found with no list to edit; `merflow --help` does
not use it (a subcommand's options are added on first use: flows/cli/parser.py ``Subcommand``).

Who reads what: the CLI makes ``--model``'s choices and help from the descriptions, each model's options
from ``options`` (flows/cli/parser.py ``add_model_options``) and its configuration with
``ModelInfo.config_from_options``; the train flow and flows/protocol.py take the configuration whole
(``ModelInfo.make_config``: the config model, a dict of its fields, or None) and run the one sequence
(flows/protocol.py ``run_protocol``: load, plan, prepare, fold units, floor, finish, write);
training/run.py ``finish`` records ``chooses`` and ``title`` in the runs row, where the summaries
(training/report.py) read them; `merflow tune` searches a model with a ``search_space``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    predictions: pd.DataFrame | None   # training/predictions.py's columns (PREDICTION_COLUMNS); None where the fold was skipped
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
    """A registered model: what it reads, how a run uses it and how the CLI, the flows and the reports
    present it (its module implements the functions above and registers this with ``register_model``)."""

    name: str
    module: str                      # the module implementing the interface above (its ``__name__``)
    description: str                 # one line: the model, its authors, what it reads (`merflow train --help`)
    config: type                     # its configuration model (a configs.base.Config); ``Config`` in the module
    # The feature store's arrays a fold reads per sample (storage/features.py): ``inputs`` it cannot run
    # without (a store lacking one is one line at load: training.data.FeatureSource.require), and
    # ``optional_inputs`` read where the store holds them (an imported group holds only what it imported),
    # which the model asks for itself (``require``) where it needs one.
    inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()
    # The fields of ``config`` that `merflow train` (and `tune`) take as options (flows/cli/fields.py: the
    # option's type, choices, default and help come from the field); ``rename`` maps a field to the option's
    # name where it differs (``{"features": "centroid_features"}`` gives --centroid-features). An option
    # several models share (--epochs, --seed, --device) is added once; one left unset keeps the config's default.
    options: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    # An option's help for "left unset" where the config's default alone would mislead (Meta-MMFNet's
    # fields left to the --recipe: "default: the recipe's (merflow 100, published 50)").
    unset_help: dict[str, str] = field(default_factory=dict)
    # The configuration from the options given (a dict of field -> value, unset ones left out); None:
    # ``config(**given)``. Meta-MMFNet's starts from the --recipe (TrainConfig.from_recipe).
    from_options: Callable[[dict], Any] | None = None
    # What chooses its epochs and settings: "nothing" (a fixed schedule, or nothing learned) or "validation
    # subjects" (each fold's inner validation split); the summaries' honesty labels read it from the runs row.
    chooses: str = "nothing"
    # The runs' headline title in the summaries (``{epochs}`` and the config's other fields are filled in):
    # "the published fixed schedule ({epochs} epochs, the last)"; None: the record's own account (Meta-MMFNet).
    title: str | None = None
    # What `merflow tune --model NAME` searches: a configs.base.Config of grids (configs/search.py
    # SearchSpace), or None where there is nothing to search (the tune command says so in one line).
    search_space: type | None = None
    macro_pretraining: bool = False  # also reads CK+ macro-expressions (``prepare`` pretrains on them)
    default_balance: str = "none"    # "none" or "undersample" (training.folds.undersample)
    # Folds trained in one call of run_folds (one Prefect task of the train flow): None, all of them at
    # once (survey-cnn stacks its folds' networks; nearest-centroid builds its feature matrix once).
    folds_per_task: int | None = 1

    @property
    def tunable(self) -> bool:
        """Whether `merflow tune` searches it (it declares a search space)."""
        return self.search_space is not None

    def load(self) -> ModuleType:
        """The module implementing the interface above."""
        return importlib.import_module(self.module)

    def make_config(self, given=None, *, balance: str | None = None):
        """The model's configuration from ``given``: None (its defaults), a dict of its fields (a deployment's
        form, JSON), or an instance of its config model, passed whole. A wrong field or value is one line
        naming the model and the field (``ValueError``); ``balance`` overrides its balance (``with_balance``)."""
        if given is None:
            config = self.config()
        elif isinstance(given, self.config):
            config = given
        elif isinstance(given, Mapping):
            config = _validated(self, dict(given))
        else:
            raise ValueError(f"model {self.name} takes a {self.config.__name__} (or a dict of its fields), not a "
                             f"{type(given).__name__}")
        return with_balance(config, balance, self.name)

    def config_from_options(self, given: dict):
        """The configuration of the options given on the command line (``given``: field -> value, unset left out)."""
        if self.from_options is not None:
            return self.from_options(given)
        return _validated(self, given)


def _validated(info: ModelInfo, values: dict):
    """``info.config(**values)``; a pydantic error becomes one line naming the model, the field and why."""
    from pydantic import ValidationError

    try:
        return info.config(**values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "?"
        raise ValueError(f"model {info.name}: {info.config.__name__}.{where}: {first['msg']} (got "
                         f"{first.get('input')!r})") from None


def with_balance(config, balance: str | None, model: str = "the model"):
    """``config`` with ``balance`` (none | undersample | undersample-training) where the model balances its
    samples (a ``balance`` field: survey-cnn); a model that trains on every sample takes none and refuses
    the others."""
    if balance is None or (balance == "none" and "balance" not in type(config).model_fields):
        return config
    if "balance" not in type(config).model_fields:
        balancing = [info.name for info in registry().values() if "balance" in info.config.model_fields]
        raise ValueError(f"--balance {balance} is implemented for --model {' / '.join(balancing)} only; {model} "
                         "trains on every sample")
    return config.replace(balance=balance)


_REGISTRY: dict[str, ModelInfo] = {}
_discovered = False


def register_model(info: ModelInfo) -> ModelInfo:
    """Register a model (its module calls this at import, as ``MODEL = register_model(ModelInfo(...))``);
    a second module registering the same name is an error, the same module again (a reload) replaces it."""
    known = _REGISTRY.get(info.name)
    if known is not None and known.module != info.module:
        raise ValueError(f"model {info.name!r} is registered twice: {known.module} and {info.module}")
    _REGISTRY[info.name] = info
    return info


def discover() -> None:
    """Import every module of this package (``pkgutil`` over its ``__path__``), so that each registers its
    model: a new model is one module dropped here, listed nowhere else. Done once, on first use."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def rediscover() -> None:
    """Discover again (a test that adds a folder to this package's ``__path__``)."""
    global _discovered
    _discovered = False
    discover()


def registry() -> dict[str, ModelInfo]:
    """Every registered model by name, the default first, then by name."""
    discover()
    names = sorted(_REGISTRY, key=lambda name: (name != DEFAULT_MODEL, name))
    return {name: _REGISTRY[name] for name in names}


def __getattr__(name: str):
    if name == "MODELS":  # the registry, discovered on first use (the CLI's parser adds its options late)
        return registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEFAULT_MODEL = "meta-mmfnet"


def get(name: str) -> ModelInfo:
    """The registered model ``name``; an unknown name is one line listing the models."""
    models = registry()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; the models are {', '.join(models)}")
    return models[name]


def for_config(config) -> ModelInfo:
    """The registered model whose configuration model ``config`` is (a search's base configuration names its model)."""
    for info in registry().values():
        if type(config) is info.config:
            return info
    raise ValueError(f"no registered model takes a {type(config).__name__}")


def load(name: str) -> ModuleType:
    """The module implementing model ``name``."""
    return get(name).load()
