"""The typed configuration of every early stage, and the one hashing helper for every configuration.

A leaf package: it imports nothing of the project, so any layer may import it (flows, storage, training
and tasks all point down to it). Each configuration is a frozen pydantic model (validated on
construction, JSON for recording and hashing, a form in Prefect's UI); the module of the stage that
uses one imports it from here.
"""

from merflow.configs.base import Config, config_hash
from merflow.configs.catalog import APEX_OUTSIDE_CLIP, APEX_SOURCES, LABEL_COLUMNS
from merflow.configs.features import (
    ARRAYS,
    COMPUTED_CONVENTIONS,
    DETECTORS,
    DIS_PRESET_NAMES,
    FEATURE_SCHEMA_VERSION,
    FIRST_FRAMES,
    FLOW_ALGORITHMS,
    FLOW_CHANNELS,
    IMPORT_FORMATS,
    NO_FACE_POLICIES,
    OPTFLOW_FARNEBACK_GAUSSIAN,
    SIZES,
    FaceConfig,
    FarnebackParameters,
    FeatureConfig,
    ImportedConfig,
    MotionConfig,
)
from merflow.configs.ingest import ExtractionLimits, IngestConfig

__all__ = [
    "APEX_OUTSIDE_CLIP",
    "APEX_SOURCES",
    "ARRAYS",
    "COMPUTED_CONVENTIONS",
    "Config",
    "DETECTORS",
    "DIS_PRESET_NAMES",
    "ExtractionLimits",
    "FEATURE_SCHEMA_VERSION",
    "FIRST_FRAMES",
    "FLOW_ALGORITHMS",
    "FLOW_CHANNELS",
    "FaceConfig",
    "FarnebackParameters",
    "FeatureConfig",
    "IMPORT_FORMATS",
    "ImportedConfig",
    "IngestConfig",
    "LABEL_COLUMNS",
    "MotionConfig",
    "NO_FACE_POLICIES",
    "OPTFLOW_FARNEBACK_GAUSSIAN",
    "SIZES",
    "config_hash",
]
