"""What `merflow recognise` writes for one video: a folder, whole or absent, that a rerun with the same inputs
finds done and leaves alone.

Layout of ``OUT/`` (one video; the folder deployment writes ``OUT/<video name>/`` per video):

- ``intervals.parquet`` and ``intervals.csv``: one row per spotted interval (``INTERVAL_SCHEMA``): its type,
  start, apex and end in frames (0-based, inclusive) and seconds, the spotter's score, the class and its
  confidence, every class's score, and the face box the interval was classified in;
- ``timeline.png``: the motion score through the video, the spotter's curve and threshold, the intervals
  and their classes; ``strips/<n>.png``: each interval's onset, apex, difference, flow and strain;
- ``result.json``: written last (a folder without it is no result): the inputs' key (the video's
  fingerprint, the bundle's hash, the settings), the video, the bundle, the drift the golden check
  found, timings and versions; ``status`` ok, or failed with the one-line reason (a video without a face
  or a damaged file gives a result too, so that a folder's scheduled run does not retry it unchanged).

Whole or absent through storage/locations.py ``publish_folder`` (local: a hidden folder renamed into place;
object stores: result.json last). ``claim`` is the result folder's writer lock (storage/locks.py), taken by
every `merflow recognise` and by the folder deployment per video: two commands on one OUT never write it at
once (the second is refused with one line naming the first; the deployment leaves such a video to the other run).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from merflow.storage import locations, locks

RESULT = "result.json"
TABLE = "intervals.parquet"
CSV = "intervals.csv"
TIMELINE = "timeline.png"
STRIPS = "strips"
RESULT_VERSION = 1

# The table's fixed columns; each class's score follows as ``score_<class>`` (float64).
INTERVAL_SCHEMA = pa.schema([
    pa.field("interval", pa.int32(), nullable=False),        # 1, 2, ... in start order
    pa.field("type", pa.string(), nullable=False),           # micro | macro: the spotter that found it
    pa.field("start_frame", pa.int64(), nullable=False),     # 0-based, inclusive
    pa.field("apex_frame", pa.int64()),                      # the frame that moved most from the start (null: no face)
    pa.field("end_frame", pa.int64(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),       # frame / fps
    pa.field("apex_s", pa.float64()),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("spot_score", pa.float64(), nullable=False),    # the spotter's score at the interval
    pa.field("class", pa.string()),                          # null where the interval could not be classified
    pa.field("confidence", pa.float64()),                    # the class's confidence (bundle: the model's rule)
    pa.field("face_x", pa.float64()),                        # the face box (frame pixels): left, top, side,
    pa.field("face_y", pa.float64()),                        # rotation (degrees) of the square the interval's
    pa.field("face_size", pa.float64()),                     # frames were cropped with (found on its start frame)
    pa.field("face_angle", pa.float64()),
    pa.field("note", pa.string()),                           # why it has no class, where it has none
])


def read_result(out: str | os.PathLike) -> dict | None:
    """A folder's ``result.json``, or None (no result there, or a torn one)."""
    try:
        return json.loads(locations.read_bytes(locations.join(out, RESULT)))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def is_result(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a result (which a new one of other inputs may replace)."""
    return read_result(out) is not None


def done(out: str | os.PathLike, key: str) -> dict | None:
    """The result at ``out`` when it was made from the same inputs (``key``), else None."""
    found = read_result(out)
    return found if found is not None and found.get("key") == key else None


def table_bytes(table: pd.DataFrame, classes: tuple[str, ...]) -> tuple[bytes, bytes]:
    """(Parquet, CSV) bytes of the intervals table: ``INTERVAL_SCHEMA`` and a ``score_<class>`` column per class."""
    schema = pa.schema(list(INTERVAL_SCHEMA) + [pa.field(f"score_{c}", pa.float64()) for c in classes])
    frame = table.reindex(columns=schema.names)
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    arrow = arrow.replace_schema_metadata({b"merflow.recognise_version": str(RESULT_VERSION).encode()})
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    return buffer.getvalue(), frame.to_csv(index=False).encode()


def write_result(out: str | os.PathLike, result: dict, table: pd.DataFrame | None = None,
                 classes: tuple[str, ...] = (), pictures: dict[str, bytes] | None = None) -> str:
    """Write one video's result folder whole or absent (module docstring); a previous result there is replaced,
    any other non-empty folder refused. ``pictures``: name -> PNG bytes (``timeline.png``, ``strips/001.png``)."""
    files: dict[str, bytes] = {}
    if table is not None:
        files[TABLE], files[CSV] = table_bytes(table, classes)
    files.update(pictures or {})
    files[RESULT] = json.dumps(result | {"result_version": RESULT_VERSION}, indent=1, default=str).encode()
    return locations.publish_folder(out, files, RESULT, may_replace=is_result)


def restamp(out: str | os.PathLike, stamp_key: str) -> None:
    """Record a new stamp key in a result whose video was touched but not changed (its content fingerprint is
    the same): result.json alone is rewritten, whole (one file)."""
    found = read_result(out)
    if found is not None and found.get("stamp_key") != stamp_key:
        locations.write_bytes(locations.join(out, RESULT), json.dumps(found | {"stamp_key": stamp_key}, indent=1,
                                                                      default=str).encode())


def read_intervals(out: str | os.PathLike) -> pd.DataFrame:
    """A result's intervals table (Parquet)."""
    with locations.open(locations.join(out, TABLE)) as file:
        return pq.read_table(file).to_pandas()


def lock_location(out: str | os.PathLike) -> str:
    """Where the writer lock of the result folder ``out`` lives: beside it, ``<parent>/.locks/recognise-<digest>``
    (storage/locks.py; inside the folder it would be part of a result that is published whole)."""
    where = locations.normalise(out)
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]  # a plain file name, whatever the folder's name
    return locks.lock_location(locations.parent(where), f"recognise-{digest}")


@contextmanager
def claim(out: str | os.PathLike) -> Iterator[locks.Lock]:
    """Become the one writer of the result folder ``out`` (storage/locks.py: a local folder's flock, shared file
    systems included; an object store's conditional-write record with a heartbeat), or ``LockHeld`` at once: one
    line naming the process that writes it. Not re-entrant: a second claim in this process is refused too."""
    where = locations.normalise(out)
    with locks.hold(lock_location(where), f"the result folder {where}", reentrant=False,
                    advice="it is being written by another merflow recognise: wait for it, or choose another --out"
                    ) as lock:
        yield lock
