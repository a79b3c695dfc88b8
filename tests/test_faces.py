"""Tests for face detection, alignment and cropping (tasks/faces.py): real frames, synthetic faces, no mocks."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from merflow.tasks.faces import FaceBox, FaceConfig, NoFaceError, _cascade, crop_face, crop_frames, detect_face
from merflow.tasks.synthetic.expressions import render_clip
from merflow.tasks.synthetic.faces import subject_identity

from requires import REFERENCE, requires_reference

FRAMES = REFERENCE / "frames"


def _real_frame(name: str) -> np.ndarray:
    """A real frame of the reference folder (its tests carry `requires_reference`: a missing file fails)."""
    path = FRAMES / name
    assert path.is_file(), f"the reference folder {REFERENCE} lacks frames/{name}"
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _synthetic(subject: int, size=(240, 320), colour=True, n_frames=1, seed=0) -> tuple[np.ndarray, dict]:
    info: dict = {}
    clip = render_clip(subject_identity(subject, 0), "neutral", n_frames, 0, 0, n_frames - 1, size, colour,
                       np.random.default_rng(seed), distractors=False, info=info)
    return clip, info


def _face_centre(landmarks: dict) -> np.ndarray:
    """Halfway between the eyes' midpoint and the mouth's centre."""
    eyes = (np.array(landmarks["left_eye"]) + np.array(landmarks["right_eye"])) / 2
    return (eyes + np.array(landmarks["mouth_center"])) / 2


def _crop_matrix(box: FaceBox, size: int) -> np.ndarray:
    """The documented geometry, written out independently of the module."""
    matrix = cv2.getRotationMatrix2D((box.cx, box.cy), box.angle, size / box.side)
    matrix[:, 2] += ((size - 1) / 2 - box.cx, (size - 1) / 2 - box.cy)
    return matrix


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _eye_slope(box: FaceBox) -> float:
    """Vertical eye offset over the inter-ocular distance."""
    (ax, ay), (bx, by) = box.landmarks[:2]
    return (by - ay) / (bx - ax)


def _global_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares translation (x, y) taking a onto b (one Lucas-Kanade step over the whole image)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    gy, gx = np.gradient((a + b) / 2)
    dt = b - a
    inner = (slice(2, -2), slice(2, -2))
    gx, gy, dt = gx[inner], gy[inner], dt[inner]
    normal = np.array([[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]])
    return np.linalg.solve(normal, -np.array([np.sum(gx * dt), np.sum(gy * dt)]))


# ------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("bad", [dict(detector="mtcnn"), dict(fallback="dlib"), dict(no_face="skip"),
                                 dict(margin=-0.1), dict(min_confidence=1.5)])
def test_config_rejects_unknown_choices(bad):
    with pytest.raises(ValueError):
        FaceConfig(**bad)


def test_a_bare_cascade_name_is_an_error_not_an_empty_detector():
    with pytest.raises(RuntimeError, match="haarcascade_frontalface_default.xml"):
        _cascade("haarcascade_frontalface_default.xml")


# -------------------------------------------------------------------------------- real frames
@requires_reference
def test_yunet_finds_the_samm_face():
    frame = _real_frame("SAMM_006_05562.jpg")
    h, w = frame.shape
    box = detect_face(frame, FaceConfig(fallback=None, no_face="quarantine"))
    assert box.detector == "yunet" and box.confidence >= 0.5
    assert abs(box.cx - w / 2) < 0.15 * w and abs(box.cy - h / 2) < 0.2 * h
    assert 0.6 < box.side / h < 1.2
    (rex, rey), (lex, ley), (nx, ny), (mrx, mry), (mlx, mly) = box.landmarks
    assert rex < nx < lex and mrx < mlx  # yuface's order: image-left points first
    assert max(rey, ley) < ny < min(mry, mly)
    assert abs(box.angle) < 10


@requires_reference
def test_yunet_finds_the_cropped_casme2_face():
    frame = _real_frame("CASME2_cropped_interpolated_001.jpg")
    h, w = frame.shape
    box = detect_face(frame, FaceConfig(fallback=None, no_face="quarantine"))
    assert box.detector == "yunet"
    assert abs(box.cx - w / 2) < 0.15 * w and abs(box.cy - h / 2) < 0.2 * h
    # The frame is already cropped to the face, so the box with its margin is larger than the frame.
    assert 0.9 < box.side / h < 1.8
    crop = crop_face(frame, box, 128)
    assert crop.shape == (128, 128) and crop.dtype == np.uint8


@requires_reference
def test_haar_agrees_with_yunet_on_the_samm_face():
    # Only the SAMM frame: on the cropped CASME II frame, where the face fills the frame, Haar finds
    # just a small box on the upper face.
    frame = _real_frame("SAMM_006_05562.jpg")
    yunet = detect_face(frame, FaceConfig(fallback=None, no_face="quarantine"))
    haar = detect_face(frame, FaceConfig(detector="haar", fallback=None, no_face="quarantine"))
    assert haar.detector == "haar" and haar.confidence is None and haar.landmarks is None and haar.angle == 0
    assert math.hypot(haar.cx - yunet.cx, haar.cy - yunet.cy) < 0.1 * yunet.side
    assert 0.8 < haar.side / yunet.side < 1.25


@requires_reference
def test_a_rotated_real_face_is_levelled():
    frame = _real_frame("SAMM_006_05562.jpg")
    upright = detect_face(frame).angle
    box = detect_face(_rotate(frame, 10))
    assert box.angle - upright == pytest.approx(-10, abs=2.5)


# ---------------------------------------------------------------------------- synthetic faces
@pytest.mark.parametrize("subject", [0, 3, 6])
@pytest.mark.parametrize("size", [(240, 320), (120, 160)])
@pytest.mark.parametrize("colour", [True, False])
def test_synthetic_faces_are_found_and_cropped(subject, size, colour):
    clip, info = _synthetic(subject, size, colour)
    box = detect_face(clip[0], FaceConfig(fallback=None, no_face="quarantine"))
    face_px = info["face_px"]
    assert box.detector == "yunet"
    assert np.linalg.norm(np.array([box.cx, box.cy]) - _face_centre(info["landmarks"])) < 0.2 * face_px
    assert 1.0 < box.side / face_px < 1.7
    crop_size = 64
    crop = crop_face(clip[0], box, crop_size)
    assert crop.shape == ((crop_size, crop_size, 3) if colour else (crop_size, crop_size))
    # Every rendered landmark lands inside the crop, away from its edge.
    points = np.array(list(info["landmarks"].values()))
    matrix = _crop_matrix(box, crop_size)
    in_crop = points @ matrix[:, :2].T + matrix[:, 2]
    assert in_crop.min() > 0.1 * crop_size and in_crop.max() < 0.9 * crop_size


@pytest.mark.parametrize("subject", [1, 4])
def test_haar_finds_synthetic_faces(subject):
    clip, info = _synthetic(subject)
    box = detect_face(clip[0], FaceConfig(detector="haar", fallback=None, no_face="quarantine"))
    assert box.detector == "haar"
    assert np.linalg.norm(np.array([box.cx, box.cy]) - _face_centre(info["landmarks"])) < 0.2 * info["face_px"]


def test_the_fallback_runs_when_the_detector_finds_nothing():
    clip, _ = _synthetic(2)
    # No YuNet score exceeds 1.0, so YuNet finds nothing and Haar is asked.
    box = detect_face(clip[0], FaceConfig(min_confidence=1.0, fallback="haar", no_face="quarantine"))
    assert box.detector == "haar"
    with pytest.raises(NoFaceError):
        detect_face(clip[0], FaceConfig(min_confidence=1.0, fallback=None, no_face="quarantine"))


# --------------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("subject", [0, 3])
@pytest.mark.parametrize("degrees", [10, -15])
def test_a_rotated_face_is_measured_and_levelled(subject, degrees):
    clip, _ = _synthetic(subject)
    upright = detect_face(clip[0]).angle
    rotated = _rotate(clip[0], degrees)  # counter-clockwise on screen for positive degrees
    box = detect_face(rotated)
    # Documented convention: the angle that levels a face turned counter-clockwise by d is about -d.
    # YuNet's landmarks are whole pixels, about a degree at these sizes, on each of the two angles.
    assert box.angle - upright == pytest.approx(-degrees, abs=3)
    again = detect_face(crop_face(rotated, box, 160), FaceConfig(align=False, fallback=None, no_face="quarantine"))
    assert abs(_eye_slope(again)) < 0.06  # level to within 3.4 degrees, where the tilt was 10 or 15
    assert again.angle == 0  # align=False


def test_without_alignment_the_crop_stays_tilted():
    clip, _ = _synthetic(0)
    rotated = _rotate(clip[0], 15)
    box = detect_face(rotated, FaceConfig(align=False))
    assert box.angle == 0
    again = detect_face(crop_face(rotated, box, 160), FaceConfig(align=False, fallback=None, no_face="quarantine"))
    assert _eye_slope(again) < -0.06  # YuNet reads a 15 degree tilt as about 5-10 degrees


# ----------------------------------------------------------------------- the same box on every frame
@pytest.mark.parametrize("size", [64, 128])
def test_the_box_does_not_follow_a_one_pixel_shift(size):
    clip, _ = _synthetic(1, colour=False)
    onset = clip[0]
    shifted = np.roll(onset, 1, axis=1)  # the whole frame moves right by exactly one pixel
    box = detect_face(onset)
    crops = crop_frames([onset, shifted], box, size)
    # Cutting the shifted frame is cutting the onset frame one pixel further left.
    moved = FaceBox(box.cx - 1, box.cy, box.side, box.angle, box.detector, box.confidence, box.landmarks)
    assert np.abs(crops[1].astype(int) - crop_face(onset, moved, size)).max() <= 1
    # So the crops keep the shift, scaled to the crop (and turned by the box's angle).
    zoom = size / box.side
    expected = zoom * np.array([math.cos(math.radians(box.angle)), -math.sin(math.radians(box.angle))])
    assert _global_shift(crops[0], crops[1]) == pytest.approx(expected, abs=0.15 * zoom)
    # The face moved inside a box that stayed put.
    assert np.abs(crops[1].astype(int) - crops[0]).mean() > 1


def test_crop_frames_takes_lists_and_arrays_alike():
    clip, _ = _synthetic(5, n_frames=3)
    box = detect_face(clip[0])
    from_array = crop_frames(clip, box, 80)
    assert from_array.shape == (3, 80, 80, 3) and from_array.dtype == np.uint8
    assert np.array_equal(from_array, crop_frames(list(clip), box, 80))
    assert np.array_equal(from_array[2], crop_face(clip[2], box, 80))
    with pytest.raises(ValueError, match="differ in shape"):
        crop_frames([clip[0], clip[1][:, :-1]], box, 80)
    with pytest.raises(ValueError, match="no frames"):
        crop_frames([], box, 80)


# ----------------------------------------------------------------------------------- no face
@pytest.mark.parametrize("kind", ["uniform", "noise"])
def test_no_face_policies(kind):
    h, w = 240, 320
    image = (np.full((h, w), 128, np.uint8) if kind == "uniform"
             else np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8))
    box = detect_face(image, FaceConfig(no_face="centre"))
    assert box.detector == "none" and box.landmarks is None and box.angle == 0 and box.confidence is None
    assert (box.cx, box.cy, box.side) == ((w - 1) / 2, (h - 1) / 2, h)
    # The centre box is exactly the centre square of the frame.
    assert np.array_equal(crop_face(image, box, h), image[:, (w - h) // 2:(w + h) // 2])
    with pytest.raises(NoFaceError, match="yunet or haar"):
        detect_face(image, FaceConfig(no_face="quarantine"))
    with pytest.raises(NoFaceError) as caught:
        detect_face(image, FaceConfig(fallback=None, no_face="quarantine"))
    assert "yunet" in str(caught.value) and "haar" not in str(caught.value)


# -------------------------------------------------------------------------------- crop_face
@pytest.mark.parametrize("size", [28, 80, 128])
@pytest.mark.parametrize("colour", [True, False])
def test_crop_shape_and_dtype(size, colour):
    clip, _ = _synthetic(0, colour=colour)
    crop = crop_face(clip[0], detect_face(clip[0]), size)
    assert crop.dtype == np.uint8
    assert crop.shape == ((size, size, 3) if colour else (size, size))


def test_a_box_covering_a_square_frame_returns_it_unchanged_and_rotates_like_rot90():
    image = np.random.default_rng(1).integers(0, 256, (50, 50, 3), dtype=np.uint8)
    whole = FaceBox(24.5, 24.5, 50.0, 0.0, "none", None, None)
    assert np.array_equal(crop_face(image, whole, 50), image)
    quarter_turn = FaceBox(24.5, 24.5, 50.0, 90.0, "none", None, None)
    assert np.abs(crop_face(image, quarter_turn, 50).astype(int) - np.rot90(image)).max() <= 1


def test_a_box_partly_outside_the_frame_repeats_the_border():
    ys, xs = np.mgrid[0:120, 0:130]
    image = (xs + ys).astype(np.uint8)
    crop = crop_face(image, FaceBox(0.5, 0.5, 100.0, 0.0, "none", None, None), 100)
    assert crop.shape == (100, 100)
    # Output pixel j reads frame pixel j - 49: the first 49 rows and columns lie outside the frame.
    assert np.all(crop[:49, :49] == image[0, 0])
    assert np.array_equal(crop[:49, 60], np.full(49, image[0, 11]))
    assert crop[99, 99] == image[50, 50]
    beyond = crop_face(image, FaceBox(500.0, -300.0, 60.0, 30.0, "none", None, None), 28)
    assert np.all(beyond == image[0, -1])


def test_downscaling_is_anti_aliased():
    checkerboard = (np.indices((512, 512)).sum(axis=0) % 2 * 255).astype(np.uint8)
    crop = crop_face(checkerboard, FaceBox(255.5, 255.5, 512.0, 0.0, "none", None, None), 28)
    # Point sampling would read whole black or white pixels; area averaging gives mid grey.
    assert abs(crop.mean() - 127.5) < 3 and crop.std() < 3


def test_crop_rejects_bad_input():
    box = FaceBox(10.0, 10.0, 20.0, 0.0, "none", None, None)
    with pytest.raises(ValueError):
        crop_face(np.zeros((20, 20), np.float32), box, 28)
    with pytest.raises(ValueError):
        crop_face(np.zeros((20, 20, 4), np.uint8), box, 28)
    with pytest.raises(ValueError):
        crop_face(np.zeros((20, 20), np.uint8), box, 0)


# ------------------------------------------------------------------------------------ storage
def test_boxes_round_trip_through_json():
    clip, _ = _synthetic(3)
    for box in (detect_face(clip[0]), detect_face(np.full((60, 80), 90, np.uint8))):
        stored = json.dumps(box.to_dict(), allow_nan=False)
        restored = FaceBox.from_dict(json.loads(stored))
        assert restored.to_dict() == box.to_dict()
        assert np.array_equal(crop_face(clip[0], restored, 32), crop_face(clip[0], box, 32))
