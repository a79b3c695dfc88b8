"""Training inputs from the feature store: arrays by sample key across datasets, normalised with
statistics of the training samples only, composed into the model's input layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merflow.storage.features import FeatureConfig, FeatureReader, FeatureStore, group_name
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


def _text(value) -> str:
    return value if isinstance(value, str) else ""  # a mark's missing field reads as NaN from the table


class FeatureSource:
    """Every sample's ``diff`` and ``flow`` of the given datasets, loaded once into memory.

    A synthetic or real MER dataset is small (CASME II: 255 samples, ~40 MB at 80x80), so the whole
    set lives in memory and a fold only indexes it. It also keeps, from the shards' completion marks
    (storage/features.py), each valid sample's input fingerprint (what its features were computed
    from: stage checkpoints are keyed by it) and each quarantined sample's reason.
    """

    def __init__(self, store: str, datasets: list[str], config: FeatureConfig):
        feature_store = FeatureStore(store)
        self.diff: dict[str, np.ndarray] = {}
        self.flow: dict[str, np.ndarray] = {}
        self.fingerprints: dict[str, str] = {}
        self.quarantined: dict[str, dict] = {}   # sample key -> {"reason", "detail"} from the features flow
        self.config = config
        names = {g["name"] for g in feature_store.groups()}
        for dataset in sorted(set(datasets)):
            if group_name(dataset, config) not in names:
                raise LookupError(f"no {dataset} features with configuration {config.hash} in {feature_store.url}: "
                                  f"run `merflow features` first (groups there: {sorted(names)})")
            reader = FeatureReader(feature_store, group_name(dataset, config))
            table = reader.table()
            for row in table.to_dict("records"):
                if row.get("status") == "ok":
                    self.fingerprints[row["sample_key"]] = str(row.get("fingerprint"))
                else:
                    self.quarantined[row["sample_key"]] = {"reason": _text(row.get("reason")) or "quarantined",
                                                           "detail": _text(row.get("detail"))}
            keys = reader.sample_keys
            arrays = reader.load(keys, ("diff", "flow"))
            for index, key in enumerate(keys):
                self.diff[key] = arrays["diff"][index]
                self.flow[key] = arrays["flow"][index]

    def __contains__(self, key: str) -> bool:
        return key in self.diff

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
