"""The model registry (training/models/): every registered model runs a forward pass and one optimisation
step on a tiny batch, and names the interface's functions."""

import math

import pytest

from merflow.training import models

INTERFACE = ("NAME", "Config", "default_config", "run_folds", "train_protocol", "smoke_step")


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_registered_model_trains_one_step(name):
    info = models.get(name)
    module = info.load()
    for attribute in INTERFACE:
        assert hasattr(module, attribute), f"{info.module} lacks {attribute}"
    assert module.NAME == name
    assert info.default_balance in models.BALANCES and info.inputs
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
