"""`merflow recognise`'s settings (``RecogniseConfig``): what travels whole from the CLI or a deployment's form to
flows/recognise.py. What the model does is the bundle's (its features, spotters, classes); these say how a
video is read and what is written. ``key_settings`` are the ones a result depends on (its key, with the
video's fingerprint and the bundle's hash: a rerun with the same ones is skipped).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from merflow.configs.base import Config, config_hash
from merflow.configs.spotting import EXPRESSION_TYPES


class RecogniseConfig(Config):
    """How a video is read and what is written for it."""

    fps: float | None = Field(None, gt=0, le=10000, description="the video's true frame rate, where its container's "
                                                                 "is wrong or missing (a folder of frames needs it)")
    types: tuple[str, ...] = Field((), description="expression types to spot, a subset of the model's (default: "
                                                   "every type the model spots)")
    strips: bool = Field(True, description="each interval's onset, apex and flow strip (strips/N.png)")
    chunk_frames: int = Field(512, ge=32, description="frames per chunk: one Dask task each (results do not depend on it)")

    @field_validator("types", mode="before")
    @classmethod
    def _types(cls, types):
        types = tuple(t for t in types.split(",") if t) if isinstance(types, str) else tuple(types or ())
        unknown = [t for t in types if t not in EXPRESSION_TYPES]
        if unknown:
            raise ValueError(f"types must be some of {', '.join(EXPRESSION_TYPES)}; got {', '.join(types)}")
        return types

    def key_settings(self) -> dict:
        """The settings a result's content depends on (not how it was split into chunks)."""
        return {"fps": self.fps, "types": list(self.types), "strips": self.strips}

    def key(self, video_fingerprint: str, bundle_hash: str) -> str:
        """A result's inputs as one digest: the video's content, the bundle, the settings."""
        return config_hash({"video": video_fingerprint, "model": bundle_hash, "settings": self.key_settings()}, 20)

    def wanted(self, available: tuple[str, ...]) -> tuple[str, ...]:
        """The types to spot of those the model has: ``types`` (a ValueError naming what it lacks), or all."""
        if not self.types:
            return tuple(available)
        missing = [t for t in self.types if t not in available]
        if missing:
            raise ValueError(f"the model spots {', '.join(available)}; --types asked for {', '.join(self.types)}")
        return tuple(t for t in available if t in self.types)
