"""Checkpoints: a stage's saved result under a location, loaded when it is there, else made and written once.

A checkpoint is ``<location>/<stage>-<key>.pt``, a ``torch.save`` of ``{"stage_hash": key, "payload": ...}``;
the key (training/stages.py: the stage's settings and data) is the caller's. Concurrent writers take a
file lock (``locations.lock_file``): one makes the payload, the others wait and load it. Writes are whole
or absent (``locations.write_bytes``: a hidden temporary file and a rename locally, one PUT on an object
store), and a checkpoint that cannot be read (a failing disk) is made again and replaced. On an object
store the lock is a local file keyed by the URL, so the processes of one host make a stage once;
processes on two hosts may both make it (same settings and seed: either result is the stage's; the last
PUT wins).
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from typing import Any

from filelock import FileLock

from merflow.storage import locations


class Checkpoints:
    """The checkpoints under one location (a local folder or an fsspec URL)."""

    def __init__(self, location: str | os.PathLike):
        self.location = str(location)

    def __repr__(self) -> str:
        return f"Checkpoints({self.location!r})"

    def folder(self, *parts: str) -> Checkpoints:
        """The checkpoints of a sub-folder (a fold's, the macro encoder's)."""
        return Checkpoints(locations.join(self.location, *parts))

    def file(self, stage: str, key: str) -> str:
        """The location of ``stage``'s checkpoint for ``key``."""
        return locations.join(self.location, f"{stage}-{key}.pt")

    def load_or_make(self, stage: str, key: str, make: Callable[[], Any]) -> Any:
        """The payload saved for ``stage`` and ``key``, or ``make()``'s, saved first (under the file lock)."""
        import torch  # the checkpoint format; imported here so that storage/ loads without torch

        file = self.file(stage, key)
        with FileLock(locations.lock_file(file)):
            if locations.exists(file):
                try:
                    saved = torch.load(io.BytesIO(locations.read_bytes(file)), map_location="cpu", weights_only=False)
                    if saved.get("stage_hash") == key:
                        return saved["payload"]
                except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError, AttributeError):
                    pass  # unreadable: make the stage again and replace the file
            payload = make()
            buffer = io.BytesIO()
            torch.save({"stage_hash": key, "payload": payload}, buffer)
            locations.write_bytes(file, buffer.getvalue())  # local: hidden temporary file, then rename
        return payload


def checkpoints_at(location: str | os.PathLike | Checkpoints) -> Checkpoints:
    """``location``'s checkpoints (a ``Checkpoints`` is returned as it is)."""
    return location if isinstance(location, Checkpoints) else Checkpoints(location)
