"""One sample's features, and one shard's: read frames, crop the face with one box, find the apex,
compute the difference and the optical flow. Pure functions: the features flow maps
``compute_shard`` over a Dask cluster, a notebook can call ``sample_features`` directly.
"""

from __future__ import annotations

import hashlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from merflow.storage.features import ARRAYS, FeatureConfig, FeatureStore, group_name
from merflow.tasks.faces import NoFaceError, crop_face, detect_face
from merflow.tasks.motion import flow_channels, frame_difference, optical_flow, spot_apex

# A frame whose pixel values barely vary is a dead frame (lens cap, dropped frame written as black).
BLANK_FRAME_STD = 1.0


class SampleError(ValueError):
    """A sample that can't give features; ``reason`` is its quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs for one shard: where to write, and the catalog rows of its samples."""

    store_url: str
    group: str
    shard: int
    start: int                     # first row of the shard
    length: int                    # rows in the shard (the last one may be short)
    samples: tuple[tuple[int, dict], ...]   # (row, catalog record with its "fingerprint") to compute
    config: FeatureConfig


def input_fingerprint(record: dict) -> str:
    """Changes when anything the features depend on changes: annotation, frame list, frame files."""
    digest = hashlib.sha256()
    digest.update(repr((record["clip_dir"], list(record["frame_files"]), record["onset"], record["apex"],
                        record["offset"])).encode())
    for name in record["frame_files"]:
        try:
            stat = os.stat(Path(record["clip_dir"]) / name)
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        except OSError:
            digest.update(f"{name}:missing;".encode())
    return digest.hexdigest()[:20]


def read_frame(path: Path, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A frame as uint8 RGB (or grey), or SampleError with the quarantine reason."""
    if not path.is_file():
        raise SampleError("missing_frame", f"{path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise SampleError("unreadable_frame", f"{path} cannot be decoded")
    if image.dtype != np.uint8:  # 16-bit PNGs: keep the top byte
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if float(image.std()) < BLANK_FRAME_STD:
        raise SampleError("blank_frame", f"{path} is blank (all pixels about {int(image.mean())})")
    if expected_shape is not None and image.shape != expected_shape:
        raise SampleError("frame_size_mismatch", f"{path} is {image.shape}, the onset frame {expected_shape}")
    return image


def as_rgb_channels(crop: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 from a grey or RGB crop: grey datasets (SAMM, CK+) are stored with 3 equal channels."""
    rgb = crop if crop.ndim == 3 else np.repeat(crop[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def sample_features(record: dict, config: FeatureConfig) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, info) of one catalog row; SampleError names what is wrong with it."""
    clip = Path(record["clip_dir"])
    frames = list(record["frame_files"])
    onset = read_frame(clip / frames[0])
    try:
        box = detect_face(onset, config.face)
    except NoFaceError as error:
        raise SampleError("no_face", str(error)) from None
    size = config.size
    # The first frame of the pair: the onset, or (first_frame "onset+1", the published code's pair, see
    # storage/features.py FeatureConfig) the frame after it, with the annotated apex moved one on too.
    first = 0 if config.first_frame == "onset" else 1
    if first >= len(frames):
        raise SampleError("too_few_frames", f"{clip}: {len(frames)} frame(s), no onset + 1 frame for first_frame "
                                            f"{config.first_frame!r}")
    first_frame = onset if first == 0 else read_frame(clip / frames[first], onset.shape)
    onset_crop = crop_face(first_frame, box, size)
    if record.get("apex") is not None:
        # Clamped: apex + 1 of an apex on the last frame of the clip is that last frame.
        apex_index = min(int(record["apex"]) - int(record["onset"]) + first, len(frames) - 1)
        apex_source = "annotated"
        apex_crop = crop_face(read_frame(clip / frames[apex_index], onset.shape), box, size)
    else:
        # No annotated apex (SMIC, an apex '/'): the frame of most motion from the first frame.
        crops = [onset_crop] + [crop_face(read_frame(clip / name, onset.shape), box, size)
                                for name in frames[first + 1:]]
        spotted, _ = spot_apex(np.stack(crops), config.motion)
        apex_index, apex_crop, apex_source = first + spotted, crops[spotted], "spotted"
    # The clip's middle frame, floor((N+1)/2) of its N frames (1-based): the survey baseline's frame for
    # SMIC, which has no apex (reference/survey/apex4.m: n = floor((N+1)/2)); cropped with the same box.
    middle_index = (len(frames) + 1) // 2 - 1
    middle_crop = crop_face(onset if middle_index == 0 else read_frame(clip / frames[middle_index], onset.shape),
                            box, size)
    arrays = {
        "onset": as_rgb_channels(onset_crop),
        "apex": as_rgb_channels(apex_crop),
        "middle": as_rgb_channels(middle_crop),
        "diff": frame_difference(onset_crop, apex_crop).astype(np.float32),
        "flow": flow_channels(optical_flow(onset_crop, apex_crop, config.motion)).astype(np.float32),
    }
    info = {"status": "ok", "reason": None, "apex_index": apex_index, "first_index": first,
            "apex_frame": int(record["onset"]) + apex_index, "apex_source": apex_source,
            "middle_index": middle_index,
            "colour": onset.ndim == 3, "face": box.to_dict()}
    return arrays, info


def plan_shards(store: FeatureStore, samples: list[dict], config: FeatureConfig) -> tuple[list[ShardJob], int]:
    """The shards that need computing (no mark, or inputs changed since), and how many are done already.

    Runs on the driver, the only writer of group attributes: it assigns rows to new samples and
    drops the marks of shards about to be recomputed.
    """
    jobs, done = [], 0
    by_dataset: dict[str, list[dict]] = {}
    for record in samples:
        by_dataset.setdefault(record["dataset"], []).append(record | {"fingerprint": input_fingerprint(record)})
    for dataset, records in sorted(by_dataset.items()):
        index = store.prepare_group(dataset, config, [r["sample_key"] for r in records])
        group = group_name(dataset, config)
        by_row = {index[r["sample_key"]]: r for r in records}
        n_rows, shard_size = len(index), config.shard_size
        for shard, start in enumerate(range(0, n_rows, shard_size)):
            length = min(shard_size, n_rows - start)
            # Rows of samples no longer in the catalog stay unmarked: they are never read.
            members = tuple((row, by_row[row]) for row in range(start, start + length) if row in by_row)
            wanted = {record["sample_key"]: record["fingerprint"] for _, record in members}
            mark = store.read_mark(group, shard)
            if mark and {k: v["fingerprint"] for k, v in mark["samples"].items()} == wanted:
                done += 1
                continue
            store.clear_mark(group, shard)
            jobs.append(ShardJob(store.url, group, shard, start, length, members, config))
    return jobs, done


def compute_shard(job: ShardJob) -> dict:
    """Compute every sample of a shard and write the shard (data, then its mark). Returns its tally.

    One sample's frames at a time are in memory; a bad sample is recorded with its reason and its
    rows stay zero, the others go on.
    """
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    size = job.config.size
    arrays = {name: np.zeros((job.length, channels, size, size), dtype=dtype)
              for name, (dtype, channels) in ARRAYS.items()}
    marks = {}
    for row, record in job.samples:
        try:
            values, info = sample_features(record, job.config)
        except SampleError as error:
            info = {"status": "quarantined", "reason": error.reason, "detail": error.detail}
        except Exception as error:  # noqa: BLE001 - an unexpected failure on one sample must not sink the shard
            info = {"status": "quarantined", "reason": "feature_error", "detail": f"{type(error).__name__}: {error}"}
        else:
            for name, value in values.items():
                arrays[name][row - job.start] = value
        marks[record["sample_key"]] = info | {"fingerprint": record["fingerprint"]}
    store = FeatureStore(job.store_url)
    store.write_shard(job.group, job.shard, job.start, arrays, marks)
    quarantined = sum(m["status"] != "ok" for m in marks.values())
    # ru_maxrss is in KiB on Linux: the worker process's peak so far, for the memory budget per worker.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"group": job.group, "shard": job.shard, "samples": len(marks), "quarantined": quarantined,
            "peak_rss_mb": round(peak_mb, 1)}
