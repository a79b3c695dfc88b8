"""Tests for the motion features (tasks/motion.py): flow sign and units on known motion, strain,
frame difference, flow channels, apex spotting and the config's validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from merflow.tasks.motion import (
    FLOW_ALGORITHMS,
    MotionConfig,
    flow_channels,
    frame_difference,
    optical_flow,
    optical_strain,
    spot_apex,
    to_grey,
)
from merflow.tasks.synthetic.expressions import render_clip
from merflow.tasks.synthetic.faces import subject_identity

# Median error allowed on a known sub-pixel motion; DIS matches patches, so it is a little coarser.
TOLERANCE_PX = {"farneback": 0.1, "tvl1": 0.1, "dis": 0.15}
MARGIN = 10  # pixels left out at the border, where every algorithm sees content leave the frame


def _texture(size: int, seed: int = 0) -> np.ndarray:
    """float32 smoothed noise around 128: texture at every scale a flow algorithm looks at."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.5)
    coarse = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 5.0)
    return 128 + 35 * fine / fine.std() + 15 * coarse / coarse.std()


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` with its content moved by (dx, dy) pixels (dy > 0 is down), sub-pixel exact."""
    h, w = image.shape[:2]
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _interior(array: np.ndarray) -> np.ndarray:
    return array[MARGIN:-MARGIN, MARGIN:-MARGIN]


# --------------------------------------------------------------------------------------------
# optical_flow
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [80, 128])
@pytest.mark.parametrize("algorithm", FLOW_ALGORITHMS)
def test_flow_sign_and_units_on_a_known_translation(algorithm, size):
    texture = _texture(size)
    onset, apex = _uint8(texture), _uint8(_shifted(texture, 1.0, -1.5))  # right 1 px, up 1.5 px
    flow = optical_flow(onset, apex, MotionConfig(algorithm=algorithm))
    assert flow.shape == (size, size, 2) and flow.dtype == np.float32
    u, v = np.median(_interior(flow[..., 0])), np.median(_interior(flow[..., 1]))
    tolerance = TOLERANCE_PX[algorithm]
    assert u == pytest.approx(1.0, abs=tolerance)
    assert v == pytest.approx(-1.5, abs=tolerance)
    magnitude = np.median(_interior(flow_channels(flow)[2]))
    assert magnitude == pytest.approx(np.hypot(1.0, 1.5), abs=tolerance)


@pytest.mark.parametrize("algorithm", FLOW_ALGORITHMS)
def test_flow_of_brows_raised_is_negative_above_and_still_below(algorithm):
    size = 96
    texture = _texture(size, seed=1)
    # The upper third moves up 1.5 px; the motion fades out smoothly by mid-height.
    rows = np.arange(size, dtype=np.float32)
    fade = np.clip((rows - size / 3) / (size / 2 - size / 3), 0, 1)
    lift = -1.5 * 0.5 * (1 + np.cos(np.pi * fade))
    grid_x, grid_y = np.meshgrid(np.arange(size, dtype=np.float32), rows)
    raised = cv2.remap(texture, grid_x, grid_y - lift[:, None], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    flow = optical_flow(_uint8(texture), _uint8(raised), MotionConfig(algorithm=algorithm))
    columns = slice(MARGIN, size - MARGIN)
    upper = flow[MARGIN:size // 3 - 4, columns]
    lower = flow[int(0.6 * size):size - MARGIN, columns]
    assert np.median(upper[..., 1]) < -1.0
    assert abs(np.median(lower[..., 1])) < 0.15
    assert abs(np.median(lower[..., 0])) < 0.15


@pytest.mark.parametrize("algorithm", FLOW_ALGORITHMS)
def test_flow_between_identical_frames_is_zero_and_colour_reduces_to_grey(algorithm):
    grey = _uint8(_texture(80, seed=2))
    config = MotionConfig(algorithm=algorithm)
    assert np.abs(_interior(optical_flow(grey, grey, config))).max() < 0.01
    moved = _uint8(_shifted(grey.astype(np.float32), 0.7, 0.4))
    rgb_onset, rgb_apex = (np.repeat(image[..., None], 3, axis=2) for image in (grey, moved))
    np.testing.assert_array_equal(optical_flow(rgb_onset, rgb_apex, config), optical_flow(grey, moved, config))


def test_flow_parameters_are_used():
    texture = _texture(80)
    onset, apex = _uint8(texture), _uint8(_shifted(texture, 1.0, -1.5))
    default = optical_flow(onset, apex)
    small_window = optical_flow(onset, apex, MotionConfig(farneback=(0.5, 1, 5, 1, 5, 1.1, 0)))
    assert np.abs(default - small_window).max() > 0.05
    tvl1 = optical_flow(onset, apex, MotionConfig(algorithm="tvl1"))
    tvl1_one_warp = optical_flow(onset, apex, MotionConfig(algorithm="tvl1", tvl1_scales=1, tvl1_warps=1))
    assert np.abs(tvl1 - tvl1_one_warp).max() > 0.05


def test_flow_rejects_mismatched_or_non_uint8_frames():
    frame = np.zeros((80, 80), np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        optical_flow(frame, np.zeros((80, 96), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        optical_flow(frame, frame.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        optical_flow(frame, np.zeros((80, 80, 4), np.uint8))


def test_to_grey():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 200  # green weighs most in luma
    grey = to_grey(rgb)
    assert grey.shape == (4, 5) and grey.dtype == np.uint8
    assert 100 < grey[0, 0] < 140
    np.testing.assert_array_equal(to_grey(grey), grey)


# --------------------------------------------------------------------------------------------
# optical_strain and flow_channels
# --------------------------------------------------------------------------------------------
def _field(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([u, v], axis=-1).astype(np.float32)


K = 0.03
_Y, _X = np.mgrid[0:40, 0:50].astype(np.float32)


@pytest.mark.parametrize(
    ("u", "v", "expected"),
    [
        (np.full_like(_X, 1.3), np.full_like(_X, -0.8), 0.0),  # translation
        (K * _X, 0 * _X, K),  # stretch along x: e_xx = k
        (0 * _X, -K * _Y, K),  # compression along y: e_yy = -k
        (K * _Y, 0 * _X, K / np.sqrt(2)),  # simple shear: e_xy = e_yx = k / 2
        (-K * _Y, K * _X, 0.0),  # rigid rotation: no strain
    ],
    ids=["translation", "stretch", "compression", "shear", "rotation"],
)
def test_strain_of_linear_fields(u, v, expected):
    strain = optical_strain(_field(u, v))
    assert strain.shape == _X.shape and strain.dtype == np.float32
    np.testing.assert_allclose(strain, expected, atol=1e-6)


def test_strain_rejects_a_non_flow():
    with pytest.raises(ValueError, match="H, W, 2"):
        optical_strain(np.zeros((8, 8, 3), np.float32))


def test_flow_channels_are_u_v_magnitude_strain():
    rng = np.random.default_rng(3)
    flow = rng.normal(0, 1, (30, 40, 2)).astype(np.float32)
    channels = flow_channels(flow)
    assert channels.shape == (4, 30, 40) and channels.dtype == np.float32
    np.testing.assert_array_equal(channels[0], flow[..., 0])
    np.testing.assert_array_equal(channels[1], flow[..., 1])
    np.testing.assert_allclose(channels[2], np.hypot(flow[..., 0], flow[..., 1]), rtol=1e-6)
    np.testing.assert_array_equal(channels[3], optical_strain(flow))


# --------------------------------------------------------------------------------------------
# frame_difference
# --------------------------------------------------------------------------------------------
def test_frame_difference_sign_range_and_units():
    onset = np.full((6, 7, 3), 100, np.uint8)
    apex = onset.copy()
    apex[:3] = 150  # brighter in the top half
    difference = frame_difference(onset, apex)
    assert difference.shape == (3, 6, 7) and difference.dtype == np.float32
    np.testing.assert_allclose(difference[:, :3], 50 / 127.5, rtol=1e-6)
    np.testing.assert_array_equal(difference[:, 3:], 0.0)
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    np.testing.assert_allclose(frame_difference(black, white), 2.0)
    np.testing.assert_allclose(frame_difference(white, black), -2.0)
    rng = np.random.default_rng(4)
    noisy = frame_difference(*rng.integers(0, 256, (2, 20, 20, 3), dtype=np.uint8))
    assert noisy.min() >= -2.0 and noisy.max() <= 2.0


def test_frame_difference_replicates_grey():
    rng = np.random.default_rng(5)
    onset, apex = rng.integers(0, 256, (2, 9, 8), dtype=np.uint8)
    difference = frame_difference(onset, apex)
    assert difference.shape == (3, 9, 8)
    for channel in difference:
        np.testing.assert_array_equal(channel, difference[0])
    as_rgb = frame_difference(*(np.repeat(image[..., None], 3, axis=2) for image in (onset, apex)))
    np.testing.assert_array_equal(difference, as_rgb)
    with pytest.raises(ValueError, match="differ in size"):
        frame_difference(onset, apex[:, :5])


# --------------------------------------------------------------------------------------------
# spot_apex
# --------------------------------------------------------------------------------------------
def _local_motion(texture: np.ndarray, shift: float, drift: float = 0.0) -> np.ndarray:
    """A brow-like band moved by ``shift`` px up, the whole image by ``drift`` px right."""
    frame = texture.copy()
    frame[30:46, 20:60] = _shifted(texture, 0.0, -shift)[30:46, 20:60]
    return _uint8(_shifted(frame, drift, 0.0))


@pytest.mark.parametrize("algorithm", FLOW_ALGORITHMS)
def test_spot_apex_finds_the_largest_displacement(algorithm):
    texture = _texture(80, seed=6)
    shifts = [0, 0.5, 1.0, 1.5, 1.0, 0.5]
    frames = np.stack([_local_motion(texture, s) for s in shifts])
    apex, curve = spot_apex(frames, MotionConfig(spot_algorithm=algorithm))
    assert apex == 3
    assert curve.shape == (6,) and curve.dtype == np.float32
    assert int(np.argmax(curve)) == 3 and curve[3] > curve[1] > curve[0] >= 0


def test_spot_apex_is_not_fooled_by_head_drift():
    texture = _texture(80, seed=8)
    # The head drifts right steadily (most at the last frame); the expression peaks at index 3.
    frames = [_local_motion(texture, s, drift=0.3 * t) for t, s in enumerate([0, 0.6, 1.2, 1.8, 1.2, 0.6, 0.0, 0.0])]
    assert spot_apex(frames)[0] == 3
    assert spot_apex(frames, MotionConfig(spot_border=0.0))[0] == 3


def test_spot_apex_at_the_last_frame_and_on_one_frame():
    rising = [_local_motion(_texture(80, seed=7), s) for s in (0.0, 0.4, 0.8, 1.2)]
    assert spot_apex(rising)[0] == 3
    apex, curve = spot_apex(rising[:1])
    assert apex == 0 and curve.shape == (1,) and curve[0] == 0
    with pytest.raises(ValueError, match="at least one frame"):
        spot_apex([])
    with pytest.raises(ValueError, match="spot_border"):
        MotionConfig(spot_border=0.5)


def test_spot_apex_on_a_synthetic_micro_expression():
    n_frames, onset, apex, offset = 20, 3, 10, 17
    clip = render_clip(subject_identity(0, 0), "surprise", n_frames, onset, apex, offset, (240, 320), True,
                       np.random.default_rng(0), distractors=False)
    # The face sits near the frame's centre: a centred square crop, resized as the pipeline would.
    faces = [cv2.resize(frame[60:180, 100:220], (80, 80), interpolation=cv2.INTER_AREA) for frame in clip]
    spotted, curve = spot_apex(faces[onset:offset + 1])
    assert abs(spotted - (apex - onset)) <= 2
    assert curve.shape == (offset - onset + 1,)


# --------------------------------------------------------------------------------------------
# MotionConfig
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"algorithm": "lucas-kanade"}, "'farneback', 'tvl1', 'dis'"),
        ({"spot_algorithm": "sift"}, "'farneback', 'tvl1', 'dis'"),
        ({"dis_preset": "fine"}, "'ultrafast', 'fast', 'medium'"),
        ({"farneback": (0.5, 3, 15)}, "7 values"),
        ({"farneback": (0.5, 3, 15, 3, 6, 1.2, 0)}, "poly_n"),
        ({"farneback": (1.5, 3, 15, 3, 5, 1.2, 0)}, "pyr_scale"),
        ({"farneback": (0.5, 3, 15, 3, 5, 1.2, cv2.OPTFLOW_USE_INITIAL_FLOW)}, "flags"),
        ({"tvl1_tau": 0.3}, "tvl1_tau"),
        ({"tvl1_lambda": 0.0}, "tvl1_lambda"),
        ({"tvl1_scales": 0}, "tvl1_scales"),
        ({"tvl1_warps": 2.5}, "tvl1_warps"),
    ],
)
def test_motion_config_rejects_bad_values(fields, message):
    with pytest.raises(ValueError, match=message):
        MotionConfig(**fields)


def test_motion_config_defaults_and_hashability():
    config = MotionConfig(farneback=[0.5, 3, 15, 3, 5, 1.2, cv2.OPTFLOW_FARNEBACK_GAUSSIAN])
    assert isinstance(config.farneback, tuple)
    assert hash(config) == hash(MotionConfig(farneback=config.farneback))
    assert MotionConfig().farneback == (0.5, 3, 15, 3, 5, 1.2, 0)
    assert MotionConfig().algorithm == "farneback" and MotionConfig().spot_algorithm == "dis"
