"""One sample's features, and one shard's: read frames, crop the face with one box, find the apex,
compute the difference and the optical flow, and (feature schema 3) the sequence of frames and flows from
onset to offset and the landmarks (tasks/sequences.py). Pure functions that return values and write nothing:
storage/features.py plans the shards and writes them, the features flow runs ``compute_shard`` and
that write as one Dask task per shard; a notebook can call ``sample_features`` directly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from merflow.configs.features import FeatureConfig
from merflow.tasks.faces import NoFaceError, crop_face, crop_points, detect_face
from merflow.tasks.motion import flow_channels, frame_difference, optical_flow, spot_apex, to_grey
from merflow.tasks.sequences import MissingFrames, flow_sequence, landmark_points, resample

# A frame whose pixel values barely vary is a dead frame (lens cap, dropped frame written as black).
BLANK_FRAME_STD = 1.0


class SampleError(ValueError):
    """A sample that can't give features; ``reason`` is its quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


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


def with_fingerprints(records: list[dict]) -> list[dict]:
    """The catalog records, each with its ``fingerprint`` (``input_fingerprint``), as shard planning wants them."""
    return [record | {"fingerprint": input_fingerprint(record)} for record in records]


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
    # The standard deviation over every pixel and channel, from OpenCV's per-channel figures (pooled: the mean of
    # the channels' variances plus the variance of their means): the same number as image.std(), a tenth the time
    # (1.4 ms of numpy per 320x240 frame read, and a sequence reads up to 2T frames a sample).
    means, stds = (values.ravel() for values in cv2.meanStdDev(image))
    if float(np.sqrt(np.mean(stds ** 2) + np.var(means))) < BLANK_FRAME_STD:
        raise SampleError("blank_frame", f"{path} is blank (all pixels about {int(means.mean())})")
    if expected_shape is not None and image.shape != expected_shape:
        raise SampleError("frame_size_mismatch", f"{path} is {image.shape}, the onset frame {expected_shape}")
    return image


def as_rgb_channels(crop: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 from a grey or RGB crop: grey datasets (SAMM, CK+) are stored with 3 equal channels."""
    rgb = crop if crop.ndim == 3 else np.repeat(crop[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


# A listed frame that cannot give a crop for one of these reasons is a gap of a sequence (bridged by
# tasks/sequences.py); for the pair's own frames (onset, apex, middle) it stays the sample's quarantine reason.
GAP_REASONS = frozenset({"missing_frame", "unreadable_frame", "blank_frame", "frame_size_mismatch"})


def clip_arrays(read: Callable[[int], np.ndarray], n_frames: int, apex: int | None, config: FeatureConfig,
                sequences: bool = False, onset_frame: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, info) of one clip whose frame i (0: the onset .. ``n_frames`` - 1: the offset) ``read(i)`` gives,
    uint8 RGB or grey: the features flow's recipe, which a spotted interval of a user's video gets too
    (tasks/spotting_features.py ``clip_features``), so a model applies to what it was trained on.

    The face found on the onset frame (SampleError "no_face" without one) crops every frame with one box, each
    frame read and cut once; the pair compared is the onset and the apex, or (``config.first_frame``
    "onset+1", the published code's pair, see configs/features.py FeatureConfig) the frames after them; ``apex``
    is the clip's apex (0-based in the clip), or None: the frame of most motion from the first frame
    (tasks/motion.py ``spot_apex``). ``sequences`` (and ``config.sequences``): the sample's sequence arrays
    too (``sequence_features``; ``onset_frame``: the onset's frame number, for the mark)."""
    onset = read(0)
    try:
        box = detect_face(onset, config.face)
    except NoFaceError as error:
        raise SampleError("no_face", str(error)) from None
    size = config.size
    crops: dict[int, np.ndarray] = {}

    def crop_at(index: int) -> np.ndarray:
        """Frame ``index``'s crop in the sample's one box, each frame read and cut once."""
        if index not in crops:
            crops[index] = crop_face(onset if index == 0 else read(index), box, size)
        return crops[index]

    first = 0 if config.first_frame == "onset" else 1
    if first >= n_frames:
        raise SampleError("too_few_frames", f"{n_frames} frame(s), no onset + 1 frame for first_frame "
                                            f"{config.first_frame!r}")
    onset_crop = crop_at(first)
    if apex is not None:
        # Clamped: apex + 1 of an apex on the last frame of the clip is that last frame.
        apex_index = min(int(apex) + first, n_frames - 1)
        apex_source = "annotated"
        apex_crop = crop_at(apex_index)
    else:
        # No annotated apex (SMIC, an apex '/', a spotted interval): the frame of most motion from the first frame.
        spotted, _ = spot_apex(np.stack([crop_at(i) for i in range(first, n_frames)]), config.motion)
        apex_index, apex_source = first + spotted, "spotted"
        apex_crop = crop_at(apex_index)
    # The clip's middle frame, floor((N+1)/2) of its N frames (1-based): the survey baseline's frame for
    # SMIC, which has no apex (wenjgong/microExpressionSurvey apex4.m @ 9da5c7c4: n = floor((N+1)/2)); cropped
    # with the same box.
    middle_index = (n_frames + 1) // 2 - 1
    middle_crop = crop_at(middle_index)
    arrays = {
        "onset": as_rgb_channels(onset_crop),
        "apex": as_rgb_channels(apex_crop),
        "middle": as_rgb_channels(middle_crop),
        "diff": frame_difference(onset_crop, apex_crop).astype(np.float32),
        "flow": flow_channels(optical_flow(onset_crop, apex_crop, config.motion)).astype(np.float32),
    }
    info = {"status": "ok", "reason": None, "apex_index": apex_index, "first_index": first,
            "apex_source": apex_source, "middle_index": middle_index, "colour": onset.ndim == 3,
            "face": box.to_dict()}
    if sequences and config.sequences:
        sequence, sequence_info = sequence_features(crop_at, box, n_frames, onset_frame, config)
        arrays |= sequence
        info |= sequence_info
    return arrays, info


def sample_features(record: dict, config: FeatureConfig) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, info) of one catalog row (``clip_arrays`` over its frame files, the sequence arrays included
    where ``config.sequences``); SampleError names what is wrong with it."""
    clip = Path(record["clip_dir"])
    frames = list(record["frame_files"])
    shape: list[tuple[int, ...]] = []

    def read(index: int) -> np.ndarray:
        image = read_frame(clip / frames[index], shape[0] if shape else None)
        if not shape:
            shape.append(image.shape)
        return image

    apex = None if record.get("apex") is None else int(record["apex"]) - int(record["onset"])
    try:
        arrays, info = clip_arrays(read, len(frames), apex, config, sequences=True, onset_frame=int(record["onset"]))
    except SampleError as error:
        if error.reason == "too_few_frames":
            raise SampleError(error.reason, f"{clip}: {error.detail}") from None
        raise
    return arrays, info | {"apex_frame": int(record["onset"]) + info["apex_index"]}


def sequence_features(crop_at, box, n_frames: int, onset: int, config: FeatureConfig) -> tuple[dict, dict]:
    """(arrays, info) of a sample's sequence (tasks/sequences.py): ``frames`` (T grey crops onset to offset),
    ``flow_seq`` (the T - 1 flows between them) and ``landmarks`` (7 points in crop pixels), from ``crop_at(i)``
    (frame i's crop in the sample's box, SampleError where it cannot be read). ``info``: the mark's ``sequence``
    (length, frames, upsampled, the frame numbers missing and bridged or held, how many were read) and
    ``landmarks`` (source, how each brow was found). A SampleError ``too_many_missing_frames`` past the share."""

    def grey(index: int) -> np.ndarray | None:
        try:
            return to_grey(crop_at(index))
        except SampleError as error:
            if error.reason in GAP_REASONS:
                return None
            raise

    try:
        frames, timing = resample(grey, n_frames, config.sequence_length, config.max_missing_share)
    except MissingFrames as error:
        raise SampleError("too_many_missing_frames", str(error)) from None
    points = None if box.landmarks is None else crop_points(box, config.size, box.landmarks)
    landmarks, found = landmark_points(points, to_grey(crop_at(0)))
    timing |= {"missing": [onset + i for i in timing["missing"]], "held": [onset + i for i in timing["held"]]}
    return ({"frames": frames, "flow_seq": flow_sequence(frames, config.motion), "landmarks": landmarks},
            {"sequence": timing, "landmarks": found})


def compute_shard(samples: tuple[tuple[int, dict], ...], start: int, length: int,
                  config: FeatureConfig) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """(arrays, marks) of one shard: rows ``start`` .. ``start + length``, computed from ``samples``
    ((row, catalog record with its "fingerprint")); each mark is a sample's outcome and fingerprint.

    One sample's frames at a time are in memory; a bad sample is marked with its reason and its
    rows stay zero, the others go on. Writes nothing: storage/features.py writes the shard.
    """
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    arrays = {name: np.zeros((length,) + shape, dtype=dtype) for name, (dtype, shape) in config.array_shapes().items()}
    marks = {}
    for row, record in samples:
        try:
            values, info = sample_features(record, config)
        except SampleError as error:
            info = {"status": "quarantined", "reason": error.reason, "detail": error.detail}
        except Exception as error:  # noqa: BLE001 - an unexpected failure on one sample must not sink the shard
            info = {"status": "quarantined", "reason": "feature_error", "detail": f"{type(error).__name__}: {error}"}
        else:
            for name, value in values.items():
                arrays[name][row - start] = value
        marks[record["sample_key"]] = info | {"fingerprint": record["fingerprint"]}
    return arrays, marks
