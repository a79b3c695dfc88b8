"""Rendering a clip of a synthetic face performing a facial expression.

One concern: given a :class:`~merflow.tasks.synthetic.faces.FaceIdentity`, stage the face in a frame
(backdrop, hair, neck, shoulders) and move it with action-unit-like local displacement fields
(smooth Gaussian bumps anchored on the landmarks, applied with ``cv2.remap``) following a micro-
(onset -> apex -> offset) or macro- (neutral -> peak, CK+ style) expression time course, plus the
nuisances of real recordings: blinks, slow head drift, sensor noise and illumination flicker.

Scale: displacements are given for a "128 px face" (the face box a detector draws, ~2.6 inter-ocular
distances high) and scale with the face's size in the frame. A micro-expression peaks at
``2 px * expressiveness * intensity`` (capped at 2.5 px); a macro-expression at 3.5 times that.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import cv2
import numpy as np

from .faces import CANVAS, FACE_HEIGHT, FaceIdentity

__all__ = [
    "EMOTION_AUS",
    "MICRO_PEAK_PX",
    "MICRO_PEAK_CAP_PX",
    "MACRO_FACTOR",
    "expression_field",
    "peak_displacement",
    "render_clip",
    "temporal_profile",
]

# Emotion -> FACS action units as the annotation sheets write them.
EMOTION_AUS: dict[str, str] = {
    "surprise": "1+2",
    "happiness": "6+12",
    "disgust": "9+10",
    "repression": "14+17",
    "sadness": "1+4+15",
    "fear": "1+2+4+20",
    "anger": "4+7",
    "contempt": "R14",
    "tense": "4",
    "others": "4",
    "pain": "4+6+9",
    "helpless": "1+15",
    "positive": "12",
    "negative": "4+7",
    "neutral": "",
}

MICRO_PEAK_PX = 2.0  # peak displacement at a 128 px face, expressiveness * intensity == 1
MICRO_PEAK_CAP_PX = 2.5  # cap on MICRO_PEAK_PX * expressiveness * intensity
MACRO_FACTOR = 3.5
_REF_FACE_PX = 128.0
# Standard normal quantiles at the centres of 256 equal-probability bins (noise from raw bytes).
_GAUSS_Q = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)
_GAUSS_Q /= _GAUSS_Q.std()

# --------------------------------------------------------------------------------------------
# Action units as displacement fields.
# A handle is (anchor, offset in IOD units (dx, dy), sigma in IOD units (sx, sy), direction (dx, dy)
# in units of the peak, mirrored for the right side where the anchor names a side).
# Image axes: x to the right, y downwards, so "up" is dy < 0. "left" is the image's left.
# --------------------------------------------------------------------------------------------
_Handle = tuple[str, tuple[float, float], tuple[float, float], tuple[float, float]]


def _bilateral(anchor_l: str, anchor_r: str, off, sig, d) -> list[_Handle]:
    """A handle on the image-left anchor and its mirror image on the right one."""
    return [
        (anchor_l, off, sig, d),
        (anchor_r, (-off[0], off[1]), sig, (-d[0], d[1])),
    ]


# For the left side of the image, "towards the midline" is +x.
_AU: dict[str, list[_Handle]] = {
    # inner brow raiser: inner ends of the brows up
    "1": _bilateral("left_brow", "right_brow", (0.16, 0.0), (0.20, 0.16), (0.0, -1.0)),
    # outer brow raiser: outer ends up
    "2": _bilateral("left_brow", "right_brow", (-0.20, 0.0), (0.20, 0.16), (0.0, -1.0)),
    # brow lowerer: brows down and drawn together
    "4": _bilateral("left_brow", "right_brow", (0.10, 0.02), (0.24, 0.16), (0.45, 0.9)),
    # upper lid raiser
    "5": _bilateral("left_eye", "right_eye", (0.0, -0.12), (0.16, 0.07), (0.0, -1.0)),
    # cheek raiser: cheeks and lower-lid skin up
    "6": _bilateral("left_eye", "right_eye", (-0.05, 0.45), (0.26, 0.20), (0.0, -1.0))
    + _bilateral("left_eye", "right_eye", (0.0, 0.16), (0.20, 0.08), (0.0, -0.5)),
    # lid tightener: lower lid up, upper lid a little down
    "7": _bilateral("left_eye", "right_eye", (0.0, 0.12), (0.20, 0.07), (0.0, -1.0))
    + _bilateral("left_eye", "right_eye", (0.0, -0.11), (0.18, 0.06), (0.0, 0.45)),
    # nose wrinkler: skin at the sides of the nose up, nasal root down
    "9": _bilateral("nose", "nose", (-0.18, -0.12), (0.12, 0.16), (0.1, -1.0))
    + [("nose", (0.0, -0.45), (0.14, 0.12), (0.0, 0.5))],
    # upper lip raiser
    "10": [("mouth_center", (0.0, -0.12), (0.30, 0.10), (0.0, -1.0))],
    # lip corner puller: corners up and out
    "12": _bilateral("mouth_left", "mouth_right", (0.0, 0.0), (0.16, 0.14), (-0.6, -0.8)),
    # dimpler: corners tightened inwards
    "14": _bilateral("mouth_left", "mouth_right", (0.02, 0.0), (0.13, 0.12), (0.85, -0.2)),
    # lip corner depressor
    "15": _bilateral("mouth_left", "mouth_right", (0.0, 0.03), (0.15, 0.14), (-0.15, 1.0)),
    # chin raiser: chin boss and lower lip up
    "17": [("mouth_center", (0.0, 0.5), (0.30, 0.20), (0.0, -1.0)),
           ("mouth_center", (0.0, 0.13), (0.26, 0.08), (0.0, -0.6))],
    # lip stretcher: corners pulled out sideways
    "20": _bilateral("mouth_left", "mouth_right", (0.0, 0.0), (0.15, 0.13), (-1.0, 0.15)),
    # lip pressor: lips pressed together
    "24": [("mouth_center", (0.0, -0.09), (0.28, 0.06), (0.0, 0.7)),
           ("mouth_center", (0.0, 0.10), (0.28, 0.06), (0.0, -0.7))],
    # jaw drop: the lower lip and chin down, the mouth opening as in speech (tasks/synthetic/long_videos.py's
    # talking face; no emotion's recipe uses it)
    "26": [("mouth_center", (0.0, 0.45), (0.42, 0.32), (0.0, 1.0)),
           ("mouth_center", (0.0, 0.1), (0.3, 0.08), (0.0, 0.7))],
    # unilateral dimpler on the subject's right (the image's left): one corner up and in
    "R14": [("mouth_left", (0.02, 0.0), (0.14, 0.13), (0.7, -0.7))],
    # eye movement (gaze shift to the image's right); the 'others' class often is one
    "EM": [("left_eye", (0.0, 0.0), (0.09, 0.06), (1.0, 0.0)),
           ("right_eye", (0.0, 0.0), (0.09, 0.06), (1.0, 0.0))],
}
# Mirror image of EM: gaze to the left.
_AU["EM-"] = [(a, o, s, (-d[0], d[1])) for a, o, s, d in _AU["EM"]]

# Emotion -> weighted action units that are rendered.
_RECIPES: dict[str, list[tuple[str, float]]] = {
    "surprise": [("1", 1.0), ("2", 1.0), ("5", 0.3)],
    "happiness": [("12", 1.0), ("6", 0.7)],
    "disgust": [("9", 1.0), ("10", 0.9), ("4", 0.25)],
    "repression": [("14", 0.6), ("17", 1.0), ("24", 0.5)],
    "sadness": [("1", 1.0), ("4", 0.45), ("15", 0.9)],
    "fear": [("1", 1.0), ("2", 0.6), ("4", 0.5), ("20", 0.9), ("5", 0.3)],
    "anger": [("4", 1.0), ("7", 0.8)],
    "contempt": [("R14", 1.0)],
    "tense": [("4", 0.6)],
    "pain": [("4", 1.0), ("6", 0.8), ("9", 0.8), ("7", 0.5)],
    "helpless": [("1", 1.0), ("15", 1.0)],
    "positive": [("12", 1.0), ("6", 0.5)],
    "neutral": [],
}
# Classes whose action units are drawn from rng for each clip.
_RANDOM_RECIPES: dict[str, list[list[tuple[str, float]]]] = {
    "others": [
        [("EM", 0.8)],
        [("EM-", 0.8)],
        [("4", 0.6)],
        [("17", 0.8)],
        [("1", 0.6)],
        [("24", 0.8)],
    ],
    "negative": [
        [("4", 1.0), ("7", 0.8)],
        [("9", 1.0), ("10", 0.9), ("4", 0.25)],
    ],
}
_KNOWN = tuple(EMOTION_AUS)


def _recipe(emotion: str, rng: np.random.Generator) -> list[tuple[str, float]]:
    if emotion in _RANDOM_RECIPES:
        options = _RANDOM_RECIPES[emotion]
        return options[int(rng.integers(len(options)))]
    return _RECIPES[emotion]


def _check_emotion(emotion: str) -> None:
    if emotion not in EMOTION_AUS:
        raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(_KNOWN)}")


def expression_field(
    landmarks: dict[str, tuple[float, float]],
    recipe: list[tuple[str, float]],
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement field (dx, dy), float32 arrays of ``shape``, for weighted action units.

    Landmarks are in the pixels of ``shape``. The field is normalised so that its largest
    displacement is the largest weight in ``recipe`` (at most 1; all zeros for an empty recipe):
    weights set both the units' relative sizes and how strong a weak class (tense, others) is.
    Content at p moves to p + (dx, dy).
    """
    h, w = shape
    dx = np.zeros((h, w), np.float32)
    dy = np.zeros((h, w), np.float32)
    if not recipe:
        return dx, dy
    (lx, ly), (rx, ry) = landmarks["left_eye"], landmarks["right_eye"]
    iod = float(np.hypot(rx - lx, ry - ly))
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    for au, weight in recipe:
        for anchor, off, sig, d in _AU[au]:
            ax, ay = landmarks[anchor]
            cx, cy = ax + off[0] * iod, ay + off[1] * iod
            sx, sy = sig[0] * iod, sig[1] * iod
            # Separable Gaussian bump, evaluated only where it is not negligible.
            x0, x1 = max(int(cx - 3.5 * sx), 0), min(int(cx + 3.5 * sx) + 2, w)
            y0, y1 = max(int(cy - 3.5 * sy), 0), min(int(cy + 3.5 * sy) + 2, h)
            if x0 >= x1 or y0 >= y1:
                continue
            gx = np.exp(-0.5 * ((xs[x0:x1] - cx) / sx) ** 2)
            gy = np.exp(-0.5 * ((ys[y0:y1] - cy) / sy) ** 2)
            bump = np.outer(gy, gx).astype(np.float32) * np.float32(weight)
            dx[y0:y1, x0:x1] += bump * np.float32(d[0])
            dy[y0:y1, x0:x1] += bump * np.float32(d[1])
    peak = float(np.sqrt(dx * dx + dy * dy).max())
    if peak > 0:
        target = min(max(weight for _, weight in recipe), 1.0)
        dx *= np.float32(target / peak)
        dy *= np.float32(target / peak)
    return dx, dy


def peak_displacement(face_px: float, expressiveness: float, intensity: float = 1.0,
                      macro: bool = False) -> float:
    """Peak displacement in pixels for a face ``face_px`` high in the frame."""
    micro = min(MICRO_PEAK_PX * max(expressiveness, 0.0) * max(intensity, 0.0), MICRO_PEAK_CAP_PX)
    return micro * (MACRO_FACTOR if macro else 1.0) * face_px / _REF_FACE_PX


def temporal_profile(n_frames: int, onset: int, apex: int, offset: int,
                     macro: bool = False) -> np.ndarray:
    """Expression strength per frame in [0, 1].

    Micro: 0 up to onset, raised-cosine rise to 1 at apex, raised-cosine fall to 0 at offset, 0 after.
    Macro: 0 up to onset, raised-cosine rise to 1 at apex, held at 1 after it.
    """
    t = np.arange(n_frames, dtype=np.float64)
    p = np.zeros(n_frames)
    if apex > onset:
        rise = (t > onset) & (t <= apex)
        p[rise] = 0.5 * (1 - np.cos(np.pi * (t[rise] - onset) / (apex - onset)))
    p[apex] = 1.0
    if macro:
        p[apex:] = 1.0
    elif offset > apex:
        fall = (t > apex) & (t <= offset)
        p[fall] = 0.5 * (1 + np.cos(np.pi * (t[fall] - apex) / (offset - apex)))
    return p


# --------------------------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------------------------
@dataclass
class _Stage:
    base: np.ndarray  # float32 (H, W, 3) RGB in 0..255, the still frame
    landmarks: dict[str, tuple[float, float]]  # in frame pixels
    face_px: float  # face box height in the frame
    person: np.ndarray  # float32 (H, W) in [0, 1], what moves with the head


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(mask, (0, 0), max(sigma, 0.3))


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise with a discretised Gaussian distribution.

    Raw generator bits mapped through Gaussian quantiles: about 25 times faster than
    ``rng.standard_normal`` at frame sizes, and just as deterministic.
    """
    n = int(np.prod(shape))
    raw = rng.bit_generator.random_raw((n + 7) // 8).view(np.uint8)[:n].reshape(shape)
    return cv2.LUT(raw, _GAUSS_Q)


def _texture(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean texture: fine grain plus blotches ``scale`` pixels across."""
    h, w = shape
    fine = cv2.GaussianBlur(_unit_noise(rng, (h, w)), (0, 0), 0.8)
    ch, cw = max(h // max(int(scale), 1), 2), max(w // max(int(scale), 1), 2)
    coarse = cv2.resize(rng.standard_normal((ch, cw)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    return 0.6 * fine + 0.4 * coarse


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx.setflags(write=False)
    gy.setflags(write=False)
    return gx, gy


@lru_cache(maxsize=4)
def _backdrop(scene_seed: int, rgb: tuple[float, float, float], h: int, w: int):
    """A subject's backdrop (float32 RGB 0..255) and the texture for the person's layers.

    Shared by all the subject's clips at one frame size, like a fixed recording room.
    """
    scene = np.random.default_rng([scene_seed, h, w])
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    grad = 1.0 + 0.06 * scene.uniform(-1, 1) * xx + 0.05 * scene.uniform(-1, 1) * yy \
        - 0.06 * (xx * xx + yy * yy)
    tex = _texture(scene, (h, w), max(h / 8, 2))
    back = (np.asarray(rgb, np.float32) * 255.0)[None, None, :] * (grad + 0.025 * tex)[..., None]
    person_tex = _texture(scene, (h, w), max(h / 20, 2))
    back.setflags(write=False)
    person_tex.setflags(write=False)
    return back, person_tex


def _paint(img: np.ndarray, person: np.ndarray, tex: np.ndarray, box: tuple[float, float, float, float],
           draw, colour, texture: float, sigma: float) -> None:
    """Alpha-blend a soft-edged shape, drawn by ``draw(mask, dx, dy)``, inside its box only."""
    h, w = person.shape
    pad = int(np.ceil(3 * sigma)) + 2
    x0, y0 = max(int(box[0]) - pad, 0), max(int(box[1]) - pad, 0)
    x1, y1 = min(int(np.ceil(box[2])) + pad, w), min(int(np.ceil(box[3])) + pad, h)
    if x1 <= x0 or y1 <= y0:
        return
    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    draw(m, x0, y0)
    alpha = _soft(m, sigma)
    paint = (np.asarray(colour, np.float32) * 255.0)[None, None, :] \
        * (1.0 + texture * tex[y0:y1, x0:x1])[..., None]
    a3 = alpha[..., None]
    img[y0:y1, x0:x1] += a3 * (paint - img[y0:y1, x0:x1])
    np.maximum(person[y0:y1, x0:x1], alpha, out=person[y0:y1, x0:x1])


def _stage(identity: FaceIdentity, frame_size: tuple[int, int], rng: np.random.Generator) -> _Stage:
    h, w = frame_size
    # Where the face goes: its box about face_fraction of the frame high, roughly centred.
    frac = identity.face_fraction * float(rng.uniform(0.97, 1.03))
    face_px = frac * h
    s = face_px / FACE_HEIGHT  # canvas -> frame
    size = max(int(round(CANVAS * s)), 8)
    s = size / CANVAS
    bx0, by0, bx1, by1 = identity.face_box
    fcx, fcy = (bx0 + bx1) / 2 * s, (by0 + by1) / 2 * s  # face centre inside the scaled canvas
    cx = w * (0.5 + float(rng.uniform(-0.04, 0.04)))
    cy = h * (0.49 + float(rng.uniform(-0.025, 0.025)))
    ox, oy = int(round(cx - fcx)), int(round(cy - fcy))
    fw = face_px * 0.85  # face width

    back, tex = _backdrop(identity.scene_seed, tuple(identity.backdrop_rgb), h, w)
    img = back.copy()
    person = np.zeros((h, w), np.float32)
    chin = cy + 0.5 * face_px
    aa = cv2.LINE_AA

    def ellipse(ecx, ecy, ax, ay):
        return lambda m, dx, dy: cv2.ellipse(
            m, (int(round(ecx - dx)), int(round(ecy - dy))), (max(int(ax), 1), max(int(ay), 1)),
            0, 0, 360, 1.0, -1, aa)

    # shoulders
    ecx, ecy, ax, ay = cx, chin + 0.62 * face_px, 1.15 * face_px, 0.5 * face_px
    _paint(img, person, tex, (ecx - ax, ecy - ay, ecx + ax, ecy + ay), ellipse(ecx, ecy, ax, ay),
           identity.shirt_rgb, 0.04, 1.0)
    # hair: an oval behind and above the face, down to about the mouth
    hw, hh = identity.hair_shape
    ecx, ecy, ax, ay = cx, cy - 0.16 * face_px, 0.62 * fw * hw, 0.55 * face_px * hh
    _paint(img, person, tex, (ecx - ax, ecy - ay, ecx + ax, ecy + ay), ellipse(ecx, ecy, ax, ay),
           identity.hair_rgb, 0.15, 0.015 * face_px)
    # neck, in front of the hair's lower edge
    nw = 0.25 * face_px
    nx0, ny0, nx1, ny1 = cx - nw, chin - 0.35 * face_px, cx + nw, chin + 0.3 * face_px
    _paint(img, person, tex, (nx0, ny0, nx1, ny1),
           lambda m, dx, dy: cv2.rectangle(m, (int(nx0 - dx), int(ny0 - dy)), (int(nx1 - dx), int(ny1 - dy)),
                                           1.0, -1, aa),
           tuple(np.asarray(identity.skin_rgb) * 0.78), 0.03, 0.015 * face_px)

    # The face itself.
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    face = cv2.resize(np.asarray(identity.face), (size, size), interpolation=interp) * np.float32(255.0)
    fmask = cv2.resize(np.asarray(identity.mask), (size, size), interpolation=cv2.INTER_LINEAR)
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + size, w), min(oy + size, h)
    if x1 > x0 and y1 > y0:
        fa = np.clip(fmask[y0 - oy:y1 - oy, x0 - ox:x1 - ox], 0, 1)
        img[y0:y1, x0:x1] += fa[..., None] * (face[y0 - oy:y1 - oy, x0 - ox:x1 - ox] - img[y0:y1, x0:x1])
        np.maximum(person[y0:y1, x0:x1], fa, out=person[y0:y1, x0:x1])
    landmarks = {k: (x * s + ox, y * s + oy) for k, (x, y) in identity.landmarks.items()}
    np.clip(img, 0, 255, out=img)
    return _Stage(img, landmarks, face_px, person)


def _blink_field(landmarks: dict[str, tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Vertical displacement (content moves down) that slides the upper lids over the eyes at 1.

    Per eye: zero at the brow, a raised-cosine ramp down to the upper lid (long enough that the
    mapping never folds), flat over the eye, a quick fall below it; a flat-topped window across.
    """
    h, w = shape
    (lx, ly), (rx, ry) = landmarks["left_eye"], landmarks["right_eye"]
    iod = float(np.hypot(rx - lx, ry - ly))
    dy = np.zeros((h, w), np.float32)
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    for eye, brow in (("left_eye", "left_brow"), ("right_eye", "right_brow")):
        ex, ey = landmarks[eye]
        brow_t = (landmarks[brow][1] - ey) / iod
        a = min(brow_t + 0.04, -0.28)  # ramp starts just under the brow...
        b = a + 0.27  # ...and reaches the lid
        c, d = 0.07, 0.15
        close = min(0.15, (b - a) / 1.65)  # lid travel (IOD); the ramp's slope stays below 1
        u = np.abs(xs - ex) / iod
        wx = np.where(u <= 0.2, 1.0, np.where(u < 0.38, 0.5 * (1 + np.cos(np.pi * (u - 0.2) / 0.18)), 0.0))
        t = (ys - ey) / iod
        wy = np.zeros_like(t)
        r = (t > a) & (t < b)
        wy[r] = 0.5 * (1 - np.cos(np.pi * (t[r] - a) / (b - a)))
        wy[(t >= b) & (t <= c)] = 1.0
        f = (t > c) & (t < d)
        wy[f] = 0.5 * (1 + np.cos(np.pi * (t[f] - c) / (d - c)))
        dy += np.outer(wy, wx).astype(np.float32) * np.float32(close * iod)
    return dy


def render_clip(
    identity: FaceIdentity,
    emotion: str,
    n_frames: int,
    onset: int,
    apex: int,
    offset: int,
    frame_size: tuple[int, int],
    colour: bool,
    rng: np.random.Generator,
    macro: bool = False,
    intensity: float = 1.0,
    *,
    distractors: bool = True,
    info: dict | None = None,
) -> np.ndarray:
    """A clip of ``identity`` performing ``emotion``.

    Returns uint8 (n_frames, H, W, 3) RGB when ``colour``, else (n_frames, H, W); ``frame_size`` is
    (H, W). ``onset <= apex <= offset`` are 0-based frame indices; for macro clips the expression
    rises from onset (normally 0) to apex (normally the last frame) and holds. ``distractors=False``
    turns off blinks, head drift, noise and flicker (for tests). Deterministic given ``rng``'s state.

    If ``info`` is a dict it is filled with what was rendered: ``landmarks`` (frame pixels),
    ``face_px`` (face box height in the frame), ``aus`` (the action units and weights used),
    ``peak_px`` (peak displacement at apex), ``profile`` (expression strength per frame, 0..1),
    ``blink`` (lid closure per frame, 0..1), ``drift`` ((n_frames, 2) head offset in pixels),
    ``noise_sigma`` and ``gains``.
    """
    _check_emotion(emotion)
    n_frames, onset, apex, offset = int(n_frames), int(onset), int(apex), int(offset)
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    if not 0 <= onset <= apex <= offset <= n_frames - 1:
        raise ValueError(
            f"need 0 <= onset <= apex <= offset <= n_frames - 1, got {onset}, {apex}, {offset}, {n_frames}"
        )
    h, w = int(frame_size[0]), int(frame_size[1])
    if h < 16 or w < 16:
        raise ValueError(f"frame_size too small: {frame_size}")

    stage = _stage(identity, (h, w), rng)
    lm = stage.landmarks
    recipe = _recipe(emotion, rng)
    fx, fy = expression_field(lm, recipe, (h, w))
    peak = peak_displacement(stage.face_px, identity.expressiveness, intensity, macro)
    profile = temporal_profile(n_frames, onset, apex, offset, macro)
    prof = profile * peak
    scale = stage.face_px / _REF_FACE_PX

    # Nuisances, all drawn from rng (the draws happen whether or not they are used).
    blink = np.zeros(n_frames)
    if rng.random() < 0.35 and n_frames >= 4:
        length = int(rng.integers(2, 5))
        starts = [s for s in range(0, n_frames - length + 1)
                  if not (s <= apex < s + length) and not (s <= onset < s + length)]
        if starts:
            s0 = starts[int(rng.integers(len(starts)))]
            blink[s0:s0 + length] = np.sin(np.pi * np.arange(1, length + 1) / (length + 1))
    steps = rng.standard_normal((n_frames, 2))
    walk = np.cumsum(np.cumsum(steps, 0), 0)  # integrated random walk: smooth
    walk -= walk[0]
    span = np.abs(walk).max()
    drift_amp = float(rng.uniform(0.2, 1.0)) * scale
    drift = walk / span * drift_amp if span > 0 else walk
    noise_sigma = float(rng.uniform(1.0, 2.0))
    gains = 1.0 + np.clip(rng.normal(0.0, float(rng.uniform(0.005, 0.01)), n_frames), -0.02, 0.02)
    if not distractors:
        blink[:] = 0.0
        drift[:] = 0.0
        noise_sigma = 0.0
        gains[:] = 1.0

    if info is not None:
        info.update(
            landmarks=dict(lm), face_px=stage.face_px, aus=list(recipe), peak_px=peak,
            profile=profile,
            blink=blink.copy(), drift=drift.copy(), noise_sigma=noise_sigma, gains=gains.copy(),
        )
    base = stage.base if colour else cv2.cvtColor(stage.base, cv2.COLOR_RGB2GRAY)
    base = (base + np.float32(0.5)).astype(np.uint8)  # stage.base is already clipped to 0..255
    gx, gy = _grid(h, w)
    bdy = _blink_field(lm, (h, w)) if blink.any() else None
    person = stage.person
    out = np.empty((n_frames, h, w, 3) if colour else (n_frames, h, w), np.uint8)
    nshape = (h, w, 3) if colour else (h, w)
    for t in range(n_frames):
        a = np.float32(prof[t])
        mx = gx - a * fx
        my = gy - a * fy
        if drift[t, 0] or drift[t, 1]:
            mx -= np.float32(drift[t, 0]) * person
            my -= np.float32(drift[t, 1]) * person
        if blink[t] > 0:
            my -= np.float32(blink[t]) * bdy
        frame = cv2.remap(base, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if noise_sigma > 0:
            # saturate(round(gain * frame + sigma * noise)), straight into the output
            cv2.addWeighted(frame, float(gains[t]), _unit_noise(rng, nshape), noise_sigma, 0.0,
                            dst=out[t], dtype=cv2.CV_8U)
        else:
            out[t] = cv2.convertScaleAbs(frame, alpha=float(gains[t]))
    return out
