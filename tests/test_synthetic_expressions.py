"""Tests for the synthetic faces (tasks/synthetic/faces.py) and expression clips (expressions.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yuface  # a dependency of merflow (its default detector): absent, these tests fail rather than skip

from merflow.tasks.synthetic.expressions import (
    EMOTION_AUS,
    MACRO_FACTOR,
    expression_field,
    peak_displacement,
    render_clip,
    temporal_profile,
)
from merflow.tasks.synthetic.faces import FaceIdentity, n_base_faces, subject_identity

HAAR = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _iod(lm: dict) -> float:
    (lx, ly), (rx, ry) = lm["left_eye"], lm["right_eye"]
    return float(np.hypot(rx - lx, ry - ly))


def _mean_flow(flow: np.ndarray, centre, half: int) -> np.ndarray:
    x, y = int(round(centre[0])), int(round(centre[1]))
    return flow[y - half:y + half + 1, x - half:x + half + 1].reshape(-1, 2).mean(0)


def _clip(subject: int, emotion: str, *, seed: int = 0, distractors: bool = False, macro: bool = False,
          size=(240, 320), n=12, onset=2, apex=6, offset=10, colour=False, intensity=1.0):
    info: dict = {}
    if macro:
        onset, apex, offset = 0, n - 1, n - 1
    clip = render_clip(subject_identity(subject, 0), emotion, n, onset, apex, offset, size, colour,
                       np.random.default_rng(seed), macro=macro, intensity=intensity,
                       distractors=distractors, info=info)
    return clip, info


# ------------------------------------------------------------------------------- identities
def test_identity_is_deterministic_and_well_formed():
    a, b = subject_identity(3, 7), subject_identity(3, 7)
    assert isinstance(a, FaceIdentity)
    assert np.array_equal(a.face, b.face) and a.landmarks == b.landmarks
    assert a.expressiveness == b.expressiveness
    assert a.face.dtype == np.float32 and a.face.ndim == 3 and a.face.shape[2] == 3
    assert 0.0 <= a.face.min() and a.face.max() <= 1.0
    assert a.mask.shape == a.face.shape[:2]
    assert set(a.landmarks) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right",
                                "left_brow", "right_brow", "mouth_center"}
    lm = a.landmarks
    assert lm["left_eye"][0] < lm["right_eye"][0] and lm["mouth_left"][0] < lm["mouth_right"][0]
    assert lm["left_brow"][1] < lm["left_eye"][1] < lm["nose"][1] < lm["mouth_center"][1]
    assert 0.6 <= a.expressiveness <= 1.4
    with pytest.raises(ValueError):
        a.face[0, 0, 0] = 0.5  # read-only


def test_different_subjects_look_different():
    ids = [subject_identity(i, 0) for i in range(6)]
    assert len({i.base for i in ids}) == 6
    for i in range(6):
        for j in range(i + 1, 6):
            assert np.abs(ids[i].face - ids[j].face).mean() > 0.03
    # the same bundled face coming round again (mirrored, re-toned) is still another subject
    again = subject_identity(n_base_faces(), 0)
    assert again.base.split("+")[0] == ids[0].base
    assert np.abs(again.face - ids[0].face).mean() > 0.03
    # another seed orders the faces differently
    assert [subject_identity(i, 1).base for i in range(6)] != [i.base for i in ids]


# ------------------------------------------------------------------------------- clips: basics
def test_same_rng_state_gives_identical_clips():
    ident = subject_identity(2, 0)
    a = render_clip(ident, "happiness", 10, 1, 4, 8, (120, 160), True, np.random.default_rng(11))
    b = render_clip(ident, "happiness", 10, 1, 4, 8, (120, 160), True, np.random.default_rng(11))
    c = render_clip(ident, "happiness", 10, 1, 4, 8, (120, 160), True, np.random.default_rng(12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("colour", [True, False])
@pytest.mark.parametrize("size", [(480, 640), (120, 160)])
def test_shape_and_dtype(colour, size):
    clip = render_clip(subject_identity(1, 0), "surprise", 5, 1, 2, 3, size, colour,
                       np.random.default_rng(0))
    assert clip.dtype == np.uint8
    assert clip.shape == ((5, *size, 3) if colour else (5, *size))
    assert clip.std() > 10  # a picture, not a blank


def test_bad_arguments_raise():
    ident = subject_identity(0, 0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="surprise"):  # the message lists the known emotions
        render_clip(ident, "glee", 5, 0, 2, 4, (120, 160), True, rng)
    with pytest.raises(ValueError):
        render_clip(ident, "surprise", 5, 3, 2, 4, (120, 160), True, rng)
    with pytest.raises(ValueError):
        render_clip(ident, "surprise", 5, 0, 2, 5, (120, 160), True, rng)


def test_every_emotion_renders_and_only_neutral_stays_still():
    for emotion, aus in EMOTION_AUS.items():
        clip, info = _clip(0, emotion, size=(120, 160), n=5, onset=0, apex=2, offset=4)
        moved = np.abs(clip[2].astype(int) - clip[0].astype(int)).max()
        if emotion == "neutral":
            assert aus == "" and moved == 0 and info["aus"] == []
        else:
            assert aus and moved > 0, emotion


# ------------------------------------------------------------------------------- detectors
def test_face_detectors_find_the_face():
    haar = cv2.CascadeClassifier(HAAR)
    assert not haar.empty()
    hits_yu = hits_haar = 0
    subjects = range(6)
    for s in subjects:
        clip, info = _clip(s, "happiness", seed=s, distractors=True, colour=True, n=3, onset=0, apex=1,
                           offset=2)
        bgr = cv2.cvtColor(clip[0], cv2.COLOR_RGB2BGR)
        confs, boxes, _ = yuface.detect(bgr, conf=0.5)
        if len(confs):
            x, y, w, h = boxes[int(np.argmax(confs))].astype(float)
            nose = info["landmarks"]["nose"]
            assert x < nose[0] < x + w and y < nose[1] < y + h  # it found *our* face
            assert 0.4 < h / 240 < 0.68  # face about half the frame high
            hits_yu += 1
        grey = cv2.cvtColor(clip[0], cv2.COLOR_RGB2GRAY)
        hits_haar += len(haar.detectMultiScale(grey, 1.1, 3, minSize=(30, 30))) > 0
    assert hits_yu == len(subjects)
    assert hits_haar >= len(subjects) - 1


def test_yuface_finds_the_face_in_small_grey_frames():
    for s in range(6, 10):
        clip, _ = _clip(s, "anger", seed=s, distractors=True, size=(120, 160), n=3, onset=0, apex=1,
                        offset=2)
        confs, _, _ = yuface.detect(cv2.cvtColor(clip[1], cv2.COLOR_GRAY2BGR), conf=0.5)
        assert len(confs) > 0, s


# ------------------------------------------------------------------------------- motion
@pytest.mark.parametrize("distractors", [False, True])
@pytest.mark.parametrize("subject", [0, 3, 5])
def test_surprise_raises_the_brows(subject, distractors):
    clip, info = _clip(subject, "surprise", seed=subject, distractors=distractors)
    flow = _flow(clip[2], clip[6])
    lm, iod = info["landmarks"], _iod(info["landmarks"])
    r = max(int(0.12 * iod), 2)
    brows = [_mean_flow(flow, lm[k], r) for k in ("left_brow", "right_brow")]
    cheek = _mean_flow(flow, (lm["left_eye"][0] - 0.15 * iod, lm["nose"][1]), r)
    back = flow[5:25, 5:45].reshape(-1, 2).mean(0)
    for v in brows:
        assert v[1] < -0.4  # up: image y grows downwards
        assert abs(v[1]) > 3 * max(np.abs(cheek).max(), np.abs(back).max(), 0.05)


@pytest.mark.parametrize("subject", [1, 4])
def test_happiness_pulls_the_lip_corners_up_and_out(subject):
    clip, info = _clip(subject, "happiness", seed=subject, distractors=True)
    flow = _flow(clip[2], clip[6])
    lm, iod = info["landmarks"], _iod(info["landmarks"])
    r = max(int(0.1 * iod), 2)
    left, right = _mean_flow(flow, lm["mouth_left"], r), _mean_flow(flow, lm["mouth_right"], r)
    assert left[1] < -0.3 and right[1] < -0.3
    assert left[0] < -0.15 and right[0] > 0.15  # outwards
    forehead = _mean_flow(flow, (lm["nose"][0], lm["left_brow"][1] - 0.2 * iod), r)
    assert np.abs(forehead).max() < 0.5 * min(-left[1], -right[1])


@pytest.mark.parametrize(
    "emotion, anchor, dy, component",
    [
        ("anger", "left_brow", 0.0, +1),  # brows down
        ("sadness", "mouth_right", 0.0, +1),  # lip corners down
        ("disgust", "mouth_center", -0.12, -1),  # upper lip up
        ("repression", "mouth_center", 0.5, -1),  # chin up
    ],
)
def test_other_classes_move_the_right_way(emotion, anchor, dy, component):
    clip, info = _clip(2, emotion, seed=5)
    flow = _flow(clip[2], clip[6])
    lm, iod = info["landmarks"], _iod(info["landmarks"])
    x, y = lm[anchor]
    v = _mean_flow(flow, (x, y + dy * iod), max(int(0.1 * iod), 2))
    assert component * v[1] > 0.3


def test_contempt_is_one_sided():
    clip, info = _clip(2, "contempt", seed=5)
    flow = _flow(clip[2], clip[6])
    lm, iod = info["landmarks"], _iod(info["landmarks"])
    r = max(int(0.1 * iod), 2)
    moving = np.abs(_mean_flow(flow, lm["mouth_left"], r)).max()
    still = np.abs(_mean_flow(flow, lm["mouth_right"], r)).max()
    assert moving > 0.4 and still < 0.25 * moving


# ------------------------------------------------------------------------------- magnitudes
def test_micro_peak_is_capped_and_scales_with_the_face():
    assert peak_displacement(128, 1.0) == pytest.approx(2.0)
    assert peak_displacement(128, 1.4, 3.0) == pytest.approx(2.5)  # capped
    assert peak_displacement(256, 1.0) == pytest.approx(4.0)
    assert 3.0 <= MACRO_FACTOR <= 4.0
    assert peak_displacement(128, 1.0, macro=True) == pytest.approx(2.0 * MACRO_FACTOR)
    for s in range(4):
        _, info = _clip(s, "fear", intensity=5.0, size=(120, 160), n=3, onset=0, apex=1, offset=2)
        assert info["peak_px"] * 128 / info["face_px"] <= 2.5 + 1e-9


def test_field_peak_is_one_and_local():
    lm = subject_identity(0, 0).landmarks
    dx, dy = expression_field(lm, [("1", 1.0), ("2", 1.0)], (192, 192))
    mag = np.hypot(dx, dy)
    assert mag.max() == pytest.approx(1.0, abs=1e-5)
    assert mag[int(lm["mouth_center"][1]):].max() < 0.01  # brows only: nothing at the mouth


def test_measured_micro_motion_stays_small_and_macro_is_larger():
    # a 128 px face: frame height 128 / face_fraction
    ident = subject_identity(4, 0)
    h = int(round(128 / ident.face_fraction))
    size = (h, int(h * 4 / 3))
    peaks = {}
    for macro in (False, True):
        info: dict = {}
        n = 10
        on, ap, off = (0, n - 1, n - 1) if macro else (1, 5, 9)
        clip = render_clip(ident, "surprise", n, on, ap, off, size, False, np.random.default_rng(3),
                           macro=macro, intensity=3.0, distractors=False, info=info)
        flow = _flow(clip[on], clip[ap])
        peaks[macro] = np.hypot(flow[..., 0], flow[..., 1]).max()
        if not macro:
            assert 110 < info["face_px"] < 150
    assert peaks[False] <= 2.5 * 1.2  # Farneback's own error allowed for
    assert peaks[True] > 2.5 * peaks[False]


def test_temporal_profiles():
    p = temporal_profile(20, 4, 9, 15)
    assert np.all(p[:5] == 0) and p[9] == 1 and np.all(p[15:] < 1e-9)
    assert np.all(np.diff(p[4:10]) > 0) and np.all(np.diff(p[9:16]) < 0)
    m = temporal_profile(10, 0, 9, 9, macro=True)
    assert m[0] == 0 and m[-1] == 1 and np.all(np.diff(m) > 0)
    assert np.all(temporal_profile(10, 0, 5, 9, macro=True)[5:] == 1)  # holds after the peak


def test_frames_before_onset_only_differ_by_distractors():
    clip, info = _clip(1, "surprise", distractors=False, n=14, onset=5, apex=9, offset=13)
    for t in range(5):
        assert np.array_equal(clip[t], clip[5])
    checked = 0
    for seed in range(4):
        clip, info = _clip(1, "surprise", seed=seed, distractors=True, n=14, onset=5, apex=9, offset=13)
        lm, iod = info["landmarks"], _iod(info["landmarks"])
        r = max(int(0.12 * iod), 2)
        drift, blink = info["drift"], info["blink"]
        for t in range(5):
            if blink[t] == 0:  # a blink is a distractor too, just not one that fits this check
                # before onset the brows move with the head's drift and nothing else
                v = _mean_flow(_flow(clip[t], clip[5]), lm["left_brow"], r)
                assert np.abs(v - (drift[5] - drift[t])).max() < 0.3  # Farneback error on a weak texture
                # and the pixels differ by sensor noise and flicker only
                diff = np.abs(clip[t].astype(float) - clip[5].astype(float)).mean()
                flicker = abs(info["gains"][t] - info["gains"][5]) * clip[5].mean()
                assert diff < 2 * info["noise_sigma"] + flicker
                checked += 1
        during = _mean_flow(_flow(clip[5], clip[9]), lm["left_brow"], r) - (drift[9] - drift[5])
        assert during[1] < -0.8  # the expression dominates
    assert checked >= 10


def test_distractors_stay_in_range_and_blinks_avoid_the_apex():
    blinks = 0
    for seed in range(30):
        _, info = _clip(0, "happiness", seed=seed, distractors=True, size=(120, 160), n=10, onset=1,
                        apex=5, offset=8)
        b = info["blink"]
        assert b[5] == 0 and b[1] == 0
        if b.any():
            blinks += 1
            assert 2 <= np.count_nonzero(b) <= 4
        assert 1.0 <= info["noise_sigma"] <= 2.0
        assert np.all(np.abs(info["gains"] - 1) <= 0.02 + 1e-9)
        drift = np.abs(info["drift"]).max() * 128 / info["face_px"]
        assert drift <= 1.0 + 1e-9
    assert 3 <= blinks <= 20  # occasional

