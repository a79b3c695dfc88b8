"""Face identities for synthetic clips, built from the faces that ship inside scikit-image.

One concern: turning ``skimage.data.lfw_subset()`` faces (25x25 grey) and the face in
``skimage.data.astronaut()`` into aligned, coloured, per-subject face images with landmarks,
deterministically from ``(subject_index, seed)``. Nothing is downloaded.

Every identity's face image is a ``CANVAS`` x ``CANVAS`` RGB canvas in which the face is aligned to
one five-point template (eyes on one row, ``CANONICAL_IOD`` pixels apart), so that its face box
(``FaceIdentity.face_box``, the box a face detector would draw) is about ``FACE_HEIGHT`` = 130 pixels
high: a "128 px face". Left and right are as seen in the image (``left_eye`` has the smaller x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "CANVAS",
    "CANONICAL_IOD",
    "FACE_HEIGHT",
    "FaceIdentity",
    "LANDMARK_NAMES",
    "n_base_faces",
    "subject_identity",
]

CANVAS = 192
CANONICAL_IOD = 50.0
_EYE_Y = 78.0
_CX = (CANVAS - 1) / 2.0
# Five-point template in units of the inter-ocular distance, relative to the eyes' midpoint
# (means over the lfw_subset faces used here: nose 0.56, mouth corners 0.43 out and 1.03 down).
_TEMPLATE_IOD = np.array(
    [[-0.5, 0.0], [0.5, 0.0], [0.0, 0.56], [-0.43, 1.03], [0.43, 1.03]], dtype=np.float64
)
TEMPLATE = _TEMPLATE_IOD * CANONICAL_IOD + np.array([_CX, _EYE_Y])
# The face box a detector draws spans about 0.9 IOD above the eyes to 0.7 IOD below the mouth.
_FACE_TOP = _EYE_Y - 0.9 * CANONICAL_IOD
_FACE_BOTTOM = _EYE_Y + (1.03 + 0.7) * CANONICAL_IOD
FACE_HEIGHT = _FACE_BOTTOM - _FACE_TOP  # 130 px

LANDMARK_NAMES = (
    "left_eye", "right_eye", "nose", "mouth_left", "mouth_right",
    "left_brow", "right_brow", "mouth_center",
)

# Five landmarks (left eye, right eye, nose, left and right mouth corner; x, y in tile pixels) of the
# lfw_subset faces used, measured once with YuNet (yuface 2023.5.1) on the tiles upscaled 8, 10 and
# 12 times (mean of the three). Kept: the near-frontal ones (roll <= 8 degrees, nose within 0.13 IOD
# of the eyes' midline, confident and stable detections) that a detector still finds once rendered.
_LFW_LANDMARKS: dict[int, tuple[float, ...]] = {
    0: (7.8, 8.2, 16.3, 8.3, 12.9, 13.3, 8.3, 17.3, 15.6, 17.4),
    2: (4.0, 8.4, 13.4, 7.2, 8.2, 12.9, 6.0, 17.1, 14.5, 16.1),
    3: (6.4, 8.5, 14.7, 8.8, 10.4, 13.4, 6.6, 17.2, 13.8, 17.4),
    6: (4.5, 8.8, 14.1, 8.6, 8.8, 14.3, 5.4, 18.1, 13.5, 17.9),
    7: (6.3, 8.1, 15.5, 8.3, 10.4, 13.5, 6.9, 17.2, 14.5, 17.4),
    8: (6.0, 8.3, 14.8, 8.2, 10.2, 13.1, 6.9, 16.9, 14.4, 16.7),
    11: (8.0, 8.8, 16.8, 9.3, 12.3, 14.2, 8.1, 18.2, 15.6, 18.7),
    12: (6.7, 9.3, 14.8, 9.2, 10.7, 13.6, 7.7, 17.6, 14.4, 17.4),
    15: (7.1, 8.7, 15.4, 8.0, 11.9, 13.0, 8.3, 16.6, 15.6, 16.0),
    16: (6.3, 4.5, 15.6, 5.4, 10.2, 10.0, 5.9, 14.0, 13.8, 14.7),
    17: (7.4, 7.8, 15.6, 7.8, 11.9, 12.2, 8.5, 16.2, 15.4, 16.0),
    18: (4.9, 8.3, 14.3, 8.0, 8.6, 13.3, 6.2, 17.6, 14.0, 17.3),
    19: (5.9, 6.4, 15.1, 6.3, 10.4, 11.6, 6.8, 16.6, 14.6, 16.4),
    20: (4.8, 7.3, 14.1, 7.6, 8.3, 12.2, 5.3, 16.7, 13.0, 16.8),
    22: (6.2, 9.2, 15.2, 8.5, 10.6, 14.1, 7.7, 17.7, 15.6, 17.0),
    24: (7.0, 8.6, 15.1, 8.8, 11.4, 13.4, 7.5, 16.9, 14.5, 17.0),
    25: (6.4, 7.8, 14.8, 7.7, 10.8, 12.1, 7.1, 16.5, 14.3, 16.2),
    26: (4.8, 8.6, 14.2, 7.6, 10.2, 13.4, 6.8, 18.2, 14.6, 17.2),
    27: (6.4, 8.2, 15.2, 8.1, 10.8, 12.7, 7.1, 16.4, 14.9, 16.2),
    31: (4.7, 8.9, 14.1, 7.6, 9.1, 13.5, 6.8, 17.6, 15.1, 16.4),
    33: (5.2, 8.8, 14.0, 8.9, 8.8, 13.7, 5.8, 17.8, 13.1, 17.9),
    36: (7.1, 8.4, 15.8, 9.4, 10.8, 13.8, 6.8, 17.2, 14.0, 18.1),
    38: (7.3, 7.8, 16.3, 7.3, 12.8, 12.3, 8.4, 16.5, 16.5, 16.0),
    39: (5.3, 8.7, 13.6, 8.1, 9.3, 13.2, 6.9, 18.0, 13.6, 17.4),
    41: (5.8, 8.1, 14.6, 7.8, 9.8, 13.1, 7.0, 17.6, 14.3, 17.3),
    43: (6.1, 9.1, 14.0, 9.1, 9.1, 13.5, 7.0, 17.3, 13.4, 17.3),
    44: (6.9, 7.7, 16.1, 7.9, 12.2, 12.7, 7.5, 17.2, 15.4, 17.4),
    45: (5.8, 8.1, 14.4, 8.2, 9.8, 12.8, 6.3, 17.3, 13.7, 17.3),
    46: (5.3, 8.8, 13.8, 8.2, 9.3, 13.5, 6.8, 17.4, 13.9, 16.9),
    49: (5.5, 7.8, 14.3, 7.1, 9.8, 12.4, 7.1, 17.5, 14.2, 16.9),
    50: (5.5, 8.4, 14.7, 8.1, 9.7, 13.3, 6.6, 17.7, 14.4, 17.4),
    52: (5.1, 7.4, 14.9, 7.3, 9.5, 12.5, 5.8, 16.6, 14.6, 16.4),
    53: (7.5, 7.0, 16.1, 7.4, 12.6, 12.2, 7.5, 16.2, 15.2, 16.5),
    55: (6.3, 7.0, 15.7, 7.4, 10.9, 12.8, 6.7, 16.8, 14.4, 17.1),
    56: (4.8, 7.8, 14.1, 7.6, 8.8, 12.9, 5.8, 17.7, 13.7, 17.5),
    58: (8.3, 8.7, 16.7, 8.5, 13.2, 13.3, 9.0, 17.4, 16.5, 17.2),
    60: (5.5, 8.0, 15.0, 7.9, 9.6, 13.3, 6.4, 18.1, 14.1, 18.0),
    61: (5.3, 8.4, 14.7, 8.1, 9.6, 13.3, 6.2, 17.5, 14.2, 17.2),
    62: (5.7, 9.0, 13.7, 8.6, 9.3, 13.2, 6.8, 17.0, 13.5, 16.7),
    63: (3.5, 7.5, 13.1, 6.5, 7.7, 12.5, 5.4, 17.2, 13.5, 16.3),
    64: (5.9, 7.5, 14.7, 7.4, 10.0, 12.1, 6.7, 16.4, 14.2, 16.2),
    65: (4.1, 7.7, 13.7, 7.2, 8.1, 13.1, 5.6, 17.2, 13.6, 16.8),
    66: (5.6, 8.3, 14.4, 7.8, 9.7, 12.7, 6.9, 17.2, 14.1, 16.8),
    69: (6.1, 8.1, 15.4, 8.3, 10.7, 13.2, 6.5, 16.8, 14.9, 16.9),
    71: (5.7, 9.5, 14.5, 9.0, 9.9, 14.2, 7.0, 18.3, 14.5, 17.7),
    72: (5.6, 7.7, 14.8, 7.3, 10.3, 12.7, 6.8, 17.1, 14.3, 16.8),
    73: (5.4, 8.3, 14.3, 8.3, 8.9, 13.1, 6.0, 17.1, 13.8, 17.1),
    77: (7.4, 8.4, 16.3, 8.2, 12.9, 13.6, 8.3, 18.0, 15.9, 17.8),
    79: (5.6, 9.8, 14.5, 9.0, 9.9, 14.5, 7.2, 18.6, 14.8, 17.9),
    80: (6.0, 8.6, 14.7, 8.6, 10.4, 13.7, 6.6, 17.7, 14.0, 17.6),
    81: (6.9, 7.6, 15.8, 8.0, 11.2, 12.7, 6.8, 16.0, 14.9, 16.2),
    84: (6.2, 9.1, 14.3, 8.1, 11.3, 13.3, 8.1, 17.9, 14.7, 17.0),
    85: (5.0, 8.2, 14.5, 7.7, 9.2, 13.1, 6.0, 17.4, 14.4, 17.0),
    90: (6.9, 7.9, 15.5, 7.5, 12.1, 12.7, 8.1, 17.1, 15.4, 16.6),
    91: (6.0, 8.5, 14.8, 7.8, 10.8, 13.4, 7.7, 17.8, 15.1, 17.1),
    92: (6.0, 9.1, 14.2, 8.2, 10.7, 13.1, 7.6, 17.2, 14.6, 16.4),
    93: (6.1, 8.0, 15.5, 7.8, 10.8, 12.9, 6.9, 16.4, 15.3, 16.2),
    94: (6.0, 7.0, 15.7, 6.9, 10.6, 12.3, 6.6, 16.6, 15.4, 16.6),
    95: (6.0, 7.1, 15.0, 7.4, 9.8, 12.4, 6.3, 16.7, 13.7, 16.9),
    96: (5.3, 8.4, 14.2, 7.8, 9.5, 12.7, 6.6, 17.3, 14.3, 16.6),
    97: (5.4, 8.7, 13.9, 8.4, 9.0, 13.5, 6.3, 17.6, 13.6, 17.3),
    98: (6.5, 8.0, 15.6, 8.1, 11.4, 13.3, 7.6, 17.4, 14.8, 17.3),
}
# The same five points for astronaut(), measured with YuNet at three scales.
_ASTRONAUT_LANDMARKS = (200.7, 103.0, 245.6, 103.3, 220.4, 125.6, 202.0, 143.5, 241.3, 143.9)

# Skin tints (RGB gains relative to luminance, normalised to unit luminance below) to colour the
# grey faces, from pale to brown skin.
_SKIN_TINTS = np.array(
    [
        [1.15, 0.96, 0.86],
        [1.22, 0.94, 0.78],
        [1.22, 0.95, 0.72],
        [1.28, 0.92, 0.66],
        [1.33, 0.90, 0.58],
        [1.40, 0.88, 0.45],
    ]
)
_HAIR = np.array(
    [[0.10, 0.08, 0.07], [0.20, 0.14, 0.10], [0.33, 0.24, 0.16], [0.05, 0.05, 0.06],
     [0.45, 0.36, 0.24], [0.50, 0.48, 0.46]]
)
_SHIRTS = np.array(
    [[0.20, 0.25, 0.45], [0.55, 0.55, 0.58], [0.12, 0.12, 0.14], [0.60, 0.20, 0.20],
     [0.85, 0.85, 0.82], [0.25, 0.40, 0.30], [0.45, 0.35, 0.55]]
)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True, eq=False)
class FaceIdentity:
    """One synthetic subject: an aligned face canvas, its landmarks and how it is staged.

    ``face`` is float32 CANVAS x CANVAS x 3 RGB in [0, 1]; ``mask`` (float32 CANVAS x CANVAS in
    [0, 1]) says where ``face`` holds skin of the face (a soft oval), the renderer stages the rest
    (hair, neck, shoulders, backdrop) from the colours below. Arrays are read-only.
    """

    face: np.ndarray
    landmarks: dict[str, tuple[float, float]]
    expressiveness: float
    mask: np.ndarray = field(repr=False)
    face_box: tuple[float, float, float, float] = (0.0, _FACE_TOP, float(CANVAS), _FACE_BOTTOM)
    face_fraction: float = 0.52  # face box height / frame height when rendered
    skin_rgb: tuple[float, float, float] = (0.7, 0.55, 0.45)
    hair_rgb: tuple[float, float, float] = (0.1, 0.08, 0.07)
    shirt_rgb: tuple[float, float, float] = (0.2, 0.25, 0.45)
    backdrop_rgb: tuple[float, float, float] = (0.7, 0.7, 0.7)
    hair_shape: tuple[float, float] = (1.0, 1.0)  # width, height factors of the hair oval
    scene_seed: int = 0  # seeds the backdrop texture, shared by all clips of the subject
    base: str = ""  # which bundled face, e.g. "lfw_subset[12]" or "astronaut", "+mirror" if flipped
    subject_index: int = 0
    seed: int = 0

    @property
    def iod(self) -> float:
        """The inter-ocular distance in pixels (eye centre to eye centre)."""
        (lx, ly), (rx, ry) = self.landmarks["left_eye"], self.landmarks["right_eye"]
        return float(np.hypot(rx - lx, ry - ly))


@lru_cache(maxsize=1)
def _lfw_faces() -> np.ndarray:
    from skimage import data

    return np.asarray(data.lfw_subset()[:100], dtype=np.float32)  # the first 100 are faces


@lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut(), dtype=np.float32) / 255.0


def _bases() -> list[str]:
    return ["astronaut"] + [f"lfw_subset[{i}]" for i in sorted(_LFW_LANDMARKS)]


def n_base_faces() -> int:
    """How many distinct bundled faces there are; subjects beyond that reuse them mirrored/varied."""
    return len(_bases())


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) taking src points onto dst; 2x3 matrix."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    r = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / (s ** 2).sum(1).mean()
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = md - m[:, :2] @ ms
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a cells x cells grid upsampled bicubically."""
    g = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _find_brow(grey: np.ndarray, eye: np.ndarray, iod: float, valid: np.ndarray) -> tuple[float, float]:
    """The brow above an eye: a dark valley 0.24-0.45 IOD above it, else the usual 0.33 IOD.

    Looks at the mean row profile of a band over the eye and takes its darkest row only when it is a
    true valley (not at either end of the window, where hair, hats or the eye itself would win).
    """
    default = (float(eye[0]), float(eye[1] - 0.33 * iod))
    x0, x1 = int(round(eye[0] - 0.2 * iod)), int(round(eye[0] + 0.2 * iod)) + 1
    y_lo, y_hi = int(round(eye[1] - 0.45 * iod)), int(round(eye[1] - 0.24 * iod)) + 1
    if x0 < 0 or y_lo < 2 or x1 > grey.shape[1] or y_hi <= y_lo + 4:
        return default
    if (valid[y_lo:y_hi, x0:x1] < 0.99).any():
        return default
    prof = grey[y_lo - 2:y_hi + 2, x0:x1].mean(1)
    prof = np.convolve(prof, np.ones(5) / 5, mode="valid")  # rows y_lo..y_hi-1
    k = int(np.argmin(prof))
    if k <= 1 or k >= len(prof) - 2:
        return default
    return float(eye[0]), float(y_lo + k)


def subject_identity(subject_index: int, seed: int, face_image: str | None = None) -> FaceIdentity:
    """Deterministic identity for ``subject_index`` in the set drawn with ``seed``.

    Subjects of one seed take the bundled faces in a seed-dependent order (the astronaut plus the
    curated lfw_subset faces), mirrored on every second pass through them, and each gets its own
    skin tone, brightness, slight aspect change and small smooth geometric warp. With ``face_image``
    (a path to a photo of one frontal face, read at run time, never copied) every subject is that
    face instead, mirrored for every second subject, with its own small rotation, scale, aspect,
    warp and tone. Identities are immutable, so recent ones are cached (building one takes ~20 ms).
    """
    subject_index = int(subject_index)
    if subject_index < 0:
        raise ValueError("subject_index must be >= 0")
    return _build_identity(subject_index, int(seed), str(face_image) if face_image else None)


@lru_cache(maxsize=4)
def _image_face(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A face photo as float32 RGB in [0, 1] and its five landmarks (YuNet), downscaled so that its
    eyes are about twice the canvas's inter-ocular distance apart (the canvas warp then interpolates
    well)."""
    from merflow.tasks.faces import FaceConfig, detect_face

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read the face image {path!r}: give a JPEG or PNG of one frontal face")
    box = detect_face(bgr, FaceConfig())
    if box.landmarks is None:
        raise ValueError(f"no face landmarks found in {path!r} (detector {box.detector}): give a frontal face")
    pts = np.array(box.landmarks, dtype=np.float64)
    shrink = min(1.0, 2 * CANONICAL_IOD / float(np.linalg.norm(pts[1] - pts[0])))
    if shrink < 1.0:
        bgr = cv2.resize(bgr, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        pts = pts * shrink
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return rgb, pts


@lru_cache(maxsize=64)
def _build_identity(subject_index: int, seed: int, face_image: str | None = None) -> FaceIdentity:
    bases = _bases()
    order = np.random.default_rng([seed % (2**63), 0x5EED]).permutation(len(bases))
    base = bases[int(order[subject_index % len(bases)])]
    mirror = (subject_index // len(bases)) % 2 == 1
    rng = np.random.default_rng([seed % (2**63), subject_index, 0xFACE])
    jitter = np.eye(3)
    if face_image:
        base, mirror = f"image:{face_image.replace(chr(92), '/').rsplit('/', 1)[-1]}", subject_index % 2 == 1
        # One face for every subject: each its own pose (rotation, scale) about the canvas centre.
        angle, zoom = np.deg2rad(rng.uniform(-4.0, 4.0)), float(rng.uniform(0.95, 1.05))
        c, s = zoom * np.cos(angle), zoom * np.sin(angle)
        jitter = np.array([[c, -s, _CX - c * _CX + s * _EYE_Y], [s, c, _EYE_Y - s * _CX - c * _EYE_Y], [0, 0, 1.0]])

    # --- source image (float32 RGB in [0,1]) and its five landmarks
    if face_image:
        src, pts = _image_face(face_image)
        is_grey = False
    elif base == "astronaut":
        src = _astronaut()
        pts = np.array(_ASTRONAUT_LANDMARKS, dtype=np.float64).reshape(5, 2)
        is_grey = False
    else:
        idx = int(base[len("lfw_subset["):-1])
        src = _lfw_faces()[idx]
        pts = np.array(_LFW_LANDMARKS[idx], dtype=np.float64).reshape(5, 2)
        is_grey = True
    h_src, w_src = src.shape[:2]
    if mirror:
        src = np.ascontiguousarray(src[:, ::-1])
        pts = pts.copy()
        pts[:, 0] = (w_src - 1) - pts[:, 0]
        pts = pts[[1, 0, 2, 4, 3]]

    # --- alignment: similarity onto the template, then a slight per-subject aspect change
    aspect = float(rng.uniform(0.93, 1.07))
    m = _similarity(pts, TEMPLATE)
    a = np.array([[aspect, 0.0, _CX * (1 - aspect)], [0.0, 1.0, 0.0], [0, 0, 1.0]])
    m = (a @ jitter @ np.vstack([m, [0, 0, 1]]))[:2]
    size = (CANVAS, CANVAS)
    if is_grey:
        # Smooth upscaling (bicubic) of the 25x25 tile, bordered by replication so the warp
        # never pulls in black; "valid" marks where the tile really has data.
        img = cv2.warpAffine(src, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.warpAffine(np.ones_like(src), m, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        # astronaut's face is about as large as the canvas wants it: bilinear is enough
        img = cv2.warpAffine(src, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        valid = np.ones(size, np.float32)
    lm5 = _apply(m, pts)

    # --- small smooth geometric warp (0.5-1.5 px), which moves the landmarks with it
    amp = float(rng.uniform(0.5, 1.5)) * (2.0 if face_image else 1.0)
    wx = _smooth_noise(rng, size, 4) * amp
    wy = _smooth_noise(rng, size, 4) * amp
    gy, gx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    img = cv2.remap(img, gx - wx, gy - wy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    valid = cv2.remap(valid, gx - wx, gy - wy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ix = np.clip(np.round(lm5).astype(int), 0, CANVAS - 1)
    lm5 = lm5 + np.stack([wx[ix[:, 1], ix[:, 0]], wy[ix[:, 1], ix[:, 0]]], 1)

    # --- tone: brightness/gamma, colour for the grey faces, fine skin texture
    gain = float(rng.uniform(0.88, 1.10))
    gamma = float(rng.uniform(0.85, 1.2))
    tint = _SKIN_TINTS[rng.integers(len(_SKIN_TINTS))] * rng.uniform(0.97, 1.03, 3)
    tint = tint / (tint @ _LUMA)
    if is_grey:
        lum = np.clip(img, 0.0, 1.0) ** gamma * gain
        # Saturation falls off in highlights and deep shadows, like skin under diffuse light.
        sat = 0.55 + 0.45 * np.sin(np.pi * np.clip(lum, 0, 1))
        rgb = lum[..., None] * (1.0 + (tint - 1.0) * sat[..., None])
        tex = cv2.GaussianBlur(rng.standard_normal(size).astype(np.float32), (0, 0), 0.7)
        rgb = rgb * (1.0 + 0.035 * tex[..., None])
    else:
        shift = 1.0 + (tint - 1.0) * 0.35  # a milder tone shift on an already coloured face
        rgb = (np.clip(img, 0.0, 1.0) ** gamma) * gain * shift
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)

    # --- where the face is: a soft oval, inside the tile's data
    iod = float(np.linalg.norm(lm5[1] - lm5[0]))
    eye_mid = (lm5[0] + lm5[1]) / 2
    mouth_mid = (lm5[3] + lm5[4]) / 2
    cx = float((eye_mid[0] + mouth_mid[0]) / 2)
    cy = float(eye_mid[1] + 0.42 * iod)
    ax, ay = 1.08 * iod, 1.42 * iod
    yy, xx = gy - cy, gx - cx
    r = np.sqrt((xx / ax) ** 2 + (yy / ay) ** 2)
    oval = np.clip((1.0 - r) / 0.12, 0.0, 1.0)
    inside = cv2.GaussianBlur(np.clip((valid - 0.98) / 0.02, 0, 1), (0, 0), 1.5)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8))
    mask = np.clip(oval * inside, 0.0, 1.0).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.2)

    grey = rgb @ _LUMA.astype(np.float32)
    left_brow = _find_brow(grey, lm5[0], iod, valid)
    right_brow = _find_brow(grey, lm5[1], iod, valid)
    landmarks = {
        "left_eye": (float(lm5[0, 0]), float(lm5[0, 1])),
        "right_eye": (float(lm5[1, 0]), float(lm5[1, 1])),
        "nose": (float(lm5[2, 0]), float(lm5[2, 1])),
        "mouth_left": (float(lm5[3, 0]), float(lm5[3, 1])),
        "mouth_right": (float(lm5[4, 0]), float(lm5[4, 1])),
        "left_brow": left_brow,
        "right_brow": right_brow,
        "mouth_center": (float(mouth_mid[0]), float(mouth_mid[1])),
    }
    top = float(eye_mid[1] - 0.9 * iod)
    bottom = float(mouth_mid[1] + 0.7 * iod)
    half_w = 0.5 * (bottom - top) * 0.85
    face_box = (cx - half_w, top, cx + half_w, bottom)

    sel = mask > 0.9
    skin = tuple(float(v) for v in (rgb[sel].mean(0) if sel.any() else rgb.reshape(-1, 3).mean(0)))
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.15)
    shirt = _SHIRTS[rng.integers(len(_SHIRTS))] * rng.uniform(0.85, 1.15)
    backdrop_l = rng.uniform(0.45, 0.85)
    backdrop = backdrop_l * (1.0 + rng.uniform(-0.06, 0.06, 3))

    rgb.setflags(write=False)
    mask.setflags(write=False)
    return FaceIdentity(
        face=rgb,
        landmarks=landmarks,
        expressiveness=float(rng.uniform(0.6, 1.4)),
        mask=mask,
        face_box=face_box,
        face_fraction=float(rng.uniform(0.47, 0.57)),
        skin_rgb=skin,
        hair_rgb=tuple(float(v) for v in np.clip(hair, 0, 1)),
        shirt_rgb=tuple(float(v) for v in np.clip(shirt, 0, 1)),
        backdrop_rgb=tuple(float(v) for v in np.clip(backdrop, 0, 1)),
        hair_shape=(float(rng.uniform(0.95, 1.12)), float(rng.uniform(0.95, 1.15))),
        scene_seed=int(rng.integers(2**31)),
        base=base + ("+mirror" if mirror else ""),
        subject_index=subject_index,
        seed=seed,
    )
