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
    assert module.NAME == name and module.Config is info.config and models.for_config(module.default_config()) is info
    assert not info.tunable or hasattr(module, "search_fold")  # a search space needs a search's fold
    assert info.default_balance in models.BALANCES and (info.inputs or info.optional_inputs)
    config = module.default_config()
    assert isinstance(config.to_dict(), dict) and hasattr(config, "seed")
    step = module.smoke_step(seed=0)
    assert math.isfinite(step["loss"]) and step["loss"] > 0
    assert step["change"] > 0  # the optimiser step moved the weights
    assert step["logits"][1] == 4
    if hasattr(module, "PARAMETERS"):  # the published parameter count, where the module declares it
        assert sum(p.numel() for p in module.network().parameters()) == module.PARAMETERS
    again = module.smoke_step(seed=0)
    assert again["loss"] == pytest.approx(step["loss"])  # seeded: the same tiny step twice


def test_registry_defaults_and_unknown_names():
    assert models.DEFAULT_MODEL == "meta-mmfnet"
    assert models.get("survey-cnn").default_balance == "undersample"
    assert models.get("meta-mmfnet").default_balance == "none"
    with pytest.raises(ValueError, match="unknown model 'resnet'; the models are meta-mmfnet, .*survey-cnn"):
        models.get("resnet")




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
    # Small enough to train in seconds on a CPU: the module's TINY_SETTINGS (its own), else its defaults.
    config = module.default_config(**getattr(module, "TINY_SETTINGS", {}))
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


# A model written as a newcomer would: this one module, nothing else. It predicts each fold's most frequent
# training class (scores: the training class counts, times ``prior``).
ONE_MODULE_MODEL = '''
"""A test-only model: the training samples' most frequent class, for every held-out sample."""
import numpy as np
from pydantic import Field

from merflow.configs.base import Config
from merflow.training.models import FoldResult, ModelInfo, RunPlan, register_model
from merflow.training.predictions import prediction_frame

NAME = "majority"


class MajorityConfig(Config):
    prior: float = Field(1.0, description="majority: the weight of the class counts")
    seed: int = Field(0, description="random seed")
    recipe: None = None
    validation_fraction: float = 0.0


def default_config(**overrides):
    return MajorityConfig(**overrides)


def plan(data, config, protocol, dataset, class_set=None):
    return RunPlan(data.folds, {}, data.identity(), [], config.to_dict())


def prepare(data, config, checkpoints):
    return None


def run_folds(data, folds, config, checkpoints, *, prepared=None, on_fold=None):
    outcomes = []
    for done, fold in enumerate(folds, start=1):
        labels = list(data.samples.loc[list(fold.fit_keys) + list(fold.validation_keys), fold.label_column])
        counts = np.array([labels.count(c) for c in fold.classes], dtype=float) * config.prior
        scores = np.tile(counts, (len(fold.test_keys), 1))
        outcomes.append(FoldResult(fold, prediction_frame(fold, data.samples, "test", fold.test_keys, scores,
                                                          model=NAME), {}))
        if on_fold:
            on_fold(done, len(folds), fold)
    return outcomes


def smoke_step(seed=0):
    return {"loss": 1.0, "change": 1.0, "logits": (6, 4)}


Config = MajorityConfig
MODEL = register_model(ModelInfo(NAME, __name__, "the majority class of the training samples", MajorityConfig,
                                 optional_inputs=("flow",), options=("prior", "seed"),
                                 title="the majority class of the training samples"))
'''


def test_a_model_is_one_module_run_by_merflow_train(training_set, tmp_path, monkeypatch, capsys):
    """The seam: one module dropped into the models' package (here a folder added to its path, so the source
    tree stays as it is) is discovered, gets its options from its configuration's fields, runs through `merflow
    train` with the floor beside it, and its summary says what chose what, with no other file touched."""
    import json
    import sys

    from merflow.flows.cli import main
    from merflow.storage import results

    folder = tmp_path / "more_models"
    folder.mkdir()
    (folder / "majority.py").write_text(ONE_MODULE_MODEL)
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(folder)])
    models.rediscover()
    try:
        assert models.get("majority").options == ("prior", "seed") and not models.get("majority").tunable
        out = tmp_path / "results"
        assert main(["train", "--model", "majority", "--prior", "2", "--catalog", str(training_set["catalog"]),
                     "--store", training_set["store"], "--dataset", "casme2", "--out", str(out), "--run", "one",
                     "--max-folds", "2"]) == 0
        predictions = results.read_table(out, "predictions", run="one")
        assert set(predictions["method"]) == {"majority"} and predictions["fold"].nunique() == 2
        record = json.loads(results.read_table(out, "runs", run="one")["config"].iat[0])
        assert record["prior"] == 2.0 and record["data"]["chooses"] == "nothing"
        assert len(results.read_table(out, "floor_metrics", run="one"))  # the floor on the same folds
        capsys.readouterr()
        assert main(["results", "summary", "--results", str(out)]) == 0
        printed = " ".join(capsys.readouterr().out.split())  # the table's title wraps
        assert "majority: the majority class of the training samples, nothing learned or chosen" in printed, printed
        assert main(["tune", "--model", "majority", "--catalog", str(training_set["catalog"]), "--store",
                     training_set["store"], "--out", str(out)]) == 2
        printed = capsys.readouterr()
        assert "--model majority declares no search space" in printed.out + printed.err
    finally:
        models._REGISTRY.pop("majority", None)
        sys.modules.pop(f"{models.__name__}.majority", None)


def test_a_configuration_travels_whole_and_a_wrong_field_is_one_line():
    info = models.get("ststnet")
    config = info.make_config({"epochs": 3})
    assert isinstance(config, info.config) and config.epochs == 3
    assert info.make_config(config) is config
    with pytest.raises(ValueError, match=r"model ststnet: StstnetConfig.epochs: .*got 'many'"):
        info.make_config({"epochs": "many"})
    with pytest.raises(ValueError, match=r"model ststnet: StstnetConfig.epoch: Extra inputs"):
        info.make_config({"epoch": 3})
    with pytest.raises(ValueError, match="model ststnet takes a StstnetConfig"):
        info.make_config(models.get("nearest-centroid").make_config())
    with pytest.raises(ValueError, match="--balance undersample is implemented for --model survey-cnn only"):
        info.make_config(None, balance="undersample")
