"""A sample as a sequence (tasks/sequences.py, through tasks/features.py sample_features on real files): T frames
onset to offset at the right times, their flows, up-sampling and missing frames recorded, and the landmarks on
the face's features."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from merflow.configs.features import FaceConfig, FeatureConfig
from merflow.tasks.faces import FaceBox, crop_face, crop_points, detect_face
from merflow.tasks.features import compute_shard, sample_features
from merflow.tasks.motion import to_grey
from merflow.tasks.sequences import MissingFrames, landmark_points, resample, sample_times
from merflow.tasks.synthetic.expressions import render_clip
from merflow.tasks.synthetic.faces import subject_identity
from merflow.tasks.synthetic.layouts import write_frames

from requires import requires_reference

FRAME = (240, 320)
ORDER = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right", "left_brow", "right_brow")


def _clip(folder: Path, emotion: str, n: int, apex: int, subject: int = 3, distractors: bool = False) -> tuple[dict, dict]:
    """A rendered clip written as img<onset + i>.jpg (onset 101), its catalog record and what was rendered."""
    info = {}
    frames = render_clip(subject_identity(subject, 0), emotion, n, 0, apex, n - 1, FRAME, True,
                         np.random.default_rng(subject), distractors=distractors, info=info)
    names = [f"img{101 + i}.jpg" for i in range(n)]
    write_frames(folder, frames, names)
    record = {"clip_dir": str(folder), "frame_files": names, "onset": 101, "apex": 101 + apex, "offset": 100 + n,
              "sample_key": f"synthetic/s{subject}/{folder.name}", "fingerprint": "f"}
    return record, info


@pytest.fixture(scope="module")
def surprise(tmp_path_factory) -> tuple[dict, dict]:
    """31 frames, the brows highest at frame 11 (0-based), no blinks, drift or noise."""
    return _clip(tmp_path_factory.mktemp("surprise"), "surprise", 31, 11)


@pytest.mark.parametrize("length", [10, 24])
def test_the_frames_peak_where_the_motion_peaks(surprise, length):
    record, rendered = surprise
    arrays, info = sample_features(record, FeatureConfig(sequence_length=length))
    assert arrays["frames"].shape == (length, 80, 80) and arrays["frames"].dtype == np.uint8
    assert arrays["flow_seq"].shape == (length - 1, 2, 80, 80) and arrays["flow_seq"].dtype == np.float32
    frames = arrays["frames"].astype(np.float32)
    away = np.abs(frames - frames[0]).mean(axis=(1, 2))
    peak = int(np.argmax(away))
    # The planted expression's strength at the T times, between frames as the frames are interpolated: it peaks
    # at the time nearest the apex (frame 11) on the side its raised cosine falls more slowly.
    times = sample_times(31, length)
    planted = np.interp(times, np.arange(31), rendered["profile"])
    assert peak == int(np.argmax(planted)) and abs(times[peak] - 11) < 30 / (length - 1), (peak, np.round(away, 2))
    assert away[-1] < 0.25 * away[peak]  # back to rest at the offset
    # The first and last frames are the onset's and the offset's own crops; the pair's onset crop is frame 0.
    np.testing.assert_array_equal(arrays["frames"][0], to_grey(arrays["onset"].transpose(1, 2, 0)))
    # The brows rise up to the apex and fall after: the flows' vertical motion over the brows changes sign there.
    brows = arrays["flow_seq"][:, 1, 14:34, 20:60].mean(axis=(1, 2))
    rising, falling = brows[:peak].sum(), brows[peak:].sum()
    assert rising < -0.3 and falling > 0.3, (rising, falling)
    assert info["sequence"] == {"length": length, "frames": 31, "upsampled": False, "missing": [], "held": [],
                                "read": info["sequence"]["read"]}
    assert info["sequence"]["read"] <= min(31, 2 * length)  # only the frames around the T times are read


def test_linear_interpolation_in_time_on_a_ramp():
    ramp = {i: np.full((4, 4), 10 * i, np.uint8) for i in range(7)}   # frame i is 10 i everywhere
    frames, info = resample(ramp.get, 7, 10, 0.2)
    np.testing.assert_array_equal(frames[:, 0, 0], np.rint(10 * sample_times(7, 10)).astype(np.uint8))
    assert info["upsampled"] and info["frames"] == 7 and info["missing"] == []
    gappy = dict(ramp) | {3: None}                                    # frame 3 missing: bridged from 2 and 4
    frames, info = resample(gappy.get, 7, 7, 0.2)
    assert frames[3, 0, 0] == 30 and info["missing"] == [3] and info["held"] == []
    with pytest.raises(MissingFrames, match="2 of the 7 frames"):
        resample((ramp | {2: None, 3: None}).get, 7, 7, 0.2)
    frames, info = resample((ramp | {6: None}).get, 7, 7, 0.2)          # the last one: held from frame 5
    assert frames[6, 0, 0] == 50 and info["held"] == [6]


def test_a_short_clip_is_upsampled_and_a_missing_frame_bridged_and_recorded(tmp_path):
    record, _ = _clip(tmp_path / "short", "happiness", 6, 3)
    arrays, info = sample_features(record, FeatureConfig())
    assert info["sequence"]["upsampled"] and info["sequence"]["frames"] == 6 and arrays["frames"].shape[0] == 10
    record, _ = _clip(tmp_path / "gappy", "happiness", 19, 9)
    complete, _ = sample_features(record, FeatureConfig(sequence_length=19))
    # Frame 4 (img105) written black, as a dropped frame is: not the onset, apex or middle, so the pair is as before.
    cv2.imwrite(str(tmp_path / "gappy" / "img105.jpg"), np.zeros(FRAME + (3,), np.uint8))
    arrays, info = sample_features(record, FeatureConfig(sequence_length=19))
    assert info["sequence"]["missing"] == [105] and info["status"] == "ok"
    bridged = (complete["frames"][3].astype(np.float32) + complete["frames"][5]) / 2
    assert np.abs(arrays["frames"][4] - bridged).max() <= 1
    np.testing.assert_array_equal(arrays["frames"][3], complete["frames"][3])
    for name in ("onset", "apex", "flow"):
        np.testing.assert_array_equal(arrays[name], complete[name])


def test_more_missing_than_the_share_quarantines_the_sample(tmp_path):
    record, _ = _clip(tmp_path / "holes", "disgust", 19, 9)
    for number in (103, 104, 106, 107, 108, 112, 113):   # 7 of 19, none of them the onset, apex or middle
        (tmp_path / "holes" / f"img{number}.jpg").unlink()
    config = FeatureConfig(sequence_length=19, max_missing_share=0.25)
    arrays, marks = compute_shard(((0, record),), 0, 1, config)
    mark = marks[record["sample_key"]]
    assert mark["status"] == "quarantined" and mark["reason"] == "too_many_missing_frames"
    assert "7 of the " in mark["detail"] and not arrays["frames"].any()
    _, info = sample_features(record, config.replace(max_missing_share=0.5))
    assert info["sequence"]["missing"] == [103, 104, 106, 107, 108, 112, 113]


def test_the_landmarks_lie_on_the_synthetic_faces_features(surprise):
    record, rendered = surprise
    arrays, info = sample_features(record, FeatureConfig())
    box = FaceBox.from_dict(info["face"])
    truth = crop_points(box, 80, [rendered["landmarks"][name] for name in ORDER])
    iod = float(np.hypot(*(truth[1] - truth[0])))
    errors = np.hypot(*(arrays["landmarks"] - truth).T) / iod
    assert info["landmarks"]["source"] == "detector"
    assert errors[:5].max() < 0.15, errors     # the detector's points
    assert errors[5:].max() < 0.15, errors     # the brows merflow derives
    assert (arrays["landmarks"][5:, 1] < arrays["landmarks"][:2, 1]).all()  # above the eyes


def test_no_face_gives_nan_landmarks_and_says_so(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "wall"
    noise = [cv2.GaussianBlur(rng.integers(0, 255, FRAME + (3,), np.uint8), (0, 0), 3) for _ in range(5)]
    write_frames(folder, np.stack(noise), [f"{i}.jpg" for i in range(1, 6)])
    record = {"clip_dir": str(folder), "frame_files": [f"{i}.jpg" for i in range(1, 6)], "onset": 1, "apex": 3,
              "offset": 5, "sample_key": "x/y/z"}
    arrays, info = sample_features(record, FeatureConfig(face=FaceConfig(fallback=None)))
    assert info["face"]["detector"] == "none" and info["landmarks"] == {"source": "none", "brows": None}
    assert np.isnan(arrays["landmarks"]).all() and arrays["frames"].shape == (10, 80, 80)


@requires_reference
def test_on_a_real_frame_the_landmarks_are_the_detectors_and_the_brows_above_the_eyes(reference):
    image = cv2.imread(str(reference / "frames" / "SAMM_006_05562.jpg"), cv2.IMREAD_GRAYSCALE)
    box = detect_face(image)
    crop = crop_face(image, box, 80)
    points = crop_points(box, 80, box.landmarks)
    landmarks, info = landmark_points(points, crop)
    eyes = sorted(points[:2].tolist())
    np.testing.assert_allclose(landmarks[:2], eyes, atol=1e-4)
    iod = float(np.hypot(*(landmarks[1] - landmarks[0])))
    above = landmarks[:2, 1] - landmarks[5:, 1]
    assert ((0.2 * iod - 1e-3 <= above) & (above <= 0.5 * iod + 1e-3)).all(), (above / iod, info)
    assert landmarks[3, 0] < landmarks[4, 0] and landmarks[2, 1] > landmarks[0, 1]  # mouth corners in order, nose lower
