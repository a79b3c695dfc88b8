"""The ingest stage's configuration: which adapter, and the limits on what one archive may unpack to."""

from __future__ import annotations

import json

from pydantic import Field

from merflow.configs.base import Config


class ExtractionLimits(Config):
    """Bounds on what one archive may unpack to; the defaults leave room for whole video datasets."""

    max_total_bytes: int = Field(512 * 2**30, gt=0)
    max_entries: int = Field(5_000_000, gt=0)
    max_ratio: float = Field(100.0, gt=0)
    # Small archives of text legitimately compress far better than max_ratio.
    ratio_floor_bytes: int = Field(32 * 2**20, ge=0)


class IngestConfig(Config):
    """How sources were ingested; recorded as JSON with every source row of the catalog."""

    dataset: str | None = None                 # None: detect from the content
    limits: ExtractionLimits = Field(default_factory=ExtractionLimits)

    def to_json(self) -> str:
        """The JSON kept in sources.parquet, compared to tell an unchanged source (sorted keys)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)
