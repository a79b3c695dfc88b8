"""The base of every configuration model, and ``config_hash``: one canonical JSON, one digest."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict


def config_hash(settings: Any, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``settings`` as canonical JSON (sorted keys).

    ``settings`` is a dict (or any JSON value) or a configuration, which is hashed as its ``to_dict()``.
    Values JSON has no type for are written as ``str()`` of them. Feature group names, checkpoint names
    and configuration ids are such digests, so this canonical form never changes.
    """
    if isinstance(settings, BaseModel):
        settings = settings.to_dict() if hasattr(settings, "to_dict") else settings.model_dump(mode="json")
    canonical = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def choice(valid: tuple):
    """A field type that takes one of ``valid``; its error lists every valid value
    (``must be one of 'a', 'b'; got 'c'``)."""

    def check(value):
        if value not in valid:
            raise ValueError(f"must be one of {', '.join(map(repr, valid))}; got {value!r}")
        return value

    return Annotated[Literal[valid], BeforeValidator(check)]


class Config(BaseModel):
    """A frozen, validated configuration: hashable, picklable, a misspelt field is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_dict(self) -> dict:
        """The settings as plain JSON values (what is recorded and hashed)."""
        return self.model_dump(mode="json")

    def replace(self, **changes) -> Config:
        """A copy with some fields changed, validated again (``dataclasses.replace`` for these models)."""
        return type(self).model_validate(self.model_dump() | changes)

    @property
    def hash(self) -> str:
        """``config_hash`` of this configuration."""
        return config_hash(self)
