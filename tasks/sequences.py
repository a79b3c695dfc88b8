"""A sample as a sequence, for the recurrent, 3D and graph models: T frames from onset to offset, the T - 1
flows between them, and the face's landmarks in the crop.

One concern: turn a clip's crops (all cut with the one face box of the sample, tasks/faces.py) into fixed-size
arrays. Pure functions: ``resample`` takes a function that gives a frame's grey crop (or None where that frame
is missing, unreadable or blank), so it never reads a file itself; tasks/features.py hands it its frame reader.

Time (``resample``): a clip of N frames (onset..offset) is sampled at T times t_k = k (N - 1) / (T - 1) frames
after the onset, k = 0..T-1, each frame linearly interpolated between the two frames around t_k (ELRCN reads
TIM-interpolated clips of 10 frames, ZOO.md 1.7; the temporal interpolation model proper is MATLAB-only
code, so merflow interpolates linearly, as 1.10 proposes). frames[0] is the onset and frames[T-1] the offset.
A clip shorter than T is up-sampled the same way (the mark says so); only the frames around the T times are
read (at most 2T), so a long clip costs what a short one does. A frame that is needed but missing is bridged
by linear interpolation in time between the nearest readable frames on each side (held from the one side at
an end), and recorded; more than ``max_missing_share`` of the frames looked at missing quarantines the sample.

Landmarks (``landmark_points``): the detector's five points (YuNet's, found once on the onset frame) in crop
pixels, eyes and mouth corners ordered left to right as the crop shows them (ZOO.md 1.9: the detectors' own
left/right naming is not trusted), then a brow above each eye. The brows are merflow's: ZOO.md 1.8 proposes a
proxy 0.35 inter-ocular distances (IOD) above each eye; here each eye is moved along the face's up direction
(perpendicular to the eye line, away from the mouth) to the darkest row of the onset crop 0.2-0.5 IOD above
it, where that row is a true valley (darker than both ends of the search by at least ``BROW_CONTRAST``), and
to the 0.35 proxy otherwise; the result records which.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from merflow.configs.features import LANDMARK_POINTS, MotionConfig
from merflow.tasks.motion import optical_flow

BROW_PROXY = 0.35            # ZOO.md 1.8: brows about 0.35 IOD above the eyes
BROW_SEARCH = (0.2, 0.5)     # where a brow is looked for, in IOD above the eye
BROW_HALF_WIDTH = 0.15       # the band averaged across, in IOD either side of the eye
BROW_CONTRAST = 1.0          # grey levels a valley must lie below both ends of the search


class MissingFrames(ValueError):
    """More of a sequence's frames are missing than ``max_missing_share`` allows (or all of them)."""


def sample_times(n_frames: int, length: int) -> np.ndarray:
    """The T times (frames after the onset, float) a clip of ``n_frames`` is sampled at: k (N - 1) / (T - 1)."""
    if n_frames < 1 or length < 2:
        raise ValueError(f"need at least one frame and a length of 2 or more, got {n_frames} and {length}")
    return np.arange(length, dtype=np.float64) * (n_frames - 1) / (length - 1)


def resample(load: Callable[[int], np.ndarray | None], n_frames: int, length: int,
             max_missing_share: float) -> tuple[np.ndarray, dict]:
    """(frames, info): ``length`` uint8 grey frames (T, H, W) of a clip of ``n_frames`` frames, linearly
    interpolated in time (the module's docstring). ``load(i)`` gives frame i's grey crop (uint8 (H, W)), or None
    where it is missing. ``info``: ``length``, ``frames`` (N), ``upsampled`` (N < T), ``missing`` (the indices
    found missing, bridged), ``held`` (those of them at an end of the clip, copied from the nearest readable
    frame) and ``read`` (how many frames were looked at). ``MissingFrames`` past ``max_missing_share``."""
    times = sample_times(n_frames, length)
    below = np.floor(times + 1e-9).astype(int)
    weights = times - below
    needed = sorted({int(i) for i in below} | {int(i) + 1 for i, w in zip(below, weights) if w > 1e-9})
    loaded: dict[int, np.ndarray | None] = {}

    def value(index: int) -> np.ndarray | None:
        if index not in loaded:
            frame = load(index)
            loaded[index] = None if frame is None else np.asarray(frame, np.float32)
        return loaded[index]

    for index in needed:
        value(index)
    bridged: dict[int, np.ndarray] = {}
    held = []
    for index in [i for i in needed if loaded[i] is None]:
        before = next((j for j in range(index - 1, -1, -1) if value(j) is not None), None)
        after = next((j for j in range(index + 1, n_frames) if value(j) is not None), None)
        if before is None and after is None:
            raise MissingFrames(f"none of the clip's {n_frames} frames can be read")
        if before is None or after is None:
            bridged[index] = loaded[after if before is None else before]
            held.append(index)
        else:
            share = (index - before) / (after - before)
            bridged[index] = (1 - share) * loaded[before] + share * loaded[after]
        _check_share(loaded, max_missing_share)
    _check_share(loaded, max_missing_share)
    frames = []
    for first, weight in zip(below, weights):
        here = bridged.get(int(first), loaded.get(int(first)))
        if weight > 1e-9:
            there = bridged.get(int(first) + 1, loaded.get(int(first) + 1))
            here = (1 - weight) * here + weight * there
        frames.append(np.clip(np.rint(here), 0, 255).astype(np.uint8))
    missing = sorted(i for i, frame in loaded.items() if frame is None)
    return np.stack(frames), {"length": length, "frames": n_frames, "upsampled": n_frames < length,
                              "missing": missing, "held": sorted(held), "read": len(loaded)}


def _check_share(loaded: dict[int, np.ndarray | None], max_missing_share: float) -> None:
    missing = sum(frame is None for frame in loaded.values())
    if missing and missing / len(loaded) > max_missing_share:
        raise MissingFrames(f"{missing} of the {len(loaded)} frames the sequence reads are missing, unreadable or "
                            f"blank (more than the {max_missing_share:g} allowed)")


def flow_sequence(frames: np.ndarray, motion: MotionConfig) -> np.ndarray:
    """float32 (T - 1, 2, H, W): the flow (u, v) from each frame to the next (tasks/motion.py optical_flow)."""
    return np.stack([optical_flow(frames[k], frames[k + 1], motion).transpose(2, 0, 1)
                     for k in range(len(frames) - 1)]).astype(np.float32, copy=False)


def landmark_points(points: np.ndarray | None, grey: np.ndarray) -> tuple[np.ndarray, dict]:
    """(landmarks, info): float32 (7, 2) crop pixels in ``LANDMARK_POINTS`` order, from the detector's five
    points already in crop pixels (``points``, YuNet's order; None where the detector gave none: every value
    NaN), and the brows found on the onset's grey crop ``grey``. ``info``: ``source`` ("detector" or "none")
    and ``brows`` (per side "valley" or "proxy")."""
    if points is None:
        return np.full((len(LANDMARK_POINTS), 2), np.nan, np.float32), {"source": "none", "brows": None}
    points = np.asarray(points, np.float64).reshape(5, 2)
    eyes = points[:2][np.argsort(points[:2, 0], kind="stable")]
    mouth = points[3:5][np.argsort(points[3:5, 0], kind="stable")]
    along = eyes[1] - eyes[0]
    iod = float(np.hypot(*along))
    if not iod > 0:
        return np.full((len(LANDMARK_POINTS), 2), np.nan, np.float32), {"source": "none", "brows": None}
    along /= iod
    up = np.array([along[1], -along[0]])  # perpendicular to the eye line; pointed away from the mouth below
    if np.dot(up, mouth.mean(axis=0) - eyes.mean(axis=0)) > 0:
        up = -up
    brows, how = [], []
    for eye in eyes:
        brow, found = _brow(grey, eye, up, along, iod)
        brows.append(brow)
        how.append(found)
    landmarks = np.vstack([eyes, points[2:3], mouth, np.array(brows)]).astype(np.float32)
    return landmarks, {"source": "detector", "brows": how}


def _brow(grey: np.ndarray, eye: np.ndarray, up: np.ndarray, along: np.ndarray, iod: float) -> tuple[np.ndarray, str]:
    """The brow above ``eye``: the darkest row of a band 0.2-0.5 IOD above it where that is a valley, else the proxy."""
    proxy = eye + BROW_PROXY * iod * up
    steps = max(int(math.ceil((BROW_SEARCH[1] - BROW_SEARCH[0]) * iod * 2)), 6)  # about half a pixel apart
    heights = np.linspace(BROW_SEARCH[0], BROW_SEARCH[1], steps + 1) * iod
    across = np.linspace(-BROW_HALF_WIDTH, BROW_HALF_WIDTH, 7) * iod
    where = eye[None, None, :] + heights[:, None, None] * up + across[None, :, None] * along
    h, w = grey.shape[:2]
    if where[..., 0].min() < 0 or where[..., 1].min() < 0 or where[..., 0].max() > w - 1 or where[..., 1].max() > h - 1:
        return proxy, "proxy"
    sampled = cv2.remap(np.asarray(grey, np.float32), where[..., 0].astype(np.float32), where[..., 1].astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    profile = sampled.mean(axis=1)
    padded = np.concatenate([profile[:1], profile, profile[-1:]])
    profile = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    darkest = int(np.argmin(profile))
    if 0 < darkest < len(profile) - 1 and profile[darkest] <= min(profile[0], profile[-1]) - BROW_CONTRAST:
        return eye + heights[darkest] * up, "valley"
    return proxy, "proxy"
