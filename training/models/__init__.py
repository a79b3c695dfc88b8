"""The model registry: ``merflow train --model NAME`` (and ``tune``) look a model up here.

One small interface, the same for every model. ``MODELS[name]`` is a ``ModelInfo`` saying what the model
reads and how it is run by default; ``ModelInfo.load()`` imports its module, which defines:

- ``NAME``: the name, as written in the result tables' ``method`` column (storage/results.py);
- ``Config``: a frozen dataclass of everything that decides its numbers, with ``to_dict()``, ``seed``
  and ``recipe`` (a name, or None where the model has none; the tables' ``recipe`` column);
- ``default_config(**overrides) -> Config``;
- ``run_folds(data, folds, config, checkpoints, *, store, on_fold=None) -> list[dict]``: train and
  evaluate ``folds`` (training.folds.Fold) of a protocol loaded by ``training.run.load_protocol``
  (``data``), checkpointing under ``checkpoints``; one dict per fold: ``{"fold": Fold, "predictions":
  DataFrame, "chosen": dict}``, where the predictions have run.py's ``fold_predictions`` columns (fold,
  split, model, alpha, sample_key, dataset, subject_key, label, pred, scores, chosen) and "chosen"
  what the fold chose on its validation subjects (empty where nothing is chosen);
- ``train_protocol(catalog_dir, store, protocol, dataset, config, out, run=None, class_set=None,
  on_fold=None, on_note=None, balance=None, **protocol_options) -> dict``: a whole protocol, result
  tables written (``protocol_options``, e.g. sample_list, sample_lists, feature_config, go to
  ``training.run.load_protocol``); returns what ``training.run.train_protocol`` returns (run,
  protocol, dataset, classes, folds, chosen, metrics, predictions, timings, notes);
- ``smoke_step(seed=0) -> dict``: a forward pass and one optimisation step on a tiny random batch, for
  the registry's test (tests/test_models.py): ``{"loss": float, "change": float, "logits": (n, classes)}``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

BALANCES = ("none", "undersample")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    module: str                      # the module implementing the interface above
    description: str
    inputs: tuple[str, ...]          # the feature store's arrays a fold reads per sample (storage/features.py)
    macro_pretraining: bool          # also reads CK+ macro-expressions
    default_balance: str             # "none" or "undersample" (training.folds.undersample)
    tunable: bool                    # `merflow tune` searches it

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


MODELS: dict[str, ModelInfo] = {info.name: info for info in [
    ModelInfo("meta-mmfnet", "merflow.training.models.meta_mmfnet",
              "Meta-MMFNet (Gong et al., ACM TOMM 2023): micro and macro encoders meta-trained as prototype "
              "classifiers, fused as d_micro + α·d_macro", ("diff", "flow"), True, "none", True),
    ModelInfo("survey-cnn", "merflow.training.models.survey_cnn",
              "the survey baseline (Gong, An, Elfiky 2022): one small CNN on the 28x28 apex frame, MATLAB "
              "main4.m's schedule", ("apex", "middle"), False, "undersample", False),
]}
DEFAULT_MODEL = "meta-mmfnet"


def get(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the models are {', '.join(MODELS)}")
    return MODELS[name]


def load(name: str) -> ModuleType:
    return get(name).load()
