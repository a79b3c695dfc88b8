"""The catalog's long-video tables (spotting): ``videos.parquet`` (one row per long video: its frames in
order and fps), ``intervals.parquet`` (one row per annotated interval, as 0-based inclusive frame indices
into its video, beside the sheet's numbers as written) and ``long_video_quarantine.parquet`` (what could
not be used, with its reason), next to samples.parquet, whose schema they leave alone.

Written as the sample catalog is (storage/catalog.py): explicit, versioned schemas
(``LONG_VIDEO_SCHEMA_VERSION`` in each file's metadata), each file whole or absent (a temporary name
renamed locally, one PUT on an object store), everything a source gave before replaced by what it gives now.
The ingest flow merges them before the source's row of sources.parquet, the mark that a source is in.
Two ingests into one catalog at once take turns on a lock file (storage/locations.py ``lock_file``).
"""

from __future__ import annotations

import io
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from merflow import __version__
from merflow.storage import catalog, locations

LONG_VIDEO_SCHEMA_VERSION = 1
VERSION_KEY = b"merflow.long_video_schema_version"
VIDEOS_FILE = "videos.parquet"
INTERVALS_FILE = "intervals.parquet"
QUARANTINE_FILE = "long_video_quarantine.parquet"

_SOURCE_FIELDS = [pa.field("source", pa.string(), nullable=False), pa.field("source_sha256", pa.string(), nullable=False)]

VIDEOS_SCHEMA = pa.schema([
    pa.field("video_key", pa.string(), nullable=False),        # dataset/subject/video_id
    pa.field("dataset", pa.string(), nullable=False),          # samm_lv | casme_sq_lv
    pa.field("subject", pa.string(), nullable=False),
    pa.field("subject_key", pa.string(), nullable=False),      # the person: samm/006 in samm and samm_lv alike
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("video_dir", pa.string(), nullable=False),
    pa.field("frame_files", pa.list_(pa.string()), nullable=False),  # in frame-number order: index i is frame i
    pa.field("n_frames", pa.int32(), nullable=False),
    pa.field("first_frame_number", pa.int64(), nullable=False),
    pa.field("fps", pa.float32(), nullable=False),
    *_SOURCE_FIELDS,
])

INTERVALS_SCHEMA = pa.schema([
    pa.field("interval_key", pa.string(), nullable=False),     # dataset/subject/interval_id
    pa.field("video_key", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("subject_key", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("interval_id", pa.string(), nullable=False),
    pa.field("type", pa.string(), nullable=False),             # micro | macro
    pa.field("onset", pa.int32(), nullable=False),             # 0-based frame index into the video, inclusive
    pa.field("apex", pa.int32()),                              # null: not annotated, or outside onset..offset
    pa.field("offset", pa.int32(), nullable=False),
    pa.field("onset_sheet", pa.float64()),                     # the sheet's numbers as written (566.4)
    pa.field("apex_sheet", pa.float64()),
    pa.field("offset_sheet", pa.float64()),
    pa.field("apex_source", pa.string(), nullable=False),      # annotated | missing | outside_interval
    pa.field("offset_source", pa.string(), nullable=False),    # annotated | apex (the sheet's offset was 0)
    pa.field("emotion_raw", pa.string()),
    pa.field("emotion", pa.string()),                          # tasks/labels.py's spelling; null if unknown
    pa.field("label", pa.string()),                            # negative | positive | surprise | others (MEAN's)
    pa.field("action_units", pa.string()),
    pa.field("where", pa.string()),                            # sheet and row
    *_SOURCE_FIELDS,
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),              # a video_key or an interval_key
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    *_SOURCE_FIELDS,
])

SCHEMAS = {VIDEOS_FILE: VIDEOS_SCHEMA, INTERVALS_FILE: INTERVALS_SCHEMA, QUARANTINE_FILE: QUARANTINE_SCHEMA}
SORT_KEYS = {VIDEOS_FILE: "video_key", INTERVALS_FILE: "interval_key", QUARANTINE_FILE: "key"}

Location = str | os.PathLike


class LongVideoSchemaError(ValueError):
    """A long-video table written by another schema version: one line naming the file."""


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    frame = frame.copy()
    for field in schema:
        if field.nullable and field.name not in frame.columns:
            frame[field.name] = None
    missing = [f.name for f in schema if f.name not in frame.columns]
    if missing:
        raise ValueError(f"long-video rows lack columns {missing}")
    # Nullable integers arrive as floats with NaN from pandas: back to Python ints and None.
    for field in schema:
        if pa.types.is_integer(field.type):
            frame[field.name] = [None if v is None or v != v else int(v) for v in frame[field.name]]
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata({VERSION_KEY: str(LONG_VIDEO_SCHEMA_VERSION).encode(),
                                          b"merflow.version": __version__.encode()})


def read_table(directory: Location, name: str) -> pd.DataFrame:
    """One long-video table; an empty one with its columns when the catalog has none yet."""
    path = locations.join(directory, name)
    schema = SCHEMAS[name]
    if not locations.exists(path):
        return schema.empty_table().to_pandas()
    table = pq.read_table(io.BytesIO(locations.read_bytes(path)))
    version = (table.schema.metadata or {}).get(VERSION_KEY, b"?").decode()
    if version != str(LONG_VIDEO_SCHEMA_VERSION):
        raise LongVideoSchemaError(f"{path} has long-video schema version {version}; this merflow reads version "
                                   f"{LONG_VIDEO_SCHEMA_VERSION}: ingest the long videos again into a new catalog")
    return table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}.get)


def read_videos(directory: Location) -> pd.DataFrame:
    """The catalog's long videos."""
    return read_table(directory, VIDEOS_FILE)


def read_intervals(directory: Location) -> pd.DataFrame:
    """The catalog's annotated intervals."""
    return read_table(directory, INTERVALS_FILE)


def read_quarantine(directory: Location) -> pd.DataFrame:
    """The long videos' quarantined videos and intervals, with their reasons."""
    return read_table(directory, QUARANTINE_FILE)


def _write(directory: Location, name: str, frame: pd.DataFrame) -> None:
    table = _table(frame.sort_values(["source", SORT_KEYS[name]]).reset_index(drop=True), SCHEMAS[name])
    with locations.atomic_write(locations.join(directory, name)) as file:
        pq.write_table(table, file)


def merge_source(directory: Location, source: str, source_sha256: str, videos: list[dict], intervals: list[dict],
                 problems: list[dict]) -> dict:
    """Replace everything ``source`` gave the long-video tables before by what it gives now; returns its counts.

    A video or interval key another source already gave is quarantined as ``duplicate_id`` (the first
    source keeps it), as storage/catalog.py does for samples. Intervals last: a reader that finds an
    interval finds its video.
    """
    with catalog.writing(directory):  # the catalog's one writer lock (re-entrant: an ingest already holds it)
        stamp = {"source": source, "source_sha256": source_sha256}
        old = {name: (frame := read_table(directory, name))[frame["source"] != source] for name in SCHEMAS}
        new_problems = [dict(p, **stamp) for p in problems]
        kept: dict[str, list[dict]] = {VIDEOS_FILE: [], INTERVALS_FILE: []}
        for name, rows, key in ((VIDEOS_FILE, videos, "video_key"), (INTERVALS_FILE, intervals, "interval_key")):
            taken = dict(zip(old[name][key], old[name]["source"]))
            for row in rows:
                if row[key] in taken:
                    new_problems.append({"key": row[key], "dataset": row["dataset"], "subject": row["subject"],
                                         "reason": "duplicate_id",
                                         "detail": f"already in the catalog from {taken[row[key]]}"} | stamp)
                else:
                    kept[name].append(dict(row, **stamp))
        frames = {name: pd.concat([old[name], pd.DataFrame(kept[name], columns=SCHEMAS[name].names)])
                  for name in kept}
        frames[QUARANTINE_FILE] = pd.concat([old[QUARANTINE_FILE],
                                             pd.DataFrame(new_problems, columns=QUARANTINE_SCHEMA.names)])
        for name in (QUARANTINE_FILE, VIDEOS_FILE, INTERVALS_FILE):
            _write(directory, name, frames[name])
        return {"videos": len(kept[VIDEOS_FILE]), "intervals": len(kept[INTERVALS_FILE]),
                "quarantined": len(new_problems)}


def summary(directory: Location) -> dict:
    """Per long-video dataset: videos, subjects, frames, intervals by type and class, quarantine reasons."""
    videos, intervals, quarantine = read_videos(directory), read_intervals(directory), read_quarantine(directory)
    found = {}
    for dataset, rows in videos.groupby("dataset"):
        spans = intervals[intervals["dataset"] == dataset]
        found[dataset] = {
            "videos": int(len(rows)), "subjects": int(rows["subject_key"].nunique()),
            "frames": int(rows["n_frames"].sum()),
            "intervals": {k: int(v) for k, v in spans["type"].value_counts().items()},
            "labels": {k: int(v) for k, v in spans["label"].fillna("none").value_counts().items()},
            "quarantined": {k: int(v) for k, v in
                            quarantine.loc[quarantine["dataset"] == dataset, "reason"].value_counts().items()}}
    for dataset in set(quarantine["dataset"]) - set(found):
        found[dataset] = {"videos": 0, "subjects": 0, "frames": 0, "intervals": {}, "labels": {},
                          "quarantined": {k: int(v) for k, v in
                                          quarantine.loc[quarantine["dataset"] == dataset, "reason"].value_counts().items()}}
    return found
