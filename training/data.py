"""Training inputs: stored arrays by sample key across datasets (read by storage/features.py), normalised
with statistics of the training samples only, composed into the model's input layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merflow.configs.features import FeatureConfig
from merflow.training.model import compose_input


@dataclass(frozen=True)
class FlowScale:
    """Per-channel divisors of the flow (u, v, magnitude, strain): the largest |value| over the
    training samples, as the published code did over its list, but computed on training data only."""

    divisors: tuple[float, ...]

    @classmethod
    def fit(cls, flow: np.ndarray) -> FlowScale:
        """Each channel's largest |value| over ``flow`` (N, C, H, W); 1.0 for a channel that is all zero."""
        peaks = np.abs(flow).max(axis=(0, 2, 3)) if len(flow) else np.ones(flow.shape[1])
        return cls(tuple(float(p) if p > 0 else 1.0 for p in peaks))

    def apply(self, flow: np.ndarray) -> np.ndarray:
        """``flow`` (N, C, H, W) divided channel by channel by the fitted divisors."""
        return flow / np.asarray(self.divisors, dtype=np.float32)[None, :, None, None]


class FeatureSource:
    """Every sample's stored arrays of a protocol's datasets, in memory, by sample key.

    A synthetic or real MER dataset is small (CASME II: 255 samples, ~40 MB at 80x80), so the whole
    set lives in memory and a fold only indexes it. storage/features.py ``read_feature_arrays`` reads it
    (``FeatureSource(**read_feature_arrays(...))``); a test builds one from arrays. Besides the arrays
    (``diff`` and ``flow`` for every model, the ``apex`` and ``middle`` crops where a model reads them)
    it keeps each valid sample's input fingerprint (what its features were computed from: stage
    checkpoints are keyed by it), each quarantined sample's reason and where each apex came from.
    """

    def __init__(self, config: FeatureConfig, arrays: dict[str, dict[str, np.ndarray]],
                 fingerprints: dict[str, str] | None = None, quarantined: dict[str, dict] | None = None,
                 apex_source: dict[str, str] | None = None):
        self.config = config
        self.arrays = arrays
        self.fingerprints = fingerprints or {}
        self.quarantined = quarantined or {}    # sample key -> {"reason", "detail"} from the features flow
        self.apex_source = apex_source or {}    # sample key -> annotated | spotted (storage/features.py marks)

    @property
    def diff(self) -> dict[str, np.ndarray]:
        """Each sample's apex - onset difference (3, H, W)."""
        return self.arrays["diff"]

    @property
    def flow(self) -> dict[str, np.ndarray]:
        """Each sample's flow (u, v, magnitude, strain; 4, H, W)."""
        return self.arrays["flow"]

    def __contains__(self, key: str) -> bool:
        return key in next(iter(self.arrays.values()), {})

    def flows(self, keys) -> np.ndarray:
        """The stacked flow arrays (N, 4, H, W) of these keys; an empty (0, 4, 1, 1) array for none."""
        return np.stack([self.flow[k] for k in keys]) if len(keys) else np.zeros((0, 4, 1, 1), np.float32)

    def inputs(self, keys, scale: FlowScale, layout: str) -> np.ndarray:
        """(N, C, H', W') float32 model inputs for these keys."""
        if not len(keys):
            return np.zeros((0,), np.float32)
        diff = np.stack([self.diff[k] for k in keys])
        flow = scale.apply(self.flows(keys))
        return compose_input(diff, flow, layout).numpy()
