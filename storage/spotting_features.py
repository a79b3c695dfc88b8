"""The per-frame store of long videos (spotting): one Zarr v3 group per video and per-frame configuration,
chunked along the video so that one Dask task computes and writes one chunk, and a rerun recomputes
nothing finished.

Layout of ``STORE/spotting-<SpotFeatureConfig hash>/<dataset>/<subject>/<video id>/``:

- attributes ``merflow``: the video's key, frame count, fps, input fingerprint (its frame files' names,
  sizes and times) and, once the face is tracked, the ``track`` (tasks/spotting_features.py ``Track``);
  only the flow's driver writes them;
- ``_detections/<chunk>.json``: the faces found at the checked frames of one chunk, written by the task
  that looked (with the fingerprint: another video's detections are never used);
- arrays ``roi_k<k>`` (frame, channel, y, x: float16 u, v, strain of SOFTNet's regions, frame i against
  frame i + k) and ``motion_k<k>`` (frame: float32, the mean flow magnitude), one Zarr shard per chunk of
  ``chunk_frames`` frames, Zstd-compressed;
- ``_done/k<k>-<chunk>.json``: the completion mark of a chunk, written by its only writer after its data,
  holding the fingerprint and the track's key: a chunk without a mark, or whose mark names another input
  or another track, is computed again, and its half-written data is never read.

A store is a local path or an fsspec URL (storage/locations.py). The driver holds a lock on the group
(``computing``) while it plans and runs chunks, so two runs on one store take turns rather than write one
shard twice (two writers into one Zarr shard lose data, ../shared/STACK.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import fsspec
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from merflow.configs.spotting import SPOT_FEATURE_SCHEMA, SpotFeatureConfig
from merflow.storage import locations, locks

GROUP_PREFIX = "spotting-"
DONE_DIR = "_done"
DETECTIONS_DIR = "_detections"
LOCK_TIMEOUT = 3600.0   # seconds a second run on the same store waits for the first before it is refused
ROI_DIMENSIONS = ("frame", "channel", "y", "x")


def group_name(config: SpotFeatureConfig) -> str:
    """The store's group of one per-frame configuration: ``spotting-<hash>``."""
    return f"{GROUP_PREFIX}{config.hash}"


def video_fingerprint(video_dir: str, frame_files: list[str]) -> str:
    """Changes when the video's frames change: every frame file's name, size and modification time."""
    digest = hashlib.sha256(repr((str(video_dir), len(frame_files))).encode())
    for name in frame_files:
        try:
            stat = os.stat(Path(video_dir) / name)
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        except OSError:
            digest.update(f"{name}:missing;".encode())
    return digest.hexdigest()[:20]


def inner_chunk(chunk_frames: int, at_most: int = 64) -> int:
    """The Zarr chunk inside a shard of ``chunk_frames`` frames: its largest divisor up to ``at_most``."""
    return max(d for d in range(1, min(at_most, chunk_frames) + 1) if chunk_frames % d == 0)


class SpotFeatureStore:
    """The per-frame store at a local path or an fsspec URL."""

    def __init__(self, url: str | os.PathLike):
        locations.require(url)
        self.url = locations.normalise(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    # ------------------------------------------------------------------ locations
    def video_path(self, config: SpotFeatureConfig, video_key: str) -> str:
        """The group of one video, relative to the store: ``spotting-<hash>/<video key>``."""
        return f"{group_name(config)}/{video_key}"

    def _file(self, config: SpotFeatureConfig, video_key: str, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), self.video_path(config, video_key), *parts])

    def mark_path(self, config: SpotFeatureConfig, video_key: str, k: int, chunk: int) -> str:
        """A chunk's completion mark."""
        return self._file(config, video_key, DONE_DIR, f"k{k}-{chunk:06d}.json")

    def detections_path(self, config: SpotFeatureConfig, video_key: str, chunk: int) -> str:
        """The faces found in one chunk's checked frames."""
        return self._file(config, video_key, DETECTIONS_DIR, f"{chunk:06d}.json")

    def _read_json(self, path: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # none yet, or torn by a killed writer: computed again

    def _write_json(self, path: str, payload: dict) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, json.dumps(payload).encode())

    @contextmanager
    def computing(self, config: SpotFeatureConfig):
        """Held by a run's driver while it computes into the group: a second run on the store waits for it
        (storage/locks.py: the lock records who holds it; a dead holder's is taken over)."""
        with locks.hold(locks.lock_location(self.url, group_name(config)), f"the spotting features {group_name(config)} "
                        f"in {self.url}", wait=LOCK_TIMEOUT):
            yield

    # ------------------------------------------------------------------ driver side
    def video_group(self, config: SpotFeatureConfig, video_key: str, mode: str = "r") -> zarr.Group:
        """A video's Zarr group (``a`` creates it)."""
        if mode == "r":
            return zarr.open_group(self.url, mode="r", path=self.video_path(config, video_key))
        root = zarr.open_group(self.url, mode="a")
        top = root.require_group(group_name(config))
        if "merflow" not in top.attrs:
            top.attrs["merflow"] = {"config": config.to_dict(), "config_hash": config.hash,
                                    "spot_feature_schema": SPOT_FEATURE_SCHEMA,
                                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "versions": {name: version(name) for name in
                                                 ("merflow", "numpy", "opencv-contrib-python-headless", "zarr",
                                                  "yuface")}}
        return top.require_group(video_key)

    def attributes(self, config: SpotFeatureConfig, video_key: str) -> dict:
        """A video's attributes (empty before it is prepared)."""
        try:
            return dict(self.video_group(config, video_key).attrs.get("merflow", {}))
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
            return {}

    def prepare_video(self, config: SpotFeatureConfig, video_key: str, n_frames: int, fps: float,
                      fingerprint: str) -> dict:
        """The video's attributes, (re)set when its frames changed (the track forgotten then)."""
        meta = self.attributes(config, video_key)
        if meta.get("fingerprint") != fingerprint or meta.get("n_frames") != n_frames:
            meta = {"video_key": video_key, "n_frames": int(n_frames), "fps": float(fps), "fingerprint": fingerprint,
                    "track": None}
            self.video_group(config, video_key, "a").attrs["merflow"] = meta
        return meta

    def write_track(self, config: SpotFeatureConfig, video_key: str, track: dict) -> None:
        """Keep the video's track (``Track.to_dict()``) with its attributes."""
        group = self.video_group(config, video_key, "a")
        group.attrs["merflow"] = dict(group.attrs["merflow"]) | {"track": track}

    def prepare_arrays(self, config: SpotFeatureConfig, video_key: str, k: int, n_frames: int) -> None:
        """Create the video's arrays for window ``k`` if they are not there."""
        group = self.video_group(config, video_key, "a")
        shard = config.chunk_frames
        if f"roi_k{k}" not in group:
            shape = (n_frames, 3, config.roi, config.roi)
            group.create_array(f"roi_k{k}", shape=shape, dtype="float16",
                               chunks=(inner_chunk(shard), 3, config.roi, config.roi),
                               shards=(shard, 3, config.roi, config.roi), compressors=ZstdCodec(level=3),
                               dimension_names=ROI_DIMENSIONS, fill_value=0,
                               attributes={"channels": ["u", "v", "strain"], "k": k})
        if f"motion_k{k}" not in group:
            group.create_array(f"motion_k{k}", shape=(n_frames,), dtype="float32", chunks=(shard,),
                               compressors=ZstdCodec(level=3), dimension_names=("frame",), fill_value=float("nan"),
                               attributes={"k": k})

    def detections_to_compute(self, config: SpotFeatureConfig, video_key: str, n_chunks: int,
                              fingerprint: str) -> list[int]:
        """The chunks whose faces are not found yet (no detections file of this fingerprint)."""
        return [chunk for chunk in range(n_chunks)
                if (self._read_json(self.detections_path(config, video_key, chunk)) or {}).get("fingerprint")
                != fingerprint]

    def read_detections(self, config: SpotFeatureConfig, video_key: str, n_chunks: int) -> dict[int, dict | None]:
        """Every checked frame's face (or None) over the video's chunks."""
        found = {}
        for chunk in range(n_chunks):
            payload = self._read_json(self.detections_path(config, video_key, chunk)) or {"found": {}}
            found.update({int(i): box for i, box in payload["found"].items()})
        return found

    def chunks_to_compute(self, config: SpotFeatureConfig, video_key: str, k: int, n_frames: int, stamp: dict
                          ) -> tuple[list[int], int]:
        """(chunks of window ``k`` to compute, chunks already done): a chunk is done when its mark holds
        ``stamp`` (fingerprint and track key); the mark of a chunk about to be recomputed is removed first."""
        todo, done = [], 0
        for chunk in range(-(-n_frames // config.chunk_frames)):
            mark = self._read_json(self.mark_path(config, video_key, k, chunk))
            if mark and all(mark.get(name) == value for name, value in stamp.items()):
                done += 1
                continue
            path = self.mark_path(config, video_key, k, chunk)
            if self.fs.exists(path):
                self.fs.rm_file(path)
            todo.append(chunk)
        return todo, done

    # ------------------------------------------------------------------ task side
    def write_detections(self, config: SpotFeatureConfig, video_key: str, chunk: int, fingerprint: str,
                         found: dict[int, dict | None]) -> None:
        """One chunk's faces (its task is the file's only writer)."""
        self._write_json(self.detections_path(config, video_key, chunk),
                         {"fingerprint": fingerprint, "found": {str(i): box for i, box in found.items()}})

    def write_chunk(self, config: SpotFeatureConfig, video_key: str, k: int, chunk: int, roi: np.ndarray,
                    motion: np.ndarray, stamp: dict) -> None:
        """Write one whole chunk's rows, then its mark: the caller must be the chunk's only writer."""
        group = zarr.open_group(self.url, mode="r+", path=self.video_path(config, video_key))
        start = chunk * config.chunk_frames
        group[f"roi_k{k}"][start:start + len(roi)] = roi
        group[f"motion_k{k}"][start:start + len(motion)] = motion
        self._write_json(self.mark_path(config, video_key, k, chunk), {"chunk": chunk, "start": start} | stamp)

    # ------------------------------------------------------------------ reading
    def load(self, config: SpotFeatureConfig, video_key: str, k: int, arrays: tuple[str, ...] = ("motion",)
             ) -> dict[str, np.ndarray]:
        """A video's arrays of window ``k`` (``roi``, ``motion``), whole; a LookupError unless every chunk is done."""
        meta = self.attributes(config, video_key)
        if not meta.get("track"):
            raise LookupError(f"no per-frame features of {video_key} in {self.url} (configuration {config.hash}): "
                              "run `merflow spot` to compute them")
        stamp = {"fingerprint": meta["fingerprint"], "track": track_key(meta["track"])}
        n_chunks = -(-meta["n_frames"] // config.chunk_frames)
        for chunk in range(n_chunks):
            mark = self._read_json(self.mark_path(config, video_key, k, chunk))
            if not mark or any(mark.get(name) != value for name, value in stamp.items()):
                raise LookupError(f"the per-frame features of {video_key} (k = {k}) are not complete in {self.url}: "
                                  f"chunk {chunk} of {n_chunks} is missing; run `merflow spot` again to finish them")
        group = self.video_group(config, video_key)
        return {name: np.asarray(group[f"{name}_k{k}"][:]) for name in arrays}


def track_key(track: dict) -> str:
    """tasks/spotting_features.py ``Track.key`` of a stored track (the same digest, without importing tasks/)."""
    return hashlib.sha256(json.dumps(track, sort_keys=True).encode()).hexdigest()[:16]
