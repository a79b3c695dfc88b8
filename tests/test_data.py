"""training/data.py: a FeatureSource's arrays, their conventions, and the one line a missing input is."""

from __future__ import annotations

import numpy as np
import pytest

from merflow.configs.features import FeatureConfig
from merflow.training.data import FeatureSource

IMPORTED = {"origin": "imported", "channels": ["strain", "v", "u"], "scaling": "0..255 per image",
            "format": "flow-images", "source": "/data/flows"}


def test_arrays_built_in_memory_are_computed_ones():
    source = FeatureSource(FeatureConfig(size=28), {"flow": {"a": np.zeros((4, 2, 2), np.float32)}})
    assert source.conventions["flow"]["channels"] == ["u", "v", "magnitude", "strain"]
    assert source.channel_index("flow", "strain") == 3 and "a" in source


def test_channels_are_found_by_name_in_the_stored_order():
    source = FeatureSource(FeatureConfig(size=28), {"flow": {"a": np.zeros((3, 2, 2), np.uint8)}},
                           conventions={"flow": IMPORTED}, groups=("casme2-abc",), store="/s.zarr")
    assert [source.channel_index("flow", c) for c in ("u", "v", "strain")] == [2, 1, 0]
    with pytest.raises(LookupError, match="no 'magnitude' channel: its channels are strain, v, u"):
        source.channel_index("flow", "magnitude")


def test_a_missing_input_is_one_line_naming_the_array_the_group_and_what_to_do():
    source = FeatureSource(FeatureConfig(size=28), {"flow": {"a": np.zeros((3, 2, 2), np.uint8)}},
                           conventions={"flow": IMPORTED}, groups=("casme2-abc", "samm-abc"), store="/s.zarr")
    assert source.require("flow", "ststnet") is source.arrays["flow"]
    with pytest.raises(LookupError) as error:
        source.require("diff", "meta-mmfnet")
    message = str(error.value)
    assert "\n" not in message and message.startswith("meta-mmfnet reads the 'diff' array, but the feature group(s) "
                                                      "casme2-abc, samm-abc in /s.zarr have no 'diff' array")
    assert "(they hold flow (imported))" in message and "merflow import-features" in message
    computed = FeatureSource(FeatureConfig(size=28), {"flow": {}}, groups=("casme2-def",))
    with pytest.raises(LookupError, match=r"no 'middle' crops .*recompute the features with `merflow features"):
        computed.require("middle", "survey-cnn")
    with pytest.raises(LookupError, match="this model reads the 'diff' array"):
        _ = computed.diff
