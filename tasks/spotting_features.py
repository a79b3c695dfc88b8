"""Per-frame features of a long video for spotting: the face tracked through the video, and for every frame i
the optical flow to frame i + k in SOFTNet's regions of the face, as one small image and one number.

Pure functions of a decoded frame sequence, its frame rate and a ``SpotFeatureConfig``; nothing here
reads a catalog or writes a store. Any object with ``len()`` and ``frames[i]`` (uint8, grey or RGB, all of
one size) is a frame sequence: ``FrameFiles`` reads a folder of frames, a list of arrays works, and
``OffsetFrames`` lets a decoder hand over just the frames one chunk needs. The same calls serve the
catalog's long videos (flows/spotting.py, one Dask task per chunk, storage/spotting_features.py writing)
and a user's own video (decode, ``track_face``, ``video_features``).

1. Tracking (ZOO.md, "a user's video"): YuNet (tasks/faces.py ``detect_face``) on frame 0 and again every
   ``redetect_seconds``; a box whose IoU with its segment's box is below ``drift_iou`` starts a new
   segment, a check that finds no face keeps the segment's box. Every frame is cropped with its
   segment's box; a pair (i, i + k) is cropped with frame i's box for both frames, so a new segment never
   shows up as motion. ``detect_at`` (per chunk, parallel) and ``build_track`` (sequential, cheap) are the
   two halves of ``track_face``.
2. Features (SOFTNet, genbing99/SoftNet-SpotME@dd43d1e extraction_preprocess.py): grey crops of ``crop``
   pixels, flow i -> i + k (tasks/motion.py ``optical_flow``, ``config.motion``), u, v and the strain
   magnitude (tasks/motion.py ``optical_strain``); each channel less its mean over a patch at the nose
   bridge (u and v then absolute: head translation removed); both eyes masked with zeros; the brows
   region resampled to ``roi`` x roi/2 above the mouth region -> (3, roi, roi) float32 (u, v, strain).
   The regions come from YuNet's five points (``roi_geometry``: in units of the distance between the
   eyes, read off dlib's 68-point layout that SOFTNet used; docs/spotting.md).
3. The motion score of a frame: the mean of sqrt(u^2 + v^2) over that image (the untrained spotter's
   signal, and the timeline's curve).

Frame i's features exist for i < n_frames - k; later frames have zeros and a NaN score.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from merflow.configs.features import FeatureConfig
from merflow.configs.spotting import SpotFeatureConfig, frames
from merflow.tasks.faces import FaceBox, NoFaceError, crop_face, crop_points, detect_face
from merflow.tasks.features import SampleError, clip_arrays
from merflow.tasks.motion import optical_flow, optical_strain, to_grey

FEATURE_CHANNELS = ("u", "v", "strain")
# Five points of a face centred in its crop where the detector gives none (Haar): eyes, nose, mouth
# corners as fractions of the crop side (a YuNet box with merflow's 15 % margin puts them about here).
TEMPLATE_POINTS = ((0.36, 0.40), (0.64, 0.40), (0.50, 0.55), (0.39, 0.70), (0.61, 0.70))
# Regions, in units of the inter-ocular distance (IOD, eye centre to eye centre), from dlib's mean 68-point
# shape (eye corners at +-0.76 / +-0.26, brows up to 0.45 above the eyes and out to +-0.95, lm 28 0.2 below
# them, mouth from 0.85 to 1.2) and SOFTNet's pixel margins at its 128-pixel crop (15 px around the eyes,
# 12 px around the regions: about 0.3 and 0.24 IOD at its ~50-pixel IOD).
EYE_HEXAGON = ((-0.56, 0.0), (-0.08, -0.38), (0.08, -0.38), (0.54, 0.0), (0.08, 0.36), (-0.08, 0.36))
BROW_X, BROW_Y = 1.19, (-0.69, 0.30)          # half width about the eyes' midpoint; from the eye line
MOUTH_X, MOUTH_Y = 0.17, (-0.39, 0.44)        # beyond each mouth corner; from the corners' line
NOSE_BELOW_EYES = 0.36                        # lm 28: this fraction of the way from the eyes' midpoint to the nose tip
NOSE_HALF = 0.1                               # half side of the nose patch (SOFTNet: 11 x 11 px)


class VideoFaceError(ValueError):
    """No face was found at any check of a video: one line naming the video and the detectors tried."""


class FrameError(ValueError):
    """A frame of a video that cannot be read."""


class FrameFiles:
    """A folder's frames as a frame sequence, read grey on demand: ``frames[i]`` is ``names[i - first]``. A task
    gets only the names of its chunk (``first`` its first frame, ``n_frames`` the whole video's length), so an
    hour of video does not travel with every task."""

    def __init__(self, folder: str | Path, names: Sequence[str], first: int = 0, n_frames: int | None = None):
        self.folder, self.names, self.first = Path(folder), list(names), first
        self.n_frames = first + len(self.names) if n_frames is None else n_frames

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index: int) -> np.ndarray:
        if not self.first <= index < self.first + len(self.names):
            raise IndexError(f"frame {index} of {self.folder} is not among the {len(self.names)} given from {self.first}")
        path = self.folder / self.names[index - self.first]
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None or image.size == 0:
            raise FrameError(f"frame {index} of {self.folder} ({path.name}) cannot be read")
        return image


class OffsetFrames:
    """Frames ``start`` .. ``start + len(frames) - 1`` of a longer video: ``OffsetFrames(s, f)[s + j] is f[j]``,
    so a decoder can hand ``chunk_features`` just the frames of one chunk (and its k after)."""

    def __init__(self, start: int, frames: Sequence[np.ndarray], n_frames: int):
        self.start, self.frames, self.n_frames = start, frames, n_frames

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index: int) -> np.ndarray:
        if not self.start <= index < self.start + len(self.frames):
            raise IndexError(f"frame {index} is outside the frames {self.start}..{self.start + len(self.frames) - 1} "
                             "given")
        return self.frames[index - self.start]


# ------------------------------------------------------------------------------------------ tracking
@dataclass(frozen=True)
class Segment:
    """Frames ``start`` .. ``stop - 1`` cropped with one box (found on frame ``found_at``)."""

    start: int
    stop: int
    box: FaceBox
    found_at: int

    def to_dict(self) -> dict:
        """Plain JSON values."""
        return {"start": self.start, "stop": self.stop, "found_at": self.found_at, "box": self.box.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Segment:
        """The inverse of ``to_dict``."""
        return cls(int(data["start"]), int(data["stop"]), FaceBox.from_dict(data["box"]), int(data["found_at"]))


@dataclass(frozen=True)
class Track:
    """The face through a video: its segments (covering every frame, in order), the frames checked, and
    those where no face was found (the segment's box was kept)."""

    n_frames: int
    segments: tuple[Segment, ...]
    checked: tuple[int, ...]
    lost: tuple[int, ...]

    def segment_at(self, frame: int) -> int:
        """The index of the segment holding ``frame``."""
        starts = [s.start for s in self.segments]
        return max(0, int(np.searchsorted(starts, frame, side="right")) - 1)

    def box_at(self, frame: int) -> FaceBox:
        """The box frame ``frame`` is cropped with."""
        return self.segments[self.segment_at(frame)].box

    def to_dict(self) -> dict:
        """Plain JSON values (stored with the video's features)."""
        return {"n_frames": self.n_frames, "segments": [s.to_dict() for s in self.segments],
                "checked": list(self.checked), "lost": list(self.lost)}

    @classmethod
    def from_dict(cls, data: dict) -> Track:
        """The inverse of ``to_dict``."""
        return cls(int(data["n_frames"]), tuple(Segment.from_dict(s) for s in data["segments"]),
                   tuple(int(i) for i in data["checked"]), tuple(int(i) for i in data["lost"]))

    @property
    def key(self) -> str:
        """A digest of the boxes: features computed with another track are recomputed."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def check_indices(n_frames: int, fps: float, config: SpotFeatureConfig) -> list[int]:
    """The frames YuNet looks at: 0 and every ``redetect_seconds`` after."""
    return list(range(0, n_frames, frames(config.redetect_seconds, fps)))


def detect_at(frames_: Sequence[np.ndarray], indices: Sequence[int], config: SpotFeatureConfig) -> dict[int, dict | None]:
    """frame -> the face box found there (``FaceBox.to_dict()``), or None where no detector finds one."""
    face = config.face.replace(no_face="quarantine")
    found = {}
    for index in indices:
        try:
            found[int(index)] = detect_face(frames_[index], face).to_dict()
        except NoFaceError:
            found[int(index)] = None
    return found


def box_iou(a: FaceBox, b: FaceBox) -> float:
    """IoU of two crop squares (angles ignored: a turn large enough to matter moves the box too)."""
    ax0, ay0, bx0, by0 = a.cx - a.side / 2, a.cy - a.side / 2, b.cx - b.side / 2, b.cy - b.side / 2
    w = max(0.0, min(ax0 + a.side, bx0 + b.side) - max(ax0, bx0))
    h = max(0.0, min(ay0 + a.side, by0 + b.side) - max(ay0, by0))
    inter = w * h
    union = a.side ** 2 + b.side ** 2 - inter
    return inter / union if union > 0 else 0.0


def build_track(n_frames: int, detections: dict[int, dict | FaceBox | None], drift_iou: float,
                video: str = "the video") -> Track:
    """The segments from the boxes found at the checked frames (``detect_at``, in any order): a new segment
    where a box moved (IoU < ``drift_iou``); frames before the first face use the first box found."""
    boxes = {int(i): (FaceBox.from_dict(b) if isinstance(b, dict) else b) for i, b in detections.items()}
    checked = tuple(sorted(boxes))
    lost = tuple(i for i in checked if boxes[i] is None)
    found = [i for i in checked if boxes[i] is not None]
    if not found:
        raise VideoFaceError(f"no face found in {video}: {len(checked)} frames checked, none has a face")
    segments, start, current, found_at = [], 0, boxes[found[0]], found[0]
    for index in found[1:]:
        if box_iou(boxes[index], current) < drift_iou:
            segments.append(Segment(start, index, current, found_at))
            start, current, found_at = index, boxes[index], index
    segments.append(Segment(start, n_frames, current, found_at))
    return Track(n_frames, tuple(segments), checked, lost)


def track_face(frames_: Sequence[np.ndarray], fps: float, config: SpotFeatureConfig = SpotFeatureConfig(),
               video: str = "the video") -> Track:
    """The face's track through a whole video, in one process (a user's video; flows/spotting.py checks the
    chunks on Dask and calls ``build_track``)."""
    indices = check_indices(len(frames_), fps, config)
    return build_track(len(frames_), detect_at(frames_, indices, config), config.drift_iou, video)


# ------------------------------------------------------------------------------------------ regions
@dataclass(frozen=True)
class RoiGeometry:
    """Where SOFTNet's regions lie in a crop: each a (y0, y1, x0, x1) slice, the eyes as polygons."""

    nose: tuple[int, int, int, int]
    eyes: tuple[np.ndarray, np.ndarray]
    brows: tuple[int, int, int, int]
    mouth: tuple[int, int, int, int]


def _clamped(y0: float, y1: float, x0: float, x1: float, size: int) -> tuple[int, int, int, int]:
    y0, x0 = min(max(int(math.floor(y0)), 0), size - 2), min(max(int(math.floor(x0)), 0), size - 2)
    y1, x1 = max(min(int(math.ceil(y1)), size), y0 + 2), max(min(int(math.ceil(x1)), size), x0 + 2)
    return y0, y1, x0, x1


def roi_geometry(box: FaceBox, crop: int) -> RoiGeometry:
    """The regions of the face ``box`` holds, in the pixels of its ``crop`` x ``crop`` crop, from its five
    landmarks (TEMPLATE_POINTS where the detector gave none)."""
    if box.landmarks is not None:
        points = crop_points(box, crop, box.landmarks)
    else:
        points = np.array(TEMPLATE_POINTS, dtype=np.float64) * crop
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    iod = max(float(np.hypot(*(right_eye - left_eye))), 4.0)
    middle = (left_eye + right_eye) / 2
    bridge = middle + NOSE_BELOW_EYES * (nose - middle)
    half = max(NOSE_HALF * iod, 1.0)
    eyes = []
    for centre, mirror in ((left_eye, 1.0), (right_eye, -1.0)):
        hexagon = np.array([(centre[0] + mirror * dx * iod, centre[1] + dy * iod) for dx, dy in EYE_HEXAGON])
        eyes.append(np.round(hexagon).astype(np.int32))
    eye_y = middle[1]
    mouth_y = (mouth_left[1] + mouth_right[1]) / 2
    return RoiGeometry(
        nose=_clamped(bridge[1] - half, bridge[1] + half + 1, bridge[0] - half, bridge[0] + half + 1, crop),
        eyes=(eyes[0], eyes[1]),
        brows=_clamped(eye_y + BROW_Y[0] * iod, eye_y + BROW_Y[1] * iod, middle[0] - BROW_X * iod,
                       middle[0] + BROW_X * iod, crop),
        mouth=_clamped(mouth_y + MOUTH_Y[0] * iod, mouth_y + MOUTH_Y[1] * iod, mouth_left[0] - MOUTH_X * iod,
                       mouth_right[0] + MOUTH_X * iod, crop))


def roi_flow(first: np.ndarray, second: np.ndarray, geometry: RoiGeometry, config: SpotFeatureConfig) -> np.ndarray:
    """SOFTNet's image of the motion from ``first`` to ``second`` (grey crops): float32 (3, roi, roi) of
    |u - u_nose|, |v - v_nose| and strain - strain_nose, eyes zeroed, brows above mouth."""
    flow = optical_flow(first, second, config.motion)
    stacked = np.dstack([flow[..., 0], flow[..., 1], optical_strain(flow)]).astype(np.float32)
    y0, y1, x0, x1 = geometry.nose
    stacked -= stacked[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
    np.abs(stacked[..., :2], out=stacked[..., :2])
    for eye in geometry.eyes:
        cv2.fillPoly(stacked, [eye], (0.0, 0.0, 0.0))
    top = config.roi // 2
    out = np.empty((config.roi, config.roi, 3), np.float32)
    for (y0, y1, x0, x1), rows in ((geometry.brows, slice(0, top)), (geometry.mouth, slice(top, config.roi))):
        out[rows] = cv2.resize(stacked[y0:y1, x0:x1], (config.roi, rows.stop - rows.start))
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def motion_score(roi: np.ndarray) -> float:
    """The untrained spotter's signal for one frame: the mean flow magnitude over the regions' image."""
    return float(np.sqrt(roi[0].astype(np.float32) ** 2 + roi[1].astype(np.float32) ** 2).mean())


# ------------------------------------------------------------------------------------------ per chunk
def chunk_features(frames_: Sequence[np.ndarray], start: int, stop: int, k: int, track: Track,
                   config: SpotFeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(roi, motion) of frames ``start`` .. ``stop - 1``: float16 (n, 3, roi, roi) and float32 (n,), each frame
    i against frame i + k. Reads frames start .. min(stop + k, n_frames) - 1 only; frames without an i + k
    get zeros and NaN."""
    if k < 1:
        raise ValueError(f"k must be at least 1 frame, got {k}")
    cv2.setNumThreads(1)  # one process per core already
    n_frames = track.n_frames
    roi = np.zeros((stop - start, 3, config.roi, config.roi), np.float16)
    motion = np.full(stop - start, np.nan, np.float32)
    crops: dict[tuple[int, int], np.ndarray] = {}
    geometry: dict[int, RoiGeometry] = {}

    def crop(index: int, segment: int) -> np.ndarray:
        key = (index, segment)
        if key not in crops:
            crops[key] = to_grey(crop_face(frames_[index], track.segments[segment].box, config.crop))
        return crops[key]

    for i in range(start, min(stop, n_frames - k)):
        segment = track.segment_at(i)
        if segment not in geometry:
            geometry[segment] = roi_geometry(track.segments[segment].box, config.crop)
        image = roi_flow(crop(i, segment), crop(i + k, segment), geometry[segment], config)
        roi[i - start] = image
        motion[i - start] = motion_score(image)
        crops.pop((i, segment), None)  # frame i is not needed again (later pairs start after it)
    return roi, motion


def video_features(frames_: Sequence[np.ndarray], k: int, track: Track, config: SpotFeatureConfig,
                   progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(roi, motion) of a whole video, chunk by chunk in this process (``progress(frames)`` after each)."""
    parts = []
    for start in range(0, track.n_frames, config.chunk_frames):
        stop = min(start + config.chunk_frames, track.n_frames)
        parts.append(chunk_features(frames_, start, stop, k, track, config))
        progress and progress(stop - start)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------------------ an interval as a clip
def clip_features(frames_: Sequence[np.ndarray], onset: int, offset: int, apex: int | None,
                  config: FeatureConfig = FeatureConfig()) -> tuple[dict[str, np.ndarray], dict]:
    """Frames ``onset`` .. ``offset`` of a video as the features flow makes a clip's (tasks/features.py
    ``clip_arrays``, the same function): the face found on the onset frame (``config.face``; NoFaceError without
    one, whatever ``config.face.no_face`` says: a spotted interval has no catalog row to quarantine) cropping
    every frame of it, the apex the given one (a frame index of the video) or, where None, the frame that moved
    most from the onset (tasks/motion.py ``spot_apex``, MEAN's rule where no apex is known), the pair
    ``config.first_frame`` names. Returns the arrays (onset, apex, middle, diff, flow) and the info, whose
    ``apex_frame`` is a frame index of the video."""
    def read(index: int) -> np.ndarray:
        return frames_[onset + index]

    config = config.replace(face=config.face.replace(no_face="quarantine"))
    try:
        arrays, info = clip_arrays(read, offset - onset + 1, None if apex is None else apex - onset, config)
    except SampleError as error:
        if error.reason == "no_face":
            raise NoFaceError(error.detail) from None
        raise FrameError(f"frames {onset}..{offset}: {error.detail}") from None
    return arrays, info | {"apex_frame": onset + info["apex_index"]}


def interval_features(frames_: Sequence[np.ndarray], onset: int, offset: int, apex: int | None,
                      config: FeatureConfig = FeatureConfig()) -> dict:
    """``clip_features`` as spot-then-recognise reads it: ``flow`` (4, size, size), ``diff`` (3, size, size),
    ``apex`` (the frame index used) and ``face`` (the box)."""
    arrays, info = clip_features(frames_, onset, offset, apex, config)
    return {"flow": arrays["flow"], "diff": arrays["diff"], "apex": int(info["apex_frame"]), "face": info["face"]}
