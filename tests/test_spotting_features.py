"""Per-frame work on a long video (tasks/spotting_features.py): the face's track and its segments, SOFTNet's
regions from YuNet's five points, and the per-frame features, the same whichever chunks compute them."""

import numpy as np
import pytest

from merflow.configs.spotting import SpotFeatureConfig
from merflow.tasks.faces import FaceBox
from merflow.tasks.spotting_features import (
    OffsetFrames,
    Track,
    VideoFaceError,
    box_iou,
    build_track,
    chunk_features,
    roi_flow,
    roi_geometry,
    track_face,
    video_features,
)

CONFIG = SpotFeatureConfig(crop=64, roi=24, chunk_frames=16)


def box(cx: float, side: float = 40.0) -> FaceBox:
    return FaceBox(cx=cx, cy=50.0, side=side, angle=0.0, detector="yunet", confidence=0.9,
                   landmarks=((cx - 8, 45.0), (cx + 8, 45.0), (cx, 52.0), (cx - 6, 60.0), (cx + 6, 60.0)))


def test_a_face_that_moves_starts_a_new_segment_and_a_lost_one_keeps_its_box():
    assert box_iou(box(50), box(50)) == 1.0 and box_iou(box(50), box(100)) == 0.0
    detections = {0: None, 30: box(50).to_dict(), 60: box(51).to_dict(), 90: None, 120: box(70).to_dict()}
    track = build_track(150, detections, drift_iou=0.8)
    assert [(s.start, s.stop, s.found_at) for s in track.segments] == [(0, 120, 30), (120, 150, 120)]
    assert track.lost == (0, 90) and track.box_at(10).cx == 50 and track.box_at(149).cx == 70
    assert Track.from_dict(track.to_dict()) == track
    with pytest.raises(VideoFaceError, match="no face found in clip.mp4"):
        build_track(10, {0: None, 5: None}, 0.8, "clip.mp4")


@pytest.fixture(scope="module")
def rendered():
    """Two seconds of a synthetic face (30 fps, 160 x 120 grey) with one planted micro-expression."""
    from merflow.tasks.synthetic.faces import subject_identity
    from merflow.tasks.synthetic.long_videos import PlantedInterval, render_long_video

    rng = np.random.default_rng(0)
    planted = [PlantedInterval("micro", "surprise", 30, 35, 40)]
    frames = list(render_long_video(subject_identity(401, 0), planted, [], 60, 30.0, (120, 160), False, rng))
    return frames, planted[0]


def test_the_regions_lie_in_the_crop_where_the_face_is(rendered):
    frames, _ = rendered
    track = track_face(frames, 30.0, CONFIG)
    assert len(track.segments) == 1 and track.checked == (0, 30) and not track.lost
    geometry = roi_geometry(track.box_at(0), CONFIG.crop)
    (by0, by1, bx0, bx1), (my0, my1, mx0, mx1) = geometry.brows, geometry.mouth
    assert 0 <= by0 < by1 <= my1 <= CONFIG.crop and by0 < my0        # brows above the mouth
    assert 0 <= bx0 < mx0 < mx1 < bx1 <= CONFIG.crop                  # the mouth narrower than the brows
    ny0, ny1, nx0, nx1 = geometry.nose
    assert bx0 < nx0 < nx1 < bx1 and by0 < ny0
    still = np.full((64, 64), 128, np.uint8)
    assert np.abs(roi_flow(still, still, geometry, CONFIG)).max() == 0.0


def test_features_are_the_same_whichever_chunks_compute_them(rendered):
    frames, planted = rendered
    track = track_face(frames, 30.0, CONFIG)
    roi, motion = video_features(frames, 3, track, CONFIG)
    assert roi.shape == (60, 3, 24, 24) and roi.dtype == np.float16
    assert np.isnan(motion[-3:]).all() and not np.isnan(motion[:-3]).any()
    # A chunk computed alone, from just the frames it needs (a decoder's OffsetFrames), is the same.
    part, part_motion = chunk_features(OffsetFrames(20, frames[20:43], 60), 20, 40, 3, track, CONFIG)
    np.testing.assert_array_equal(part, roi[20:40])
    np.testing.assert_array_equal(part_motion, motion[20:40])
    # The planted micro-expression moves the face more than the still frames before it.
    assert np.nanmax(motion[planted.onset - 3:planted.offset]) > 3 * np.nanmedian(motion[:planted.onset - 3])
    with pytest.raises(IndexError):
        OffsetFrames(20, frames[20:43], 60)[10]


def test_a_video_without_a_face_is_one_clear_error():
    blank = [np.full((120, 160), 90, np.uint8)] * 40
    with pytest.raises(VideoFaceError, match="no face found in desk.avi: 2 frames checked"):
        track_face(blank, 30.0, CONFIG, video="desk.avi")


def test_an_interval_becomes_a_clip_with_its_apex_spotted(rendered):
    from merflow.configs.features import FeatureConfig
    from merflow.tasks.spotting_features import interval_features

    frames, planted = rendered
    found = interval_features(frames, planted.onset, planted.offset, None, FeatureConfig(size=28))
    assert found["flow"].shape == (4, 28, 28) and found["diff"].shape == (3, 28, 28)
    assert abs(found["apex"] - planted.apex) <= 2          # the frame that moved most from the onset
    given = interval_features(frames, planted.onset, planted.offset, planted.apex, FeatureConfig(size=28))
    assert given["apex"] == planted.apex
