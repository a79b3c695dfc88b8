"""flows/protocol.py: a protocol read through storage into training's pure units, and a whole run without
Prefect (the notebook's way). The runs themselves are tests/test_run.py's."""

import subprocess
import sys

import pytest

from merflow.flows.protocol import load_protocol
from merflow.training import models


def test_a_notebook_run_imports_no_prefect_dask_or_ray():
    code = ("import sys, merflow.flows.protocol; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'prefect', 'ray', 'dask', 'distributed'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("model", sorted(models.MODELS))
def test_the_protocol_holds_the_arrays_its_model_reads(training_set, model):
    data = load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", model=model)
    # What the model reads, and the floor's flow (flows/protocol.py): nothing else is loaded.
    wanted = set(models.get(model).inputs) | set(models.get(model).optional_inputs) | {"flow"}
    assert set(data.source.arrays) == wanted
    keys = list(data.samples.index) + data.macro_keys
    assert all(key in data.source.arrays[name] for name in wanted for key in keys)
    assert set(data.source.fingerprints) >= set(keys)
    # The features' own settings: the store's configuration, and where each apex came from.
    assert data.feature_config.hash == data.source.config.hash
    assert {data.source.apex_source[k] for k in keys} <= {"annotated", "spotted"}
