"""The motion features of a micro-expression sample: optical flow from onset to apex, optical strain,
the frame difference, and apex spotting.

One concern: turn small, already cropped face frames (uint8, RGB or grey) into float32 arrays that
describe how the face moved. Pure numpy / OpenCV; no detector, no resizing, no normalisation across
samples (that needs training-fold statistics and belongs to the caller).

Sign and units
--------------
Image axes: x grows to the right (columns), y grows downward (rows).

- Flow ``(u, v)`` is in pixels of the images given, from onset to apex: the content at ``(x, y)`` in
  the onset frame is found at ``(x + u, y + v)`` in the apex frame. ``u > 0`` is motion to the right,
  ``v > 0`` is motion DOWN, so a brow raise gives ``v < 0``. Magnitude is ``sqrt(u^2 + v^2)`` in pixels.
- Strain is dimensionless (pixels of displacement per pixel of distance), see :func:`optical_strain`.
- The frame difference is ``apex - onset`` after mapping each frame to [-1, 1] (``x / 127.5 - 1``),
  so it lies in [-2, 2] and is positive where the apex is brighter.

Every call is independent of global state: the DIS and TV-L1 solvers are created per call (a few
microseconds, against a fraction of a millisecond or more for the flow itself), so nothing is shared
between threads. OpenCV's own thread count (``cv2.setNumThreads``) is left to the caller.
"""

from __future__ import annotations

import cv2
import numpy as np

from merflow.configs.features import DIS_PRESET_NAMES, FLOW_ALGORITHMS, MotionConfig

__all__ = [
    "DIS_PRESETS",
    "FLOW_ALGORITHMS",
    "MotionConfig",
    "flow_channels",
    "frame_difference",
    "optical_flow",
    "optical_strain",
    "spot_apex",
    "to_grey",
]

# The names MotionConfig.dis_preset accepts (configs/features.py), as OpenCV's constants.
DIS_PRESETS = dict(zip(DIS_PRESET_NAMES, (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, cv2.DISOPTICAL_FLOW_PRESET_FAST,
                                          cv2.DISOPTICAL_FLOW_PRESET_MEDIUM), strict=True))


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 grey (H, W) from uint8 RGB (H, W, 3) or grey (H, W)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def _grey_pair(onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    onset_grey, apex_grey = to_grey(onset), to_grey(apex)
    if onset_grey.shape != apex_grey.shape:
        raise ValueError(f"onset and apex differ in size: {onset_grey.shape} vs {apex_grey.shape}")
    return onset_grey, apex_grey


def optical_flow(onset: np.ndarray, apex: np.ndarray, config: MotionConfig = MotionConfig()) -> np.ndarray:
    """Dense flow from ``onset`` to ``apex``: float32 (H, W, 2) holding (u, v) in pixels.

    The content at (x, y) in ``onset`` is found at (x + u, y + v) in ``apex``; v > 0 is downward.
    Both frames are converted to grey first (as in Meta-MMFNet's code).
    """
    first, second = _grey_pair(onset, apex)
    if config.algorithm == "farneback":
        flow = cv2.calcOpticalFlowFarneback(first, second, None, *config.farneback)
    elif config.algorithm == "tvl1":
        solver = cv2.optflow.DualTVL1OpticalFlow_create(
            tau=config.tvl1_tau, lambda_=config.tvl1_lambda, theta=config.tvl1_theta,
            nscales=config.tvl1_scales, warps=config.tvl1_warps)
        flow = solver.calc(first, second, None)
    else:
        flow = cv2.DISOpticalFlow_create(DIS_PRESETS[config.dis_preset]).calc(first, second, None)
    return flow.astype(np.float32, copy=False)


def _check_flow(flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"expected a flow of shape (H, W, 2), got {flow.shape}")
    return flow


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Magnitude of the optical strain of ``flow`` (H, W, 2): float32 (H, W), dimensionless.

    The strain tensor is eps = 0.5 (grad u + grad u^T) with u = (u, v), i.e.
    e_xx = du/dx, e_yy = dv/dy, e_xy = e_yx = 0.5 (du/dy + dv/dx), and its magnitude is the
    Frobenius norm sqrt(e_xx^2 + e_yy^2 + e_xy^2 + e_yx^2) = sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2),
    which is STSTNet's form. Derivatives are central differences (np.gradient: one-sided at the
    border), per pixel of distance. A translation has zero strain; u = k x has strain |k|.
    """
    flow = _check_flow(flow)
    u, v = flow[..., 0], flow[..., 1]
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx * du_dx + dv_dy * dv_dy + 2.0 * shear * shear).astype(np.float32, copy=False)


def flow_channels(flow: np.ndarray) -> np.ndarray:
    """float32 (4, H, W): u, v, magnitude, strain of ``flow`` (H, W, 2), channel-first."""
    flow = _check_flow(flow)
    u, v = flow[..., 0], flow[..., 1]
    return np.stack([u, v, np.hypot(u, v), optical_strain(flow)]).astype(np.float32, copy=False)


def _to_unit_range(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return image.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def frame_difference(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """float32 (3, H, W) in [-2, 2]: apex - onset, each mapped to [-1, 1] first; grey is replicated."""
    first, second = _to_unit_range(onset), _to_unit_range(apex)
    if first.shape != second.shape:
        raise ValueError(f"onset and apex differ in size: {first.shape[:2]} vs {second.shape[:2]}")
    return np.ascontiguousarray((second - first).transpose(2, 0, 1))


def spot_apex(frames: np.ndarray | list, config: MotionConfig = MotionConfig()) -> tuple[int, np.ndarray]:
    """The apex of a sample: (index of the frame that moved most from frames[0], motion curve).

    ``frames`` run from onset to offset (uint8, RGB or grey, cropped and small). The raw motion of
    frame t is the mean flow magnitude (``config.spot_algorithm``) from frames[0] to frames[t]
    (0 for t = 0), taken inside the crop (``config.spot_border`` of each side left out) and after
    subtracting that flow's median. Both are against head drift, which grows through a clip and
    would otherwise pull the pick towards the offset: the border holds the face outline against a
    still background, and the median is the head's own shift. (On synthetic clips with blinks,
    drift, noise and flicker this finds the apex within 2 frames in 24 of 32 clips, against 16 of
    32 without either.) The returned curve (float32, one value per frame) is that motion smoothed with
    a [1, 2, 1] / 4 kernel over time, edges replicated, so that a single frame of noise or flicker
    cannot become the apex; the index is its argmax over t >= 1, or 0 for a single frame.
    """
    if len(frames) == 0:
        raise ValueError("spot_apex needs at least one frame")
    flow_config = config.replace(algorithm=config.spot_algorithm)
    reference = to_grey(frames[0])
    height, width = reference.shape
    dy, dx = int(height * config.spot_border), int(width * config.spot_border)
    inner = (slice(dy, height - dy), slice(dx, width - dx))
    motion = np.zeros(len(frames), np.float64)
    for t in range(1, len(frames)):
        flow = optical_flow(reference, to_grey(frames[t]), flow_config)[inner]
        flow = flow - np.median(flow.reshape(-1, 2), axis=0)
        motion[t] = np.hypot(flow[..., 0], flow[..., 1]).mean()
    padded = np.concatenate([motion[:1], motion, motion[-1:]])
    curve = (0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]).astype(np.float32)
    if len(frames) == 1:
        return 0, curve
    return 1 + int(np.argmax(curve[1:])), curve
