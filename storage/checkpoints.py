"""Checkpoints: a stage's saved result under a location, loaded when it is there, else made and written once.

A checkpoint is ``<location>/<stage>-<key>.pt``, a ``torch.save`` of ``{"stage_hash": key, "payload": ...}``,
or ``<stage>-<key>.json``, the payload as JSON (``codec="json"``: survey-cnn's scores); the key
(training/stages.py: the stage's settings and data) is the caller's. Concurrent writers take a
file lock (``locations.lock_file``): one makes the payload, the others wait and load it. Writes are whole
or absent (``locations.write_bytes``: a hidden temporary file and a rename locally, one PUT on an object
store), and a checkpoint that cannot be read (a failing disk) is made again and replaced. On an object
store the lock is a local file keyed by the URL, so the processes of one host make a stage once;
processes on two hosts may both make it (same settings and seed: either result is the stage's; the last
PUT wins).

A run's checkpoints folder also records what the run is made of (``check_run_identity``): a run id
reused for other data is refused, since its checkpoints belong to the first.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from typing import Any

from filelock import FileLock

from merflow.configs.names import check_folder_name, check_name
from merflow.storage import locations


class Checkpoints:
    """The checkpoints under one location (a local folder or an fsspec URL)."""

    def __init__(self, location: str | os.PathLike):
        self.location = str(location)

    def __repr__(self) -> str:
        return f"Checkpoints({self.location!r})"

    def folder(self, *parts: str) -> Checkpoints:
        """The checkpoints of a sub-folder (a fold's, the macro encoder's); each part one folder name."""
        return Checkpoints(locations.join(self.location, *(check_folder_name(p, "checkpoint folder") for p in parts)))

    def file(self, stage: str, key: str, codec: str = "torch") -> str:
        """The location of ``stage``'s checkpoint for ``key`` (``codec``'s file extension)."""
        return locations.join(self.location, f"{stage}-{key}{CODECS[codec]}")

    def load_or_make(self, stage: str, key: str, make: Callable[[], Any], codec: str = "torch") -> Any:
        """The payload saved for ``stage`` and ``key``, or ``make()``'s, saved first (under the file lock).
        ``codec``: torch (any payload of tensors) or json (a JSON payload, written as it is)."""
        if codec not in CODECS:
            raise ValueError(f"checkpoint codec must be one of {', '.join(CODECS)}, not {codec!r}")
        file = self.file(stage, key, codec)
        with FileLock(locations.lock_file(file)):
            if locations.exists(file):
                try:
                    return _load(locations.read_bytes(file), key, codec)
                except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, ValueError):
                    pass  # unreadable: make the stage again and replace the file
            payload = make()
            locations.write_bytes(file, _dump(payload, key, codec))  # local: hidden temporary file, then rename
        return payload


CODECS = {"torch": ".pt", "json": ".json"}


def _load(data: bytes, key: str, codec: str) -> Any:
    if codec == "json":
        return json.loads(data)
    import torch  # the checkpoint format; imported here so that storage/ loads without torch

    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if saved.get("stage_hash") != key:
        raise KeyError(key)
    return saved["payload"]


def _dump(payload: Any, key: str, codec: str) -> bytes:
    if codec == "json":
        return json.dumps(payload).encode()
    import torch

    buffer = io.BytesIO()
    torch.save({"stage_hash": key, "payload": payload}, buffer)
    return buffer.getvalue()


RUN_IDENTITY = "protocol.json"


def check_run_identity(out: str | os.PathLike, run: str, identity: dict) -> None:
    """Refuse a run id reused for other data (protocol, class set, catalog rows, feature store): its
    checkpoints (``out``/checkpoints/<run>) and tables belong to the first. Records the identity on first use,
    holding the run's lock (storage/results.py ``writing_run``: another command on this run id is refused)."""
    from merflow.storage.results import writing_run  # results imports pyarrow: only when a run starts

    with writing_run(out, run):
        _check_identity(out, run, identity)


def _check_identity(out: str | os.PathLike, run: str, identity: dict) -> None:
    recorded = locations.join(out, "checkpoints", check_name(run, "run id"), RUN_IDENTITY)
    if locations.exists(recorded):
        before = json.loads(locations.read_text(recorded))
        if before != identity:
            changed = sorted(k for k in before.keys() | identity.keys() if before.get(k) != identity.get(k))
            raise ValueError(f"run {run!r} was made with other data ({', '.join(changed)} differ: it was "
                             f"{before.get('protocol')} on {before.get('label_column')}, {before.get('samples')} "
                             f"samples; this is {identity.get('protocol')} on {identity.get('label_column')}, "
                             f"{identity.get('samples')} samples): resume it with the same catalog, store and "
                             "protocol, or start a new run (another --run)")
        return
    locations.write_text(recorded, json.dumps(identity, indent=2, sort_keys=True))


def run_checkpoints(out: str | os.PathLike, run: str) -> Checkpoints:
    """A run's checkpoints: ``out``/checkpoints/<run> (``out`` a local path or an fsspec URL)."""
    return Checkpoints(locations.join(out, "checkpoints", check_name(run, "run id")))


def checkpoints_at(location: str | os.PathLike | Checkpoints) -> Checkpoints:
    """``location``'s checkpoints (a ``Checkpoints`` is returned as it is)."""
    return location if isinstance(location, Checkpoints) else Checkpoints(location)
