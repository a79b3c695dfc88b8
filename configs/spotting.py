"""Spotting in long videos: the per-frame features' configuration (``SpotFeatureConfig``, whose hash names
the per-frame store's group, storage/spotting_features.py) and the spotters' settings (``SpotConfig``, which
travels whole from `merflow spot` or a flow run's form to training/spotting/).

Where a setting depends on the frame rate it is given in seconds and turned into frames per video
(``frames``), so that the same configuration applies to a 30 fps and a 200 fps video alike; the window
k is not a setting at all: SOFTNet's rule, k = int((N + 1) / 2) with N the mean (offset - onset) of the
training intervals of a type, computed on the training subjects of each fold (training/spotting/loso.py).
Sources of every default: docs/spotting.md.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from merflow.configs.base import Config, choice
from merflow.configs.features import FaceConfig, MotionConfig

# The long-video datasets (tasks/datasets/samm_lv.py, casme_sq_lv.py): their adapters, catalog tables
# (storage/long_videos.py) and synthetic writers (tasks/synthetic/long_videos.py) use these names.
LONG_VIDEO_DATASETS = ("samm_lv", "casme_sq_lv")
EXPRESSION_TYPES = ("micro", "macro")
SPOTTERS = ("baseline", "softnet")
# merflow: every setting chosen on training subjects only. published: SOFTNet's own p = 0.55 and k from the
# mean duration over all subjects, the test subject included (genbing99/SoftNet-SpotME@dd43d1e training.py,
# load_label.py cal_k): a labelled comparison, never an honest result.
SPOT_RECIPES = ("merflow", "published")
CLASSIFIERS = ("nearest-centroid",)
CROP_SIZES = (64, 96, 128)
# What chose the settings of a spotting run: the result tables' ``chosen_on`` column says it in words.
CHOSEN_ON = {
    ("baseline", "merflow"): "training subjects",
    ("softnet", "merflow"): "k: training subjects; p: validation subjects (training subjects held out of fitting)",
    ("softnet", "published"): "all subjects, test subject included (SOFTNet's published p and k)",
}
SPOT_FEATURE_SCHEMA = 1  # storage/spotting_features.py writes it with every group; part of the hash
MEGC_IOU = 0.5           # MEGC: a spotted interval is a true positive at IoU >= 0.5 (ZOO.md section 2)

SpotterName = choice(SPOTTERS)
SpotRecipe = choice(SPOT_RECIPES)
ClassifierName = choice(CLASSIFIERS)
CropSize = choice(CROP_SIZES)


def frames(seconds: float, fps: float, minimum: int = 1) -> int:
    """A duration in seconds as a whole number of frames at ``fps`` (rounded, at least ``minimum``)."""
    return max(int(round(seconds * fps)), minimum)


class SpotFeatureConfig(Config):
    """Everything that decides the per-frame features' values; its hash names the store's group.

    SOFTNet's input (genbing99/SoftNet-SpotME@dd43d1e extraction_preprocess.py): the face cropped at
    ``crop`` pixels, optical flow from frame i to frame i + k, u, v and strain, each channel less its mean
    over a patch at the nose (u and v then taken absolute), the eyes masked, and two regions (both brows
    above the mouth) resampled into one ``roi`` x ``roi`` image. The regions come from YuNet's five
    points here (SOFTNet used dlib's 68): tasks/spotting_features.py ``roi_geometry``, docs/spotting.md.
    """

    face: FaceConfig = Field(default_factory=lambda: FaceConfig(no_face="quarantine"))
    # Farneback with Meta-MMFNet's parameters: TV-L1 (SOFTNet's) is ~100 times slower on a CPU
    # (../shared/STACK.md); docs/spotting.md lists it as a deviation, tvl1 is a choice.
    motion: MotionConfig = Field(default_factory=MotionConfig)
    crop: CropSize = Field(128, description="face crop side in pixels (SOFTNet: 128)")
    roi: int = Field(42, ge=8, description="side of the brows-over-mouth image (SOFTNet: 42)")
    # The recipe of ZOO.md "a user's video": YuNet again every this many seconds; a box whose IoU with the
    # segment's box is below drift_iou starts a new segment (the face moved).
    redetect_seconds: float = Field(1.0, gt=0, description="seconds between face re-detections")
    drift_iou: float = Field(0.8, gt=0, le=1, description="a re-detected box with a lower IoU starts a new segment")
    chunk_frames: int = Field(512, ge=16, description="frames per chunk: one Dask task and one Zarr shard each")

    def to_dict(self) -> dict:
        """The settings and the per-frame schema version, as stored with the group and hashed into its name."""
        return self.model_dump(mode="json") | {"spot_feature_schema": SPOT_FEATURE_SCHEMA}

    @classmethod
    def from_dict(cls, data: dict) -> SpotFeatureConfig:
        """The configuration stored with a group (``to_dict``)."""
        return cls.model_validate({name: data[name] for name in cls.model_fields if name in data})


def _grid(start: float, stop: float, step: float) -> tuple[float, ...]:
    return tuple(round(start + step * i, 4) for i in range(int(math.floor((stop - start) / step + 1e-9)) + 1))


class SpotConfig(Config):
    """A spotter's settings: which spotter, which recipe, the grids its settings are chosen from, its training.

    ``baseline`` learns nothing: the ROI flow magnitude between frame i and i + k, a threshold
    T = mean + p (max - mean) per video and interval length filters, p and the filters chosen on the
    training subjects. ``softnet``: SOFTNet's three-stream shallow network on the ROI flow, trained on
    pseudo-labels (a frame is 1 when its window [i, i + k) overlaps an interval), its score smoothed over
    2k frames, the same threshold, peaks at least k apart, each peak an interval [peak - k, peak + k].
    """

    spotter: SpotterName = Field("softnet", description="softnet (learned) or baseline (learns nothing)")
    recipe: SpotRecipe = Field(
        "merflow", description="merflow: k, p and the length filters chosen on training subjects only; published: "
                               "SOFTNet's p = 0.55 and k from all subjects' durations (leaks: a labelled comparison)")
    types: tuple[str, ...] = Field(EXPRESSION_TYPES, description="expression types to spot")
    p_grid: tuple[float, ...] = Field(_grid(0.05, 0.95, 0.05), description="threshold fractions p searched")
    published_p: float = 0.55        # SoftNet-SpotME@dd43d1e training.py: "0.55 achieved the highest F1-Score"
    # baseline: interval length filters [lo, hi] searched as quantile pairs of the training intervals'
    # lengths (MDMD filters by length: ZOO.md section 2), widened by length_slack on each side.
    length_quantiles: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.05, 0.95), (0.1, 0.9), (0.0, math.inf))
    length_slack: float = Field(0.25, ge=0)
    # softnet, recipe merflow: training subjects held out of fitting to choose p on (at least one).
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    epochs: int = Field(10, ge=1, description="SOFTNet training epochs (SOFTNet: 10)")
    batch_size: int = Field(12, ge=1, description="SOFTNet mini-batch (SOFTNet: 12)")
    lr: float = Field(5e-4, gt=0, description="SOFTNet SGD learning rate (SOFTNet: 0.0005)")
    negative_keep: float = Field(0.5, gt=0, le=1)   # SOFTNet removes half the negatives (rem_count = max / 2)
    augment_micro: bool = True       # SOFTNet: flip, 7x7 blur and noise copies of each micro positive
    seed: int = Field(0, description="random seed (subjects held out, negatives dropped, weights)")
    device: str = Field("cpu", description="torch device for SOFTNet: cpu, cuda or auto")
    classifier: ClassifierName = Field(
        "nearest-centroid", description="spot-then-recognise: the recognition model trained on the short clips "
                                        "(annotated micro intervals) of the other subjects")

    @field_validator("types", mode="before")
    @classmethod
    def _known_types(cls, types):
        types = tuple(types.split(",")) if isinstance(types, str) else tuple(types)
        unknown = [t for t in types if t not in EXPRESSION_TYPES]
        if unknown or not types:
            raise ValueError(f"types must be some of {', '.join(EXPRESSION_TYPES)}; got {types!r}")
        return tuple(t for t in EXPRESSION_TYPES if t in types)

    @field_validator("p_grid", mode="before")
    @classmethod
    def _p_grid(cls, grid):
        grid = tuple(float(p) for p in (grid.split(",") if isinstance(grid, str) else grid))
        if not grid or any(not 0 <= p <= 1 for p in grid):
            raise ValueError(f"p values must lie in 0..1; got {grid!r}")
        return grid

    @model_validator(mode="after")
    def _recipe_fits_spotter(self):
        if self.spotter == "baseline" and self.recipe != "merflow":
            raise ValueError("the baseline has no published recipe: its settings are always chosen on training "
                             "subjects (recipe merflow)")
        return self

    @property
    def chosen_on(self) -> str:
        """What chose this spotter's settings, as the result tables say it."""
        return CHOSEN_ON[(self.spotter, self.recipe)]

    @property
    def leaky(self) -> bool:
        """Whether a setting was chosen with the test subject's labels (the published recipe)."""
        return self.recipe == "published"
