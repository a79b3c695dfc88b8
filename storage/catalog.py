"""The sample catalog: ``samples.parquet`` (one row per usable sample), ``quarantine.parquet`` (one row
per unusable one, with its reason) and ``sources.parquet`` (one row per ingested archive or folder).

Schemas are explicit and versioned (``SCHEMA_VERSION`` in each file's metadata); files are written
whole (a temporary name renamed locally, one PUT on an object store: storage/locations.py), so a
reader never sees half a file. ``directory`` is a location: a local path or an fsspec URL.

Writers coordinate through the catalog's lock (``writing``: storage/locks.py, ``.locks/catalog``):
``merge_source`` reads, merges and writes the three files holding it, and a second writer waits for it
(a merge takes seconds), so two ingests at once both land. A source is keyed by its location as
``locations.normalise`` gives it (an absolute path or a URL), never by the text typed: the same
``data.zip`` typed in two folders is two sources.
"""

from __future__ import annotations

import io
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from merflow import __version__
from merflow.configs.catalog import APEX_OUTSIDE_CLIP, IMPORTED, INGESTED, STORED_LABEL_COLUMNS_V3
from merflow.configs.labels import label_columns, protocol_labels
from merflow.storage import locations, locks

# 2: clip_id, apex_annotated; apex_outside_clip is kept (apex spotted), not quarantined.
# 3: imported samples (`merflow import-features`): features someone else made, no frames. The frame fields
#    (clip_dir, frame_files, n_frames, fps, onset, offset, apex_source) are null for them, and ``origin``
#    says which kind a row is (``origin_detail``: what the source says of an imported sample, e.g. that it
#    is named by its position). Version-2 files are read as version 3 (``UPGRADES``): every row ingested.
# 4: no label_* columns stored: each is derived when the catalog is read (``with_labels``), from the row's dataset
#    and emotion through configs/labels.py's class sets, so that a new class set is its mapping, not a schema
#    change. What a source states outright (an imported row's label_megc2019, label_fused4 or label_fused9, a
#    label a user edited) is kept in ``stated_labels`` (class set -> label, null: in no class of it), which wins.
#    Version-2 and -3 files are read as version 4: their label columns become stated labels where they differ
#    from the derivation (imported rows' always; ingested rows' only where a mapping has changed since).
SCHEMA_VERSION = 4
SAMPLES_FILE = "samples.parquet"
QUARANTINE_FILE = "quarantine.parquet"
SOURCES_FILE = "sources.parquet"
# apex_source takes the values of APEX_SOURCES (configs/catalog.py, where the adapters find them too).

_SOURCE_FIELDS = [
    pa.field("source", pa.string(), nullable=False),        # its location: an absolute path or a URL
    pa.field("source_sha256", pa.string(), nullable=False),  # of the archive, or of a folder's listing
]

SAMPLES_SCHEMA = pa.schema([
    pa.field("sample_key", pa.string(), nullable=False),     # dataset/subject/sample_id, unique
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("subject_key", pa.string(), nullable=False),    # the person: SMIC HS/VIS/NIR share people
    pa.field("sample_id", pa.string(), nullable=False),      # <clip>@<onset> where a clip holds several expressions
    pa.field("clip_id", pa.string(), nullable=False),        # the clip (folder) as the sheet names it
    pa.field("is_macro", pa.bool_(), nullable=False),
    pa.field("origin", pa.string(), nullable=False),         # ingested (frames) | imported (features only)
    pa.field("origin_detail", pa.string()),                  # imported: where in the source, how it is named
    # The frames: null for an imported sample (its features came made; it has none).
    pa.field("clip_dir", pa.string()),
    pa.field("frame_files", pa.list_(pa.string())),          # onset..offset, in order
    pa.field("n_frames", pa.int32()),
    pa.field("fps", pa.float32()),
    pa.field("onset", pa.int32()),
    pa.field("apex", pa.int32()),                             # null: to be spotted (not annotated, or outside the clip)
    pa.field("apex_annotated", pa.int32()),                   # the sheet's apex as written, null where it has none
    pa.field("apex_source", pa.string()),                    # annotated | missing | outside_clip; null: imported
    pa.field("offset", pa.int32()),
    pa.field("action_units", pa.string()),
    pa.field("emotion_raw", pa.string()),
    pa.field("emotion", pa.string(), nullable=False),
    pa.field("objective_class", pa.string()),
    # Labels the source states outright (class set name -> label; null: the row is in no class of that set);
    # every other label is derived when read (``with_labels``). Null: none stated.
    pa.field("stated_labels", pa.map_(pa.string(), pa.string())),
    *_SOURCE_FIELDS,
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("sample_key", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string()),
    pa.field("sample_id", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    *_SOURCE_FIELDS,
])

SOURCES_SCHEMA = pa.schema([
    *_SOURCE_FIELDS,
    pa.field("kind", pa.string(), nullable=False),           # zip | tar | 7z | folder; imported: its format
    pa.field("root", pa.string(), nullable=False),           # where its content lies
    pa.field("datasets", pa.list_(pa.string()), nullable=False),
    pa.field("n_samples", pa.int64(), nullable=False),
    pa.field("n_quarantined", pa.int64(), nullable=False),
    pa.field("ingested_at", pa.string(), nullable=False),
    pa.field("config", pa.string(), nullable=False),         # the IngestConfig (imported: FeatureConfig) as JSON
])
# ORIGINS (configs/catalog.py): ingested | imported.

_SCHEMAS = {SAMPLES_FILE: SAMPLES_SCHEMA, QUARANTINE_FILE: QUARANTINE_SCHEMA, SOURCES_FILE: SOURCES_SCHEMA}
# Older versions this merflow reads, and what makes a file of one the current version: version 2 had no
# imported samples, so its rows are all ingested; its non-null frame fields only became nullable. Versions 2
# and 3 stored the label columns (STORED_LABEL_COLUMNS_V3): they are read as stated labels (``stated_from_columns``).
UPGRADES = {"2": {SAMPLES_FILE: {"origin": INGESTED, "origin_detail": None, "stated_labels": None}},
            "3": {SAMPLES_FILE: {"stated_labels": None}}}
LABEL_PREFIX = "label_"


class CatalogSchemaError(ValueError):
    """A catalog file written by an incompatible merflow version."""


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    missing = [f.name for f in schema if f.name not in frame.columns]
    if missing:
        raise ValueError(f"catalog rows lack columns {missing}")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    metadata = {b"merflow.schema_version": str(SCHEMA_VERSION).encode(),
                b"merflow.version": __version__.encode()}
    return table.replace_schema_metadata(metadata)


Location = str | os.PathLike


def write_table(directory: Location, name: str, frame: pd.DataFrame) -> str:
    """Write one catalog file atomically (locally: temp file in the same folder, then rename). The samples'
    ``label_*`` columns are not stored: where one differs from what its class set derives, it is kept as a
    stated label (``stated_from_columns``), so a frame read, edited and written reads back as edited."""
    if name == SAMPLES_FILE:
        frame = stated_from_columns(frame)
    table = _table(frame, _SCHEMAS[name])
    with locations.atomic_write(locations.join(directory, name)) as file:
        pq.write_table(table, file)
    return locations.join(directory, name)


def read_table(directory: Location, name: str) -> pd.DataFrame:
    """One catalog file as a DataFrame; an empty one with the right columns if it does not exist."""
    path = locations.join(directory, name)
    schema = _SCHEMAS[name]
    if not locations.exists(path):
        empty = schema.empty_table().to_pandas()
        return with_labels(empty) if name == SAMPLES_FILE else empty
    table = pq.read_table(io.BytesIO(locations.read_bytes(path)))
    version = (table.schema.metadata or {}).get(b"merflow.schema_version", b"?").decode()
    if version in UPGRADES:
        kept = STORED_LABEL_COLUMNS_V3 if name == SAMPLES_FILE else ()
        table = _upgraded(table, schema, UPGRADES[version].get(name, {}), kept)
    elif version != str(SCHEMA_VERSION):
        raise CatalogSchemaError(f"{path} has catalog schema version {version}; this merflow reads version "
                                 f"{SCHEMA_VERSION} (and upgrades versions {', '.join(UPGRADES)}): re-ingest the "
                                 "sources into a new folder (merflow ingest SOURCE ... --out NEW_CATALOG_DIR)")
    # Nullable ints stay ints (apex is null where not annotated) instead of turning into floats.
    frame = table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}.get)
    if name == SAMPLES_FILE:
        frame = with_labels(stated_from_columns(frame) if version in UPGRADES else _stated_as_dicts(frame))
    return frame


def _upgraded(table: pa.Table, schema: pa.Schema, added: dict, kept: tuple[str, ...] = ()) -> pa.Table:
    """An older version's table as the current ``schema``: the columns it lacks filled with ``added``'s values;
    of the columns the current schema no longer stores, those in ``kept`` stay (after the schema's)."""
    columns, fields = [], list(schema)
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.array([added[field.name]] * len(table), type=field.type))
    for name in kept:
        if name in table.column_names and name not in schema.names:
            columns.append(table[name])
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# ------------------------------------------------------------------------------------------------ labels
def _stated(value) -> dict:
    """A ``stated_labels`` cell as a dict (pyarrow reads a map as (key, value) pairs; null: none stated)."""
    if value is None or (isinstance(value, float) and value != value):
        return {}
    return dict(value.items() if isinstance(value, dict) else value)


def _stated_as_dicts(frame: pd.DataFrame) -> pd.DataFrame:
    frame["stated_labels"] = [_stated(v) or None for v in frame["stated_labels"]]
    return frame


def _label(value) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def derived_labels(frame: pd.DataFrame) -> list[dict[str, str | None]]:
    """Each row's ``label_*`` columns as its class sets derive them (configs/labels.py ``protocol_labels``) from
    its dataset and normalised emotion; none for imported rows, whose labels are only those their source states."""
    cache: dict[tuple, dict] = {}
    derived = []
    origins = frame["origin"] if "origin" in frame else [INGESTED] * len(frame)
    for dataset, subject, sample_id, emotion, is_macro, origin in zip(
            frame["dataset"], frame["subject"], frame["sample_id"], frame["emotion"], frame["is_macro"], origins):
        if origin != INGESTED:
            derived.append({})
            continue
        key = (dataset, subject, sample_id, _label(emotion), bool(is_macro))
        if key not in cache:
            cache[key] = protocol_labels(*key)
        derived.append(cache[key])
    return derived


def stated_from_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as stored: its ``label_*`` columns dropped, and each value that differs from what the row's class
    sets derive kept in ``stated_labels`` (one that agrees is dropped from it: derived again when read)."""
    columns = [c for c in frame.columns if c.startswith(LABEL_PREFIX)]
    frame = frame.copy()
    stated = [_stated(v) for v in frame["stated_labels"]] if "stated_labels" in frame else [{} for _ in range(len(frame))]
    if columns and len(frame):
        derived = derived_labels(frame)
        for column in columns:
            name = column[len(LABEL_PREFIX):]
            for index, value in enumerate(frame[column].tolist()):
                value = _label(value)
                if value != derived[index].get(column):
                    stated[index][name] = value
                else:
                    stated[index].pop(name, None)
    frame["stated_labels"] = [dict(sorted(s.items())) or None for s in stated]
    return frame.drop(columns=columns)


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The samples with every ``label_*`` column (``configs.labels.label_columns()``, then any class set only a
    source states): the row's stated label where it states one, else its class set's derivation."""
    stated = [_stated(v) for v in frame["stated_labels"]]
    columns = list(label_columns())
    columns += sorted({f"{LABEL_PREFIX}{name}" for s in stated for name in s} - set(columns))
    derived = derived_labels(frame) if len(frame) else []
    labels = {column: [s.get(column[len(LABEL_PREFIX):], d.get(column)) if column[len(LABEL_PREFIX):] in s
                       else d.get(column) for s, d in zip(stated, derived)] for column in columns}
    return pd.concat([frame.drop(columns=[c for c in columns if c in frame.columns]),
                      pd.DataFrame(labels, index=frame.index, dtype=object)], axis=1)


def samples_columns() -> list[str]:
    """The columns ``read_samples`` gives: the stored ones (``SAMPLES_SCHEMA``), then the label columns."""
    return SAMPLES_SCHEMA.names + list(label_columns())


def read_samples(directory: Location) -> pd.DataFrame:
    """The catalog's samples table (empty with its columns when there is none yet), with every ``label_*``
    column (``samples_columns``): stated by the source, or derived from the row's dataset and emotion."""
    return read_table(directory, SAMPLES_FILE)


def read_quarantine(directory: Location) -> pd.DataFrame:
    """The catalog's quarantine table (empty with its columns when there is none yet)."""
    return read_table(directory, QUARANTINE_FILE)


def read_sources(directory: Location) -> pd.DataFrame:
    """The catalog's sources table (empty with its columns when there is none yet)."""
    return read_table(directory, SOURCES_FILE)


def writing(directory: Location, on_wait=None):
    """The catalog's writer lock (a context manager): held while a writer reads, merges and writes, so no
    other writer's rows are lost; another writer waits (``on_wait(line)`` says for whom). Re-entrant: an
    ingest holds it across its merge and its prune (storage/sources.py)."""
    where = locations.normalise(directory)
    return locks.hold(locks.lock_location(where, "catalog"), f"the catalog at {where}", wait=True, on_wait=on_wait)


def merge_source(directory: Location, source: dict, samples: list[dict], problems: list[dict], on_wait=None) -> dict:
    """Replace everything a source contributed before by what it gives now, and write the catalog, under
    the catalog's lock (``writing``: a concurrent writer's rows are read after it wrote them).

    A sample key already given by another source is quarantined as ``duplicate_id`` rather than
    overwriting it. Returns the source's row as written.
    """
    with writing(directory, on_wait) as lock:
        return _merge(directory, source, samples, problems, lock)


def _merge(directory: Location, source: dict, samples: list[dict], problems: list[dict], lock: locks.Lock) -> dict:
    old_samples, old_quarantine, old_sources = (read_samples(directory), read_quarantine(directory),
                                                read_sources(directory))
    old_samples, old_quarantine, old_sources = (frame[frame["source"] != source["source"]]
                                                for frame in (old_samples, old_quarantine, old_sources))
    stamp = {"source": source["source"], "source_sha256": source["source_sha256"]}
    taken = dict(zip(old_samples["sample_key"], old_samples["source"]))
    new_samples, new_problems = [], [dict(p, **stamp) for p in problems]
    for row in samples:
        if row["sample_key"] in taken:
            new_problems.append({key: row[key] for key in ("sample_key", "dataset", "subject", "sample_id")}
                                | {"reason": "duplicate_id",
                                   "detail": f"already in the catalog from {taken[row['sample_key']]}"} | stamp)
        else:  # rows that do not say otherwise are ingested ones (an adapter's, a test's)
            new_samples.append(_stored_row({"origin": INGESTED, "origin_detail": None} | row | stamp))
    source_row = dict(source, n_samples=len(new_samples), n_quarantined=len(new_problems))
    frames = {
        SAMPLES_FILE: pd.concat([stated_from_columns(old_samples),
                                 pd.DataFrame(new_samples, columns=SAMPLES_SCHEMA.names)]),
        QUARANTINE_FILE: pd.concat([old_quarantine, pd.DataFrame(new_problems, columns=QUARANTINE_SCHEMA.names)]),
        SOURCES_FILE: pd.concat([old_sources, pd.DataFrame([source_row], columns=SOURCES_SCHEMA.names)]),
    }
    # Sources last: a source row is the mark that its samples are in.
    for name in (SAMPLES_FILE, QUARANTINE_FILE, SOURCES_FILE):
        lock.check()  # an object store's lock lost to another writer (this one stalled): write nothing more
        frame = frames[name].sort_values(["source", "sample_key"] if name != SOURCES_FILE else ["source"])
        write_table(directory, name, frame.reset_index(drop=True))
    return source_row


def _stored_row(row: dict) -> dict:
    """A new sample row as stored: the ``label_*`` values it gives are stated where they differ from what its
    class sets derive (an imported row's labels, always); a label it does not give is derived when read."""
    columns = {key: row[key] for key in row if key.startswith(LABEL_PREFIX)}
    stated = _stated(row.get("stated_labels"))
    if columns:
        derived = derived_labels(pd.DataFrame([row]))[0]
        for column, value in columns.items():
            if _label(value) != derived.get(column):
                stated[column[len(LABEL_PREFIX):]] = _label(value)
    return {key: value for key, value in row.items() if key not in columns} | {
        "stated_labels": dict(sorted(stated.items())) or None}


def require_catalog(directory: Location) -> None:
    """FileNotFoundError unless ``directory`` holds a catalog (its samples file): a mistyped path is an
    error, not an empty catalog."""
    if not locations.exists(locations.join(directory, SAMPLES_FILE)):
        what = "does not exist" if not locations.exists(directory) else f"has no {SAMPLES_FILE}"
        raise FileNotFoundError(f"no catalog at {directory}: it {what}; make one with "
                                f"`merflow ingest SOURCE ... --out {directory}`")


def summary(directory: Location) -> dict:
    """Counts a user wants after an ingest: per dataset samples, subjects, emotions, quarantine reasons."""
    require_catalog(directory)
    samples, quarantine = read_samples(directory), read_quarantine(directory)
    per_dataset = {}
    for dataset, rows in samples.groupby("dataset"):
        per_dataset[dataset] = {
            "samples": int(len(rows)), "subjects": int(rows["subject"].nunique()),
            "macro": bool(rows["is_macro"].all()),
            "emotions": {k: int(v) for k, v in rows["emotion"].value_counts().items()},
            "apex_missing": int((rows["apex_source"] == "missing").sum()),
            "apex_outside_clip": int((rows["apex_source"] == APEX_OUTSIDE_CLIP).sum()),
            "imported": int((rows["origin"] == IMPORTED).sum()),  # features imported, no frames
            # Each class set's labelled samples of this dataset (derived or stated): what its protocols can use.
            "class_sets": {column[len(LABEL_PREFIX):]: int(rows[column].notna().sum())
                           for column in rows.columns if column.startswith(LABEL_PREFIX) and rows[column].notna().any()},
        }
    reasons = {}
    for (dataset, reason), rows in quarantine.groupby(["dataset", "reason"]):
        reasons.setdefault(dataset, {})[reason] = int(len(rows))
    # Kept samples a user should know about: an annotated apex outside onset..offset (spotted instead).
    outside = samples[samples["apex_source"] == APEX_OUTSIDE_CLIP]
    warnings = [{"sample_key": row.sample_key, "warning": "apex_outside_clip",
                 "detail": f"annotated apex {row.apex_annotated} outside onset..offset {row.onset}..{row.offset}: "
                           "kept, the apex is spotted"} for row in outside.itertuples()]
    return {"samples": int(len(samples)), "quarantined": int(len(quarantine)),
            "datasets": per_dataset, "quarantine_reasons": reasons, "warnings": warnings}


def summary_json(directory: Location) -> str:
    """The catalog's ``summary`` as indented, key-sorted JSON."""
    return json.dumps(summary(directory), indent=2, sort_keys=True)
