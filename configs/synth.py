"""The synthetic datasets' configuration (``SynthConfig``, `merflow synth`), and the names it accepts.

A leaf module: the dataset names and each dataset's emotion names are written here; tasks/synthetic/layouts.py
checks at import that its writers and specs hold exactly these (as training/encoders.py checks ENCODER_NAMES).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from merflow.configs.base import Config, choice

# tasks/synthetic/layouts.py WRITERS, in its order, and each SPECS entry's emotion names (the real datasets' own).
SYNTH_EMOTIONS: dict[str, tuple[str, ...]] = {
    "casme2": ("others", "disgust", "happiness", "repression", "surprise", "sadness", "fear"),
    "samm": ("Anger", "Other", "Happiness", "Surprise", "Contempt", "Disgust", "Fear", "Sadness"),
    "smic": ("negative", "positive", "surprise"),
    "casme": ("tense", "disgust", "repression", "surprise", "happiness", "sadness", "contempt", "fear"),
    "casme_sq": ("disgust", "happiness", "surprise", "anger", "fear", "pain", "sadness", "helpless"),
    "ckplus": ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
    "casme3": ("disgust", "surprise", "others", "fear", "anger", "sad", "happy"),
}
SYNTH_DATASETS = tuple(SYNTH_EMOTIONS)
ARCHIVE_FORMATS = ("zip", "tar.gz", "none")
# What users type -> the writer's name.
DATASET_ALIASES = {"casme2sq": "casme_sq", "ck+": "ckplus", "smic_hs": "smic", "casme^3": "casme3"}

Archive = choice(ARCHIVE_FORMATS)


class SynthConfig(Config):
    """Everything that decides a synthetic dataset; written into it as merflow-synthetic.json.

    ``SynthConfig("casme2", subjects=2)``: the dataset may be given first, without its name.
    """

    dataset: str = Field(description="the real dataset whose layout and sheets are written")
    subjects: int = Field(4, description="number of subjects")
    samples_per_subject: int = Field(3, description="samples per subject")
    # total; overrides samples_per_subject (e.g. 255 over 26 subjects)
    samples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="total samples, spread over the subjects (overrides samples per subject)")
    archive: Archive = Field("zip", description="pack as zip or tar.gz, or leave a folder")
    seed: int = Field(0, description="random seed: same seed, same archive content")
    scale: float = Field(0.5, description="frame size relative to the real dataset's, e.g. 0.25 for fast tests")
    quirks: bool = Field(True, description="the real datasets' quirks (apex '/', missing frames, stray files, ...)")
    # A photo of one frontal face that every subject is made from (each with its own pose, warp and
    # tone, faces.subject_identity), read at run time: the path is recorded, the image never copied.
    face_image: str | None = Field(None, description="a photo of one frontal face to make every subject from (own "
                                                     "pose, warp, tone each); read at run time, never copied")
    # Only these emotions (the dataset's own names), in equal numbers; empty: the real proportions.
    emotions: tuple[str, ...] = Field((), description="only these emotions (the dataset's own names, e.g. "
                                                      "Anger,Happiness,Surprise), equally many")

    def __init__(self, dataset: str | None = None, /, **settings):
        if dataset is not None:
            if "dataset" in settings:
                raise TypeError("SynthConfig got the dataset twice")
            settings["dataset"] = dataset
        super().__init__(**settings)

    @field_validator("dataset", mode="before")
    @classmethod
    def _known_dataset(cls, dataset):
        name = DATASET_ALIASES.get(str(dataset).lower(), str(dataset).lower())
        if name not in SYNTH_EMOTIONS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(SYNTH_DATASETS)} (or casme2sq)")
        return name

    @field_validator("scale")
    @classmethod
    def _scale_within_bounds(cls, scale):
        if not 0.05 <= scale <= 1.0:
            raise ValueError(f"scale must be within 0.05..1, not {scale}")
        return scale

    @field_validator("face_image")
    @classmethod
    def _face_image_is_a_file(cls, face_image):
        if face_image is not None and not Path(face_image).is_file():
            raise ValueError(f"face image {face_image!r} is not a file")
        return face_image

    @model_validator(mode="after")
    def _samples_and_emotions(self):
        if self.subjects < 1 or self.total < 1:
            raise ValueError("need at least one subject and one sample")
        unknown = sorted(set(self.emotions) - set(SYNTH_EMOTIONS[self.dataset]))
        if unknown:
            raise ValueError(f"unknown {self.dataset} emotions {unknown}; "
                             f"choose from {', '.join(SYNTH_EMOTIONS[self.dataset])}")
        return self

    @property
    def total(self) -> int:
        """How many samples are written: ``samples`` if given, else subjects x samples_per_subject."""
        return self.samples if self.samples is not None else self.subjects * self.samples_per_subject


# The long-video sets (spotting; tasks/synthetic/long_videos.py): each planted interval's emotion is one of
# these (the dataset's own spellings), drawn in turn; their recipes are told apart by MEAN's three classes.
LONG_VIDEO_SYNTH_EMOTIONS: dict[str, tuple[str, ...]] = {
    "samm_lv": ("Anger", "Happiness", "Surprise", "Disgust", "Contempt", "Fear", "Sadness", "Other"),
    "casme_sq_lv": ("disgust", "happiness", "surprise", "anger", "fear", "sadness"),
}
LONG_VIDEO_DATASET_ALIASES = {"sammlv": "samm_lv", "samm-lv": "samm_lv", "casme2sq_lv": "casme_sq_lv"}


class LongVideoSynthConfig(Config):
    """A synthetic long-video set: faces talking, blinking and moving their heads for ``seconds`` a video,
    with micro- and macro-expressions planted at known intervals, in SAMM Long Videos' or CAS(ME)^2's layout
    (frame rate, frame size, colour, folders, sheets); written into it as merflow-synthetic.json."""

    dataset: str = Field(description="the long-video set whose layout and sheets are written: samm_lv or casme_sq_lv")
    subjects: Annotated[int, Field(ge=1)] = Field(3, description="number of subjects")
    videos_per_subject: Annotated[int, Field(ge=1)] = Field(2, description="long videos per subject")
    seconds: Annotated[float, Field(gt=0)] = Field(30.0, description="length of each video in seconds")
    micro_per_video: Annotated[int, Field(ge=0)] = Field(3, description="micro-expressions planted per video")
    macro_per_video: Annotated[int, Field(ge=0)] = Field(2, description="macro-expressions planted per video")
    emotions: tuple[str, ...] = Field((), description="the planted expressions' emotions, in turn (the dataset's "
                                                      "own names); empty: every one the set's writer knows")
    archive: Archive = Field("zip", description="pack as zip or tar.gz, or leave a folder")
    seed: int = Field(0, description="random seed: same seed, same archive content")
    scale: float = Field(0.5, description="frame size relative to the real dataset's (SAMM 960x650, CAS(ME)^2 "
                                          "640x480), as SynthConfig's")
    quirks: bool = Field(True, description="the real sheets' quirks (apex -1, fractional frames, onset 0, offset 0)")
    talking: bool = Field(True, description="the face talks between the expressions (mouth motion that is not one)")
    face_image: str | None = Field(None, description="a photo of one frontal face to make every subject from")

    def __init__(self, dataset: str | None = None, /, **settings):
        if dataset is not None:
            if "dataset" in settings:
                raise TypeError("LongVideoSynthConfig got the dataset twice")
            settings["dataset"] = dataset
        super().__init__(**settings)

    @field_validator("dataset", mode="before")
    @classmethod
    def _known_dataset(cls, dataset):
        name = LONG_VIDEO_DATASET_ALIASES.get(str(dataset).lower(), str(dataset).lower())
        if name not in LONG_VIDEO_SYNTH_EMOTIONS:
            raise ValueError(f"unknown long-video set {dataset!r}; choose from {', '.join(LONG_VIDEO_SYNTH_EMOTIONS)}")
        return name

    @field_validator("scale")
    @classmethod
    def _scale_within_bounds(cls, scale):
        if not 0.05 <= scale <= 1.0:
            raise ValueError(f"scale must be within 0.05..1, not {scale}")
        return scale

    @field_validator("face_image")
    @classmethod
    def _face_image_is_a_file(cls, face_image):
        if face_image is not None and not Path(face_image).is_file():
            raise ValueError(f"face image {face_image!r} is not a file")
        return face_image

    @model_validator(mode="after")
    def _known_emotions(self):
        unknown = sorted(set(self.emotions) - set(LONG_VIDEO_SYNTH_EMOTIONS[self.dataset]))
        if unknown:
            raise ValueError(f"unknown {self.dataset} emotions {unknown}; "
                             f"choose from {', '.join(LONG_VIDEO_SYNTH_EMOTIONS[self.dataset])}")
        return self
