"""Face detection, alignment and cropping for micro-expression samples.

One concern: find the face once per sample, on its onset frame, and cut the same square (rotated so
that the eyes are level) out of every frame of the sample. Micro-expressions move the skin by one or
two pixels; re-detecting per frame would add box jitter of that size, so the box never follows the face.

Coordinates are frame pixels with pixel centres on integers (OpenCV's ``warpAffine`` convention): a
box with ``cx = (W - 1) / 2``, ``side = W`` cropped at ``size = W`` returns a square frame unchanged.

Angle convention: ``FaceBox.angle`` is the direction of the line from the image-left eye to the
image-right eye, in degrees, positive when that line slopes down to the right (y grows downwards).
``crop_face`` rotates by ``cv2.getRotationMatrix2D((cx, cy), angle, ...)`` (counter-clockwise on
screen for positive angles), which levels that line. So a frame turned counter-clockwise by 10 degrees
with ``getRotationMatrix2D(c, 10, 1)`` gets an angle of about -10.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np
import yuface

from merflow.configs.features import DETECTORS, NO_FACE_POLICIES, FaceConfig

__all__ = [
    "DETECTION_MAX_SIDE",
    "DETECTORS",
    "FaceBox",
    "FaceConfig",
    "HAAR_CASCADE",
    "NO_FACE_POLICIES",
    "NoFaceError",
    "crop_face",
    "crop_frames",
    "crop_points",
    "detect_face",
]

# Frames are shrunk to this longer side before detection: YuNet takes several times longer at 960x650
# than at 640x433, and the faces of these datasets are large enough to be found either way.
DETECTION_MAX_SIDE = 640
HAAR_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
# Haar finds nothing smaller than this fraction of the frame's shorter side: smaller hits are
# background texture, the subject's face is always large in these datasets.
_HAAR_MIN_FACE = 0.1
# Levelling (see _levelled): the face is looked at again in a view this many pixels wide, where its eyes
# are about 60 px apart so that YuNet's whole-pixel landmarks resolve about one degree; the view spans
# this many crop sides so that the detector sees the head's outline; at most this many looks.
_ALIGN_VIEW = 320
_ALIGN_CONTEXT = 1.5
_ALIGN_ROUNDS = 3
_ALIGN_TOLERANCE = 0.5  # degrees
_ALIGN_DRIFT = 0.1  # a face further than this many of its crop sides from the view's centre is another one


class NoFaceError(ValueError):
    """No detector found a face and the policy is to quarantine the sample."""


@dataclass(frozen=True)
class FaceBox:
    """Where a sample's face is: found once on its onset frame, applied to all its frames."""

    cx: float                      # centre of the square crop, frame pixels
    cy: float
    side: float                    # side of the square crop (margin included), frame pixels
    angle: float                   # degrees, see the module docstring; 0 when not aligned
    detector: str                  # 'yunet' | 'haar' | 'none' (centre crop, no face found)
    confidence: float | None       # detector score 0..1; None for haar and none (they give no score)
    # Five points as yuface gives them (subject's right eye = image-left eye, left eye, nose, mouth
    # right, mouth left), frame pixels; None when the detector gives none.
    landmarks: tuple[tuple[float, float], ...] | None

    def to_dict(self) -> dict:
        """Plain JSON types, for storing with the sample."""
        return {
            "cx": self.cx, "cy": self.cy, "side": self.side, "angle": self.angle,
            "detector": self.detector,
            "confidence": self.confidence,
            "landmarks": None if self.landmarks is None else [list(p) for p in self.landmarks],
        }

    @classmethod
    def from_dict(cls, data: dict) -> FaceBox:
        """The inverse of ``to_dict``: a stored box, ready to crop the sample's frames again."""
        landmarks = data.get("landmarks")
        confidence = data.get("confidence")
        return cls(
            cx=float(data["cx"]), cy=float(data["cy"]), side=float(data["side"]), angle=float(data["angle"]),
            detector=str(data["detector"]),
            confidence=None if confidence is None else float(confidence),
            landmarks=None if landmarks is None else tuple((float(x), float(y)) for x, y in landmarks),
        )


class _Candidate(NamedTuple):
    x0: float                      # box edges in frame pixels: the box covers [x0, x1) x [y0, y1)
    y0: float
    x1: float
    y1: float
    confidence: float | None       # None: the detector gives no score (Haar)
    landmarks: tuple[tuple[float, float], ...] | None


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(image, 'dtype', type(image))}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected a grey HxW or RGB HxWx3 image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image, shape {image.shape}")


@lru_cache(maxsize=None)
def _cascade(path: str) -> tuple[cv2.CascadeClassifier, threading.Lock]:
    """One classifier per process; its lock because detectMultiScale keeps per-image state in the object."""
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        # A bare file name or a wrong path loads an empty classifier that silently finds nothing.
        raise RuntimeError(f"could not load the Haar cascade {path!r}: give a full path, e.g. cv2.data.haarcascades")
    return classifier, threading.Lock()


def _detect_yunet(bgr: np.ndarray, config: FaceConfig) -> list[_Candidate]:
    # yuface returns int16 arrays (its docstring says uint16): boxes may start at negative coordinates.
    confidences, boxes, landmarks = yuface.detect(bgr, conf=config.min_confidence)
    candidates = []
    for confidence, (x, y, w, h), points in zip(confidences, boxes.astype(float), landmarks.astype(float)):
        candidates.append(_Candidate(x, y, x + w, y + h, float(confidence) / 100.0,
                                     tuple((float(px), float(py)) for px, py in points.reshape(5, 2))))
    return candidates


def _detect_haar(bgr: np.ndarray, config: FaceConfig) -> list[_Candidate]:
    grey = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))  # the cascade was trained on equalised faces
    min_side = int(_HAAR_MIN_FACE * min(grey.shape))
    classifier, lock = _cascade(HAAR_CASCADE)
    with lock:
        boxes = classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return [_Candidate(float(x), float(y), float(x + w), float(y + h), None, None) for x, y, w, h in boxes]


_DETECTOR_FUNCTIONS = {"yunet": _detect_yunet, "haar": _detect_haar}


def _detection_image(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """BGR uint8 at most DETECTION_MAX_SIDE on its longer side, and the x and y scales applied."""
    h, w = image.shape[:2]
    shrink = min(1.0, DETECTION_MAX_SIDE / max(h, w))
    if shrink < 1.0:
        image = cv2.resize(image, (max(round(w * shrink), 1), max(round(h * shrink), 1)),
                           interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
    return bgr, bgr.shape[1] / w, bgr.shape[0] / h


def _to_frame(candidate: _Candidate, sx: float, sy: float) -> _Candidate:
    """A candidate found on the shrunk image, in frame pixels (edges scale; pixel centres sit at +0.5)."""
    landmarks = candidate.landmarks
    if landmarks is not None:
        landmarks = tuple(((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5) for x, y in landmarks)
    return _Candidate(candidate.x0 / sx, candidate.y0 / sy, candidate.x1 / sx, candidate.y1 / sy,
                      candidate.confidence, landmarks)


def _box(candidate: _Candidate, detector: str, config: FaceConfig) -> FaceBox:
    side = max(candidate.x1 - candidate.x0, candidate.y1 - candidate.y0) * (1.0 + 2.0 * config.margin)
    angle = 0.0
    if config.align and candidate.landmarks is not None:
        (ax, ay), (bx, by) = candidate.landmarks[:2]
        angle = math.degrees(math.atan2(by - ay, bx - ax))
    # Edges to pixel-centre coordinates: a box over pixels 0..w-1 is centred on (w - 1) / 2.
    cx, cy = (candidate.x0 + candidate.x1) / 2 - 0.5, (candidate.y0 + candidate.y1) / 2 - 0.5
    return FaceBox(cx=float(cx), cy=float(cy), side=float(side), angle=angle, detector=detector,
                   confidence=candidate.confidence, landmarks=candidate.landmarks)


def _levelled(image: np.ndarray, box: FaceBox, config: FaceConfig) -> FaceBox:
    """``box`` with its angle measured again on the face as it looks once levelled.

    YuNet's eye landmarks under-report roll (a face turned by 10-20 degrees reads as about half that),
    so the face is looked at again, rotated by the angle found so far, and what remains is added
    until it is below ``_ALIGN_TOLERANCE``. Box and landmarks stay as first detected: a look at a
    view that reaches past the frame's border (a face that fills the frame) can misplace them.
    """
    view = dataclasses.replace(box, side=box.side * _ALIGN_CONTEXT)
    middle = (_ALIGN_VIEW - 1) / 2
    for _ in range(_ALIGN_ROUNDS):
        bgr, _, _ = _detection_image(crop_face(image, view, _ALIGN_VIEW))
        candidates = [_box(c, view.detector, config) for c in _detect_yunet(bgr, config)]
        nearest = min(candidates, key=lambda c: math.hypot(c.cx - middle, c.cy - middle), default=None)
        if nearest is None or math.hypot(nearest.cx - middle, nearest.cy - middle) > _ALIGN_DRIFT * nearest.side:
            break
        view = dataclasses.replace(view, angle=view.angle + nearest.angle)
        if abs(nearest.angle) < _ALIGN_TOLERANCE:
            break
    return dataclasses.replace(box, angle=view.angle)


def detect_face(image: np.ndarray, config: FaceConfig = FaceConfig()) -> FaceBox:
    """The crop box of the face in ``image`` (uint8 RGB HxWx3 or grey HxW), normally a sample's onset frame.

    Tries ``config.detector`` then ``config.fallback``; of several faces the largest is taken (the
    subject sits close to the camera; bystanders and false hits are smaller). When none is found:
    ``no_face='centre'`` gives the centre square of the frame with detector 'none';
    ``no_face='quarantine'`` raises NoFaceError naming the detectors tried.
    """
    _check_image(image)
    bgr, sx, sy = _detection_image(image)
    for detector in config.detectors:
        candidates = _DETECTOR_FUNCTIONS[detector](bgr, config)
        if candidates:
            # The largest box; equal areas: the higher score (Haar gives none: the first of them).
            largest = max(candidates, key=lambda c: ((c.x1 - c.x0) * (c.y1 - c.y0),
                                                     -math.inf if c.confidence is None else c.confidence))
            box = _box(_to_frame(largest, sx, sy), detector, config)
            return _levelled(image, box, config) if box.landmarks is not None and config.align else box
    h, w = image.shape[:2]
    if config.no_face == "quarantine":
        raise NoFaceError(f"no face found in the {w}x{h} frame by {' or '.join(config.detectors)}")
    return FaceBox(cx=(w - 1) / 2, cy=(h - 1) / 2, side=float(min(h, w)), angle=0.0, detector="none",
                   confidence=None, landmarks=None)


def _crop_matrix(box: FaceBox, size: int) -> np.ndarray:
    """2x3 affine from frame pixels to the crop's: rotation about the box centre, scale, translation."""
    to_output = cv2.getRotationMatrix2D((box.cx, box.cy), box.angle, size / box.side)
    to_output[:, 2] += ((size - 1) / 2 - box.cx, (size - 1) / 2 - box.cy)
    return to_output


class _CropPlan(NamedTuple):
    rows: np.ndarray               # frame rows and columns read, clamped: border replication
    cols: np.ndarray
    block: int                     # the read region is averaged over block x block pixels first
    matrix: np.ndarray             # 2x3, from the averaged region to the output
    size: int


def _crop_plan(box: FaceBox, size: int) -> _CropPlan:
    """Everything about a crop that does not depend on the pixels, so that a clip computes it once.

    Downscaling is anti-aliased like INTER_AREA: the region is first averaged over whole blocks of
    pixels (exact, no resampling), and one warpAffine then rotates, scales by less than 2 and
    translates in a single interpolation.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    if not (box.side > 0 and math.isfinite(box.side)):
        raise ValueError(f"box side must be positive, got {box.side}")
    size = int(size)
    to_output = _crop_matrix(box, size)

    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1], [size - 0.5, size - 0.5, 1]])
    source = corners @ cv2.invertAffineTransform(to_output).T
    block = max(int(box.side // size), 1)
    pad = block + 1  # the interpolation's neighbours, one averaged block away
    x0, y0 = (math.floor(v) - pad for v in source.min(axis=0))
    x1, y1 = (math.ceil(v) + pad for v in source.max(axis=0))
    n_cols, n_rows = -(-(x1 - x0) // block) * block, -(-(y1 - y0) // block) * block

    # Averaged pixel (j, i) covers region pixels j*block .. j*block + block - 1: its centre in frame
    # pixels is x0 + (block - 1) / 2 + block * j.
    from_blocks = np.array([[block, 0, x0 + (block - 1) / 2], [0, block, y0 + (block - 1) / 2], [0, 0, 1]])
    matrix = to_output @ from_blocks
    return _CropPlan(np.arange(y0, y0 + n_rows), np.arange(x0, x0 + n_cols), block, matrix, size)


def _apply(image: np.ndarray, plan: _CropPlan) -> np.ndarray:
    h, w = image.shape[:2]
    region = image.take(np.clip(plan.rows, 0, h - 1), axis=0).take(np.clip(plan.cols, 0, w - 1), axis=1)
    if plan.block > 1:
        region = cv2.resize(region, (region.shape[1] // plan.block, region.shape[0] // plan.block),
                            interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(region, plan.matrix, (plan.size, plan.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def crop_face(image: np.ndarray, box: FaceBox, size: int) -> np.ndarray:
    """The square of ``box``, rotated by ``box.angle`` about its centre, as ``size`` x ``size`` uint8.

    Grey in, grey out; RGB in, RGB out. Parts of the square outside the frame repeat the frame's border.
    """
    _check_image(image)
    return _apply(image, _crop_plan(box, size))


def crop_points(box: FaceBox, size: int, points) -> np.ndarray:
    """Frame-pixel points (N, 2) where ``crop_face(image, box, size)`` shows them: crop pixels, (N, 2) float."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    matrix = _crop_matrix(box, size)
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_frames(frames: list[np.ndarray] | np.ndarray, box: FaceBox, size: int) -> np.ndarray:
    """The same box cut out of every frame: (T, size, size) for grey frames, (T, size, size, 3) for RGB."""
    if len(frames) == 0:
        raise ValueError("no frames to crop")
    shape = frames[0].shape
    for frame in frames:
        _check_image(frame)
        if frame.shape != shape:
            raise ValueError(f"frames of one sample differ in shape: {frame.shape} vs {shape}")
    plan = _crop_plan(box, size)
    return np.stack([_apply(frame, plan) for frame in frames])
