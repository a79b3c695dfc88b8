"""The features stage's configuration: how faces are found (``FaceConfig``, tasks/faces.py), which
optical flow (``MotionConfig``, tasks/motion.py), and everything that decides the features' values
(``FeatureConfig``, whose hash names the feature store's group, storage/features.py).

The hashes must never change for the same settings: a feature group is named ``<dataset>-<hash>``,
so another hash would hide every store computed before (tests/test_configs.py pins them).
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

from pydantic import Field, ValidationError, field_validator

from merflow.configs.base import Config, choice

DETECTORS = ("yunet", "haar")
NO_FACE_POLICIES = ("centre", "quarantine")
FLOW_ALGORITHMS = ("farneback", "tvl1", "dis")
DIS_PRESET_NAMES = ("ultrafast", "fast", "medium")  # cv2.DISOPTICAL_FLOW_PRESET_*, mapped in tasks/motion.py
SIZES = (28, 64, 80, 112, 128)
FIRST_FRAMES = ("onset", "onset+1")
# The features' schema version (storage/features.py writes it with every group); part of the hash.
# 2: the middle crop (training/models/survey_cnn.py). 3: the sequence arrays and the landmarks
# (SEQUENCE_ARRAYS). A configuration without sequences (sequence_length 0, or imported) is still schema 2 and
# hashes as before, so the groups written before schema 3 keep their names (FeatureConfig.to_dict).
FEATURE_SCHEMA_VERSION = 3
PAIR_SCHEMA_VERSION = 2
# The arrays of a shard, name -> (dtype, channels): what tasks/features.py computes, storage/features.py stores.
ARRAYS = {"onset": ("uint8", 3), "apex": ("uint8", 3), "middle": ("uint8", 3), "diff": ("float32", 3),
          "flow": ("float32", 4)}
FLOW_CHANNELS = ("u", "v", "magnitude", "strain")
CROP_CHANNELS = ("red", "green", "blue")  # tasks/features.py read_frame: OpenCV's BGR turned to RGB
# The sequence arrays (feature schema 3, ``sequence_length`` T > 0): name -> (dtype, dimension names after
# "sample"); their shapes are ``FeatureConfig.array_shapes``: frames (T, size, size), flow_seq (T - 1, 2, size,
# size), landmarks (7, 2).
SEQUENCE_ARRAYS = {"frames": ("uint8", ("time", "y", "x")), "flow_seq": ("float32", ("time", "channel", "y", "x")),
                   "landmarks": ("float32", ("point", "xy"))}
SEQUENCE_FLOW_CHANNELS = ("u", "v")
# The landmarks' points in stored order (tasks/sequences.py landmark_points): the detector's five, ordered by
# where they lie in the crop (eyes and mouth corners left to right), then the two brows merflow derives.
LANDMARK_POINTS = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right", "brow_left", "brow_right")
PAIR_DIMENSIONS = ("channel", "y", "x")
# What each computed array holds, channel by channel and in which units (training/data.py FeatureSource
# ``conventions``; an imported group's come from its ImportedConfig instead): a model that reads a channel by
# name, or a scale, reads it here rather than assuming it.
_CROP_CONVENTION = {"origin": "computed", "channels": list(CROP_CHANNELS),
                    "scaling": "uint8 0..255 as decoded; grey datasets stored as three equal channels"}
COMPUTED_CONVENTIONS: dict[str, dict] = {
    "onset": _CROP_CONVENTION, "apex": _CROP_CONVENTION, "middle": _CROP_CONVENTION,
    "diff": {"origin": "computed", "channels": list(CROP_CHANNELS),
             "scaling": "float32 in [-2, 2]: apex - first frame of the pair, each mapped to [-1, 1] first "
                        "(tasks/motion.py frame_difference)"},
    "flow": {"origin": "computed", "channels": list(FLOW_CHANNELS),
             "scaling": "float32, unnormalised: u, v in pixels of the crop from the first frame of the pair to the "
                        "apex, magnitude = hypot(u, v), strain dimensionless (tasks/motion.py flow_channels)"},
    # The sequence arrays (tasks/sequences.py): onset to offset in the pair's face box, T = sequence_length.
    "frames": {"origin": "computed", "dimensions": ["time", "y", "x"], "channels": ["grey"],
               "scaling": "uint8 0..255 grey crops (tasks/motion.py to_grey of each crop): frame k is the clip at time "
                          "t_k = k (N - 1) / (T - 1) frames after the onset (N frames onset..offset, k = 0..T-1), "
                          "linearly interpolated between the frames floor(t_k) and floor(t_k) + 1 and rounded; "
                          "frames[0] is the onset, frames[T-1] the offset"},
    "flow_seq": {"origin": "computed", "dimensions": ["time", "channel", "y", "x"],
                 "channels": list(SEQUENCE_FLOW_CHANNELS),
                 "scaling": "float32, unnormalised: u, v in pixels of the crop from frames[k] to frames[k + 1], "
                            "k = 0..T-2 (tasks/motion.py optical_flow; v > 0 is down)"},
    "landmarks": {"origin": "computed", "dimensions": ["point", "xy"], "channels": ["x", "y"],
                  "points": list(LANDMARK_POINTS),
                  "scaling": "float32 pixels of the crop (x to the right, y down, pixel centres on integers: the "
                             "crops' own coordinates), found once on the onset frame; left and right are the "
                             "image's; NaN where the detector gave no points (Haar, or no face: centre crop)",
                  "brows": "each eye moved along the face's up direction (perpendicular to the eye line, away from "
                           "the mouth) to the darkest row 0.2-0.5 inter-ocular distances above it where that is a "
                           "valley of the onset crop, else by 0.35 of that distance (ZOO.md 1.8's proxy); the "
                           "mark's landmarks.brows says which"},
}
# Inputs made by someone else's pipeline (`merflow import-features`, flows/imports.py): the formats read
# (tasks/imports.py) and the array each one fills.
IMPORT_FORMATS = ("survey-mat", "flow-images", "flow-folds", "apex-images")
IMPORTED_ARRAYS = ("flow", "apex")
OPTFLOW_FARNEBACK_GAUSSIAN = 256  # cv2.OPTFLOW_FARNEBACK_GAUSSIAN (tests/test_configs.py checks it)


Detector = choice(DETECTORS)
NoFace = choice(NO_FACE_POLICIES)
FlowAlgorithm = choice(FLOW_ALGORITHMS)
DisPreset = choice(DIS_PRESET_NAMES)
Size = choice(SIZES)
FirstFrame = choice(FIRST_FRAMES)


class FaceConfig(Config):
    """How faces are found and framed; one per feature run."""

    # 'yunet' (yuface, weights compiled in, 5 landmarks) or 'haar' (box only)
    detector: Detector = Field("yunet", description="face detector")
    fallback: Detector | None = "haar"   # tried when the detector finds nothing; None for no fallback
    margin: float = Field(0.15, ge=0)    # extra border around the detected box, as a fraction of its side, each side
    align: bool = True                   # rotate so that the eyes are level, when landmarks exist
    # 'centre': centre square crop, detector 'none'; 'quarantine': NoFaceError
    no_face: NoFace = Field("centre", description="when no face is found: centre crop and flag it, or quarantine "
                                                  "the sample")
    min_confidence: float = Field(0.5, ge=0, le=1)  # YuNet score threshold, 0..1

    @property
    def detectors(self) -> tuple[str, ...]:
        """The detectors tried, in order."""
        if self.fallback is None or self.fallback == self.detector:
            return (self.detector,)
        return (self.detector, self.fallback)


class FarnebackParameters(NamedTuple):
    """The positional parameters of ``cv2.calcOpticalFlowFarneback`` after the flow argument."""

    pyr_scale: Annotated[float, Field(gt=0, lt=1)]
    levels: Annotated[int, Field(ge=0)]
    winsize: Annotated[int, Field(ge=3)]
    iterations: Annotated[int, Field(ge=1)]
    poly_n: Literal[5, 7]
    poly_sigma: Annotated[float, Field(gt=0)]
    # There is never an initial flow to refine: each sample's flow starts from zero.
    flags: Literal[0, OPTFLOW_FARNEBACK_GAUSSIAN]


class MotionConfig(Config):
    """Which optical flow to compute and with what parameters.

    ``farneback`` holds the positional parameters of ``cv2.calcOpticalFlowFarneback`` after the
    flow argument: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags. The default
    is Meta-MMFNet's published setting. The TV-L1 fields are OpenCV's defaults; ``tvl1_tau`` above
    0.25 makes the primal-dual scheme unstable. ``spot_algorithm`` is the flow used by
    ``tasks.motion.spot_apex``, which runs it once per frame, so a cheap one is the default.
    """

    algorithm: FlowAlgorithm = Field("farneback", description="optical flow algorithm, with the published "
                                                              "Meta-MMFNet parameters for farneback")
    farneback: FarnebackParameters = FarnebackParameters(0.5, 3, 15, 3, 5, 1.2, 0)
    dis_preset: DisPreset = "medium"
    tvl1_tau: float = Field(0.25, gt=0, le=0.25)
    tvl1_lambda: float = Field(0.15, gt=0)
    tvl1_theta: float = Field(0.3, gt=0)
    tvl1_scales: int = Field(5, ge=1)
    tvl1_warps: int = Field(5, ge=1)
    spot_algorithm: FlowAlgorithm = "dis"
    spot_border: float = Field(0.2, ge=0, lt=0.5)  # fraction of each side of the crop that apex spotting leaves out

    @field_validator("farneback", mode="wrap")
    @classmethod
    def _named_parameters(cls, value, handler):
        """Seven values, each checked by its name in ``FarnebackParameters`` (the error names the bad ones)."""
        names = FarnebackParameters._fields
        if isinstance(value, (tuple, list)) and len(value) != len(names):
            raise ValueError(f"farneback must have {len(names)} values ({', '.join(names)}); got {tuple(value)!r}")
        try:
            return handler(tuple(value) if isinstance(value, list) else value)
        except ValidationError as error:
            problems = "; ".join(f"{names[e['loc'][0]] if e['loc'] and isinstance(e['loc'][0], int) else 'farneback'}: "
                                 f"{e['msg']}, got {e['input']!r}" for e in error.errors())
            raise ValueError(f"bad farneback parameters: {problems}") from None


ImportFormat = choice(IMPORT_FORMATS)
ImportedArray = choice(IMPORTED_ARRAYS)


class ImportedConfig(Config):
    """Features someone else's pipeline made, imported as they are (`merflow import-features`): where they
    came from (path and content checksum, and those of the label file or sample list that named and labelled
    them), the one array they fill, its channels in stored order and its scaling. A group holds one
    imported content: another checksum is another configuration (another group)."""

    format: ImportFormat
    source: str                                   # the path or URL given, local paths made absolute
    source_sha256: str                            # storage/sources.py import_fingerprint: of the content
    labels: str | None = None                     # survey-mat: the categorical label file
    labels_sha256: str | None = None
    sample_list: str | None = None                # the --list CSV that names, labels and groups the samples
    sample_list_sha256: str | None = None
    array: ImportedArray                          # the array it fills (flow images: flow; images: apex)
    dtype: Literal["uint8"] = "uint8"             # stored as read, never rescaled
    channels: tuple[str, ...]                     # in stored order, e.g. ("strain", "v", "u")
    scaling: str                                  # what the values mean, e.g. "min-max to 0..255 per image and channel"
    order: str                                    # how the stored order comes from the file
    resized: str | None = None                    # apex images of other sizes: how they were brought to ``size``

    def convention(self) -> dict:
        """This array's convention (training/data.py FeatureSource ``conventions``)."""
        return {"origin": "imported", "channels": list(self.channels), "scaling": self.scaling, "order": self.order,
                "format": self.format, "source": self.source, "source_sha256": self.source_sha256,
                **({"resized": self.resized} if self.resized else {}),
                **({"labels": self.labels} if self.labels else {}),
                **({"sample_list": self.sample_list} if self.sample_list else {})}


class FeatureConfig(Config):
    """Everything that decides the features' values; its hash names the Zarr group. ``imported``: the
    features were not computed from frames but imported as someone else's pipeline made them."""

    face: FaceConfig = Field(default_factory=FaceConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    size: Size = Field(80, description="crop size in pixels")
    shard_size: int = Field(16, ge=1, description="samples per Zarr shard, one Dask task each")
    # The pair of frames the difference and the flow compare: "onset" (onset and apex), or "onset+1",
    # the published Meta-MMFNet code's pair: its DebinMeng_train.load_imgs_tsn takes img_lists[1]
    # (onset + 1) and img_lists[apex - onset + 1] (apex + 1) of the clip's sorted frames.
    first_frame: FirstFrame = Field(
        "onset", description="the pair compared: onset and apex, or onset+1 and apex+1 as the published Meta-MMFNet "
                             "code reads them (for `merflow train --recipe published`)")
    imported: ImportedConfig | None = None
    # The sequence (feature schema 3, tasks/sequences.py): T frames from onset to offset and their T - 1 flows, and
    # the landmarks. 10 is ELRCN's TIM10 (ZOO.md 1.7); the 3D networks read 18 or 24 (1.6). 0: no sequence arrays
    # (a group as feature schema 2 wrote it, under the same name as before).
    sequence_length: int = Field(10, ge=0, le=256, description="frames per sample from onset to offset, resampled "
                                                               "(T; with T - 1 flows and the landmarks); 0: none")
    # A listed frame that is missing, unreadable or blank (a dropped frame written black) inside the clip is
    # interpolated across from its readable neighbours; past this share of the frames the sequence reads, the
    # sample is quarantined (too_many_missing_frames).
    max_missing_share: float = Field(0.2, ge=0, lt=1, description="share of the frames a sequence reads that may be "
                                                                  "missing and interpolated across; more: quarantined")

    @field_validator("sequence_length")
    @classmethod
    def _sequence_of_two_or_none(cls, value):
        if value == 1:
            raise ValueError("sequence_length is 0 (no sequence) or at least 2 (one flow needs two frames)")
        return value

    @property
    def sequences(self) -> bool:
        """Whether a group of this configuration holds the sequence arrays (computed with sequence_length > 0)."""
        return self.imported is None and self.sequence_length > 0

    def to_dict(self) -> dict:
        """The settings and the feature schema version, as stored with the group and hashed into its name."""
        settings = self.model_dump(mode="json") | {"feature_schema": FEATURE_SCHEMA_VERSION}
        if settings["first_frame"] == "onset":  # the default leaves the hash (the group names) as before
            del settings["first_frame"]
        if not self.sequences:  # no sequence arrays: recorded and hashed as feature schema 2 wrote them
            del settings["sequence_length"], settings["max_missing_share"]
            settings["feature_schema"] = PAIR_SCHEMA_VERSION
        if settings["imported"] is None:  # computed features: recorded and hashed as before imports existed
            del settings["imported"]
        else:  # no face was found and no flow computed: those settings decided nothing, so none is recorded
            for name in ("face", "motion", "first_frame"):
                settings.pop(name, None)
        return settings

    def arrays(self) -> dict[str, tuple[str, int]]:
        """The arrays a group of this configuration holds, name -> (dtype, first dimension after the sample's:
        an image array's channels, a sequence's length, the landmarks' points); ``array_shapes`` gives them whole."""
        return {name: (dtype, shape[0]) for name, (dtype, shape) in self.array_shapes().items()}

    def array_shapes(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """The arrays a group of this configuration holds, name -> (dtype, one sample's shape)."""
        size = self.size
        if self.imported is not None:
            return {self.imported.array: (self.imported.dtype, (len(self.imported.channels), size, size))}
        shapes = {name: (dtype, (channels, size, size)) for name, (dtype, channels) in ARRAYS.items()}
        if self.sequences:
            length = self.sequence_length
            shapes |= {"frames": ("uint8", (length, size, size)),
                       "flow_seq": ("float32", (length - 1, len(SEQUENCE_FLOW_CHANNELS), size, size)),
                       "landmarks": ("float32", (len(LANDMARK_POINTS), 2))}
        return shapes

    def dimensions(self, name: str) -> tuple[str, ...]:
        """The names of an array's dimensions after ``sample`` (Zarr's dimension names)."""
        return SEQUENCE_ARRAYS[name][1] if name in SEQUENCE_ARRAYS else PAIR_DIMENSIONS

    def conventions(self) -> dict[str, dict]:
        """What each array of a group of this configuration holds: origin, channels in stored order, scaling."""
        if self.imported is not None:
            return {self.imported.array: self.imported.convention()}
        conventions = {name: dict(COMPUTED_CONVENTIONS[name]) for name in self.array_shapes()}
        conventions["flow"]["algorithm"] = self.motion.algorithm
        if self.sequences:
            conventions["frames"]["length"] = self.sequence_length
            conventions["flow_seq"]["algorithm"] = self.motion.algorithm
        return conventions

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        """The configuration stored with a group (``to_dict``; older groups have no ``first_frame``, and those of
        feature schema 2 no sequence: ``sequence_length`` 0)."""
        values = {name: data[name] for name in cls.model_fields if name in data}
        if values.get("imported") is None:  # an imported group records no sequence setting: it never had one
            values.setdefault("sequence_length", 0)
        return cls.model_validate(values)
