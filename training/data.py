"""Training inputs: stored arrays by sample key across datasets (read by storage/features.py), normalised
with statistics of the training samples only, composed into the model's input layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merflow.configs.features import COMPUTED_CONVENTIONS, SEQUENCE_ARRAYS, FeatureConfig
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
    (``diff`` and ``flow`` where computed, the ``apex`` and ``middle`` crops where a model reads them, what an
    import brought: ``flow`` or ``apex``; with a sequence (feature schema 3): ``frames`` (T, H, W) uint8 grey
    onset to offset, ``flow_seq`` (T - 1, 2, H, W) float32 u, v between consecutive frames and ``landmarks``
    (7, 2) float32 crop pixels, NaN where no detector points; their ``conventions`` carry ``dimensions``,
    ``channels`` (u, v; x, y), ``points`` and the length T) it keeps each valid sample's input fingerprint (what its features
    were computed from: stage checkpoints are keyed by it), each quarantined sample's reason, where each
    apex came from, and each array's ``conventions``: array name -> {"origin": "computed" | "imported",
    "channels": [names in stored order], "scaling": text, and for imported arrays "order", "format",
    "source", "source_sha256"} (configs/features.py). A model reads a channel by its name
    (``channel_index``) and asks for an array with ``require``, which names what is missing.
    """

    def __init__(self, config: FeatureConfig, arrays: dict[str, dict[str, np.ndarray]],
                 fingerprints: dict[str, str] | None = None, quarantined: dict[str, dict] | None = None,
                 apex_source: dict[str, str] | None = None, conventions: dict[str, dict] | None = None,
                 groups: tuple[str, ...] = (), store: str | None = None):
        self.config = config
        self.arrays = arrays
        self.fingerprints = fingerprints or {}
        self.quarantined = quarantined or {}    # sample key -> {"reason", "detail"} from the features flow
        self.apex_source = apex_source or {}    # sample key -> annotated | spotted | imported (storage/features.py marks)
        # Arrays built in a test without conventions are computed ones (their layout is the features flow's).
        self.conventions = conventions if conventions is not None else {
            name: dict(COMPUTED_CONVENTIONS[name]) for name in arrays if name in COMPUTED_CONVENTIONS}
        self.groups = tuple(groups)             # the feature groups read (storage/features.py), for messages
        self.store = store

    def require(self, name: str, model: str) -> dict[str, np.ndarray]:
        """The array ``name`` by sample key; a LookupError of one line naming the missing array, the groups that
        lack it, what they hold and what to do, where the loaded features have no such array."""
        if name in self.arrays:
            return self.arrays[name]
        groups = ", ".join(self.groups) or "the loaded features"
        where = f" in {self.store}" if self.store else ""
        held = ", ".join(f"{n} ({self.conventions.get(n, {}).get('origin', 'computed')})" for n in sorted(self.arrays))
        noun = "crops" if name in ("onset", "apex", "middle") else "array"
        if name in SEQUENCE_ARRAYS:
            todo = (f"compute the features with a sequence: `merflow features --catalog CATALOG --store "
                    f"{self.store or 'STORE'} --size {self.config.size} --sequence-length T` (T = 10 by default; "
                    "groups of feature schema 2, imported ones and those computed with --sequence-length 0 hold none)")
        elif any(c.get("origin") == "imported" for c in self.conventions.values()):
            todo = (f"import inputs that hold {name!r} (`merflow import-features`), or compute features from the "
                    "frames (`merflow features`) and train on those")
        else:
            todo = (f"recompute the features with `merflow features --catalog CATALOG --store {self.store or 'STORE'} "
                    f"--size {self.config.size}` (groups written before feature schema 2 have no apex or middle crops)")
        raise LookupError(f"{model} reads the {name!r} array, but the feature group(s) {groups}{where} have no "
                          f"{name!r} {noun} (they hold {held or 'nothing'}): {todo}")

    def channel_index(self, name: str, channel: str) -> int:
        """Where the channel ``channel`` (e.g. "u") lies in the array ``name`` (its convention's stored order)."""
        channels = list(self.conventions.get(name, {}).get("channels", []))
        if channel not in channels:
            raise LookupError(f"the {name!r} array has no {channel!r} channel: its channels are "
                              f"{', '.join(channels) or 'not recorded'}")
        return channels.index(channel)

    @property
    def diff(self) -> dict[str, np.ndarray]:
        """Each sample's apex - onset difference (3, H, W)."""
        return self.require("diff", "this model")

    @property
    def flow(self) -> dict[str, np.ndarray]:
        """Each sample's flow (computed: u, v, magnitude, strain; 4, H, W; imported: ``conventions["flow"]``)."""
        return self.require("flow", "this model")

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
