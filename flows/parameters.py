"""Typed flow parameters: what Prefect validates when a deployment run is created and shows as a form.

The choices are the registries' own tuples (a new protocol or flow algorithm appears here by itself);
the per-stage option models group the settings of one stage of the ``pipeline`` flow, with the field
names of that stage's flow, so that each is passed on as it is. Training settings are
``configs.train.TrainConfig`` itself (a pydantic model, which Prefect validates and shows the same way).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from merflow.configs.features import (
    DETECTORS,
    FIRST_FRAMES,
    FLOW_ALGORITHMS,
    NO_FACE_POLICIES,
    FaceConfig,
    FeatureConfig,
    MotionConfig,
)
from merflow.configs.ingest import ExtractionLimits, IngestConfig
from merflow.configs.results import RESULTS as DEFAULT_RESULTS
from merflow.configs.search import SCHEDULERS, SELECTION_METRICS, SearchConfig, SearchSpace
from merflow.configs.train import TrainConfig
from merflow.flows.defaults import default, description
from merflow.training.folds import PROTOCOLS

Protocol = Literal[PROTOCOLS]
FlowAlgorithm = Literal[FLOW_ALGORITHMS]
Detector = Literal[DETECTORS]
NoFace = Literal[NO_FACE_POLICIES]
FirstFrame = Literal[FIRST_FRAMES]
Scheduler = Literal[SCHEDULERS]
SelectBy = Literal[SELECTION_METRICS]
Mode = Literal["tune", "train"]

# Where the train and tune flows (and `merflow train/tune --out`, `merflow results --results`) put results.
RESULTS = DEFAULT_RESULTS
# The α grid a search scores by default: TrainConfig's (0.0..1.0, α = 0 being the micro model alone;
# configs/train.py), as `merflow tune` always searched. SearchSpace's own default (0.1..1.0,
# configs/search.py) applies only to a SearchSpace built without alphas, never to the tune flow or the CLI.
SEARCH_ALPHAS = default(TrainConfig, "alphas")


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt setting is an error, not ignored


class IngestOptions(_Options):
    """The ingest stage (flows/ingest.py): which adapter, and the decompression-bomb limits."""

    dataset: str | None = Field(default(IngestConfig, "dataset"),
                                description="the dataset of every source; None: detected from the content")
    max_total_gb: float = Field(default(ExtractionLimits, "max_total_bytes") / 2**30, gt=0,
                                description="refuse an archive bigger than this unpacked")
    max_ratio: float = Field(default(ExtractionLimits, "max_ratio"), gt=0,
                             description="refuse an archive compressed more than this")


class FeatureOptions(_Options):
    """The features stage (flows/features.py): faces, optical flow and the crop size; where it runs."""

    flow_algorithm: FlowAlgorithm = Field(default(MotionConfig, "algorithm"),
                                          description=description(MotionConfig, "algorithm"))
    size: int = Field(default(FeatureConfig, "size"), ge=8, description=description(FeatureConfig, "size"))
    detector: Detector = Field(default(FaceConfig, "detector"), description=description(FaceConfig, "detector"))
    no_face: NoFace = Field(default(FaceConfig, "no_face"), description=description(FaceConfig, "no_face"))
    shard_size: int = Field(default(FeatureConfig, "shard_size"), ge=1,
                            description=description(FeatureConfig, "shard_size"))
    first_frame: FirstFrame = Field(default(FeatureConfig, "first_frame"),
                                    description=description(FeatureConfig, "first_frame"))
    sequence_length: int = Field(default(FeatureConfig, "sequence_length"), ge=0,
                                 description=description(FeatureConfig, "sequence_length"))
    max_missing_share: float = Field(default(FeatureConfig, "max_missing_share"), ge=0, lt=1,
                                     description=description(FeatureConfig, "max_missing_share"))
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
    """The search (flows/tune.py): the grid, early stopping, selection and resources per trial.

    The grid's shots are SearchSpace's, the other defaults SearchConfig's (configs/search.py, which imports
    no torch or Ray), as the tune flow and the CLI read them."""

    shots: list[int] = Field(list(default(SearchSpace, "shots")), min_length=1,
                             description=description(SearchSpace, "shots"))
    alphas: list[float] = Field(list(SEARCH_ALPHAS), min_length=1, description=description(SearchSpace, "alphas"))
    meta_lr: list[float] = Field([], description=description(SearchSpace, "meta_lr") + "; empty: the training "
                                 "settings' value only")
    pretrain_lr: list[float] = Field([], description=description(SearchSpace, "pretrain_lr") + "; empty: the "
                                     "training settings' value only")
    scheduler: Scheduler = Field(default(SearchConfig, "scheduler"), description=description(SearchConfig, "scheduler"))
    select_by: SelectBy = Field(default(SearchConfig, "select_by"), description=description(SearchConfig, "select_by"))
    cpus_per_trial: float = Field(default(SearchConfig, "cpus_per_trial"), gt=0,
                                  description=description(SearchConfig, "cpus_per_trial"))
    gpus_per_trial: float = Field(default(SearchConfig, "gpus_per_trial"), ge=0,
                                  description=description(SearchConfig, "gpus_per_trial"))
    max_failures: int = Field(default(SearchConfig, "max_failures"), ge=0,
                              description=description(SearchConfig, "max_failures"))
    max_folds: int | None = Field(default(SearchConfig, "max_folds"), ge=1,
                                  description=description(SearchConfig, "max_folds"))
    ray_address: str | None = Field(default(SearchConfig, "ray_address"),
                                    description=description(SearchConfig, "ray_address"))


class VideoFolderOptions(_Options):
    """Which files of a folder or bucket are videos to recognise (flows/recognise_folder.py), and where the work runs."""

    patterns: list[str] = Field(["*.mp4", "*.avi", "*.mov", "*.mkv"], min_length=1,
                                description="file name patterns of the videos (fsspec glob, case-sensitive)")
    recursive: bool = Field(False, description="look in sub-folders too (results keep the relative path)")
    dask_address: str | None = Field(None, description="tcp://SCHEDULER:8786; None: a LocalCluster on the worker, "
                                                       "started only when a video is to be recognised")
    n_workers: int | None = Field(None, ge=1, description="LocalCluster workers; None: one per core")
