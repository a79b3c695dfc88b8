"""Typed flow parameters: what Prefect validates when a deployment run is created and shows as a form.

The choices are the registries' own tuples (a new protocol or flow algorithm appears here by itself);
the per-stage option models group the settings of one stage of the ``pipeline`` flow, with the field
names of that stage's flow, so that each is passed on as it is. Training settings are
``training.fit.TrainConfig`` itself (a frozen dataclass, which Prefect validates and shows the same way).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from merflow.storage.features import FIRST_FRAMES
from merflow.tasks.faces import DETECTORS, NO_FACE_POLICIES
from merflow.tasks.motion import FLOW_ALGORITHMS
from merflow.training.folds import PROTOCOLS
from merflow.training.selection import SELECTION_METRICS

Protocol = Literal[PROTOCOLS]
FlowAlgorithm = Literal[FLOW_ALGORITHMS]
Detector = Literal[DETECTORS]
NoFace = Literal[NO_FACE_POLICIES]
FirstFrame = Literal[FIRST_FRAMES]
# training.tune.SCHEDULERS, spelt out so that the features flow need not import Ray (tests/test_deployments.py
# checks that they agree).
Scheduler = Literal["asha", "fifo"]
SelectBy = Literal[SELECTION_METRICS]
Mode = Literal["tune", "train"]

DEFAULT_ALPHAS = [round(0.1 * i, 1) for i in range(0, 11)]


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt setting is an error, not ignored


class IngestOptions(_Options):
    """The ingest stage (flows/ingest.py): which adapter, and the decompression-bomb limits."""

    dataset: str | None = Field(None, description="the dataset of every source; None: detected from the content")
    max_total_gb: float = Field(512.0, gt=0, description="refuse an archive bigger than this unpacked")
    max_ratio: float = Field(100.0, gt=0, description="refuse an archive compressed more than this")


class FeatureOptions(_Options):
    """The features stage (flows/features.py): faces, optical flow and the crop size; where it runs."""

    flow_algorithm: FlowAlgorithm = "farneback"
    size: int = Field(80, ge=8, description="crop side in pixels")
    detector: Detector = "yunet"
    no_face: NoFace = Field("centre", description="no face found: a flagged centre crop, or quarantine")
    shard_size: int = Field(16, ge=1, description="samples per Zarr shard (one Dask task each)")
    first_frame: FirstFrame = "onset"
    dask_address: str | None = Field(None, description="tcp://SCHEDULER:8786; None: a LocalCluster on the worker")
    n_workers: int | None = Field(None, ge=1, description="LocalCluster workers; None: one per core")


class Evaluation(_Options):
    """What the training or search evaluates (flows/train.py, flows/tune.py)."""

    protocol: Protocol = "loso"
    dataset: str | None = Field("casme2", description="the dataset of a per-dataset protocol (loso, lovo)")
    class_set: str | None = Field(None, description="e.g. casme2_5; None: the protocol's default")
    sample_list: str | None = Field(None, description="only the samples of a published list, e.g. survey")
    sample_lists: str | None = Field(None, description="the folder of the published lists")


class SearchOptions(_Options):
    """The search (flows/tune.py): the grid, early stopping, selection and resources per trial."""

    shots: list[int] = Field([1, 3, 5, 10], min_length=1)
    alphas: list[float] = Field(DEFAULT_ALPHAS, min_length=1)
    meta_lr: list[float] = Field([], description="empty: the training settings' value only")
    pretrain_lr: list[float] = Field([], description="empty: the training settings' value only")
    scheduler: Scheduler = "asha"
    select_by: SelectBy = "accuracy"
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_failures: int = Field(2, ge=0, description="retries of a failed trial")
    max_folds: int | None = Field(None, ge=1, description="the first N folds only: a quick look, not a result")
    ray_address: str | None = Field(None, description="auto or ray://HEAD:10001; None: a local Ray")
