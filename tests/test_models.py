"""The model registry (training/models/): every registered model runs a forward pass and one optimisation
step on a tiny batch, names the interface's functions, and trains one tiny fold through ``run_folds``
(timm's pattern), on features held in memory."""

import math

import numpy as np
import pandas as pd
import pytest

from merflow.configs.features import FeatureConfig
from merflow.storage.checkpoints import Checkpoints
from merflow.training import models
from merflow.training.data import FeatureSource
from merflow.training.folds import folds
from merflow.training.run import ProtocolData

INTERFACE = ("NAME", "Config", "default_config", "plan", "prepare", "run_folds", "smoke_step")


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_registered_model_trains_one_step(name):
    info = models.get(name)
    module = info.load()
    for attribute in INTERFACE:
        assert hasattr(module, attribute), f"{info.module} lacks {attribute}"
    assert module.NAME == name
    assert info.default_balance in models.BALANCES and (info.inputs or info.optional_inputs)
    config = module.default_config()
    assert isinstance(config.to_dict(), dict) and hasattr(config, "seed")
    step = module.smoke_step(seed=0)
    assert math.isfinite(step["loss"]) and step["loss"] > 0
    assert step["change"] > 0  # the optimiser step moved the weights
    assert step["logits"][1] == 4
    again = module.smoke_step(seed=0)
    assert again["loss"] == pytest.approx(step["loss"])  # seeded: the same tiny step twice


def test_registry_defaults_and_unknown_names():
    assert models.DEFAULT_MODEL == "meta-mmfnet"
    assert models.get("survey-cnn").default_balance == "undersample"
    assert models.get("meta-mmfnet").default_balance == "none"
    with pytest.raises(ValueError, match="unknown model 'resnet'.*meta-mmfnet, survey-cnn"):
        models.get("resnet")


# Small enough to train in seconds on a CPU: one epoch of everything, one shot.
TINY = {"meta-mmfnet": {"macro_epochs": 1, "pretrain_epochs": 1, "meta_epochs": 1, "batches_per_epoch": 1,
                        "shots": 1, "device": "cpu"},
        "survey-cnn": {"epochs": 2, "device": "cpu"}, "ststnet": {"epochs": 2, "device": "cpu"}, "nearest-centroid": {}}


def _tiny_protocol(validation_fraction: float) -> ProtocolData:
    """CASME II LOSO on 5 subjects with one sample of each of the 4 classes, and 4 CK+ samples, with random
    28x28 features in memory (a FeatureSource built from arrays, no store), each class shifting the flow."""
    rng = np.random.default_rng(0)
    classes = ("disgust", "happiness", "repression", "surprise")
    rows = [{"sample_key": f"casme2/sub{s:02d}/c{c}", "dataset": "casme2", "subject": f"sub{s:02d}",
             "subject_key": f"casme2/sub{s:02d}",
             "is_macro": False, "label_casme2_4": label} for s in range(1, 6) for c, label in enumerate(classes)]
    catalog = pd.DataFrame(rows)
    macro_keys, macro_labels = [f"ckplus/m{i}" for i in range(4)], ["anger", "happy", "anger", "happy"]
    arrays = {name: {} for name in ("diff", "flow", "apex", "middle")}
    source = FeatureSource(FeatureConfig(size=28), arrays)
    for key, label in zip(list(catalog["sample_key"]) + macro_keys, list(catalog["label_casme2_4"]) + macro_labels):
        shift = (classes.index(label) if label in classes else macro_labels.index(label)) * 2.0
        source.diff[key] = rng.normal(size=(3, 28, 28)).astype(np.float32)
        source.flow[key] = rng.normal(size=(4, 28, 28)).astype(np.float32) + shift
        for crop in ("apex", "middle"):  # uint8 face crops, as stored
            arrays[crop][key] = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
        source.apex_source[key] = "annotated"
        source.fingerprints[key] = key
    fold_list = folds(catalog, "loso", "casme2", validation_fraction=validation_fraction, seed=0)
    return ProtocolData(fold_list, catalog.set_index("sample_key", drop=False), source, source.config, macro_keys,
                        macro_labels, ("anger", "happy"))


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_registered_model_trains_one_tiny_fold(name, tmp_path):
    module = models.load(name)
    config = module.default_config(**TINY[name])
    data = _tiny_protocol(config.validation_fraction)
    plan = module.plan(data, config, "loso", "casme2")
    assert plan.folds and plan.identity and isinstance(plan.settings, dict)
    checkpoints = Checkpoints(tmp_path)
    prepared = module.prepare(data, config, checkpoints)
    assert (prepared is not None) == models.get(name).macro_pretraining
    heard = []
    (outcome,) = module.run_folds(data, plan.folds[:1], config, checkpoints, prepared=prepared,
                                  on_fold=lambda done, total, fold: heard.append((done, total, fold.name)))
    fold = plan.folds[0]
    assert isinstance(outcome, models.FoldResult) and outcome.fold == fold and outcome.skipped is None
    assert heard == [(1, 1, fold.name)]
    test = outcome.predictions[outcome.predictions["split"] == "test"]
    assert set(test["sample_key"]) == set(fold.test_keys) and set(test["pred"]) <= set(fold.classes)
    assert all(len(scores) == len(fold.classes) and np.isfinite(scores).all() for scores in test["scores"])
