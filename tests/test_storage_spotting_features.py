"""The per-frame store (storage/spotting_features.py): chunks written whole with their marks, a rerun plans only
what is missing or stale, and a video is read only when every chunk is done."""

import numpy as np
import pytest

from merflow.configs.spotting import SpotFeatureConfig
from merflow.storage.spotting_features import SpotFeatureStore, inner_chunk, track_key, video_fingerprint

CONFIG = SpotFeatureConfig(crop=64, roi=8, chunk_frames=16)
VIDEO = "casme_sq_lv/s15/15_0101"
TRACK = {"n_frames": 40, "segments": [], "checked": [0], "lost": []}


def written_store(tmp_path, fingerprint="f1"):
    store = SpotFeatureStore(tmp_path / "spot.zarr")
    store.prepare_video(CONFIG, VIDEO, 40, 30.0, fingerprint)
    store.write_track(CONFIG, VIDEO, TRACK)
    store.prepare_arrays(CONFIG, VIDEO, 3, 40)
    return store


def test_a_rerun_computes_only_what_is_missing_or_stale(tmp_path):
    store = written_store(tmp_path)
    stamp = {"fingerprint": "f1", "track": track_key(TRACK)}
    todo, done = store.chunks_to_compute(CONFIG, VIDEO, 3, 40, stamp)
    assert (todo, done) == ([0, 1, 2], 0)
    for chunk in todo:
        rows = min(16, 40 - 16 * chunk)
        store.write_chunk(CONFIG, VIDEO, 3, chunk, np.full((rows, 3, 8, 8), chunk + 1, np.float16),
                          np.full(rows, chunk + 1, np.float32), stamp)
    assert store.chunks_to_compute(CONFIG, VIDEO, 3, 40, stamp) == ([], 3)
    loaded = store.load(CONFIG, VIDEO, 3, ("roi", "motion"))
    assert loaded["roi"].shape == (40, 3, 8, 8) and loaded["motion"].tolist() == [1.0] * 16 + [2.0] * 16 + [3.0] * 8
    # A torn mark (a writer killed mid-write): that chunk alone is computed again, its mark removed first.
    store.fs.pipe_file(store.mark_path(CONFIG, VIDEO, 3, 1), b'{"chunk": 1, "fing')
    assert store.chunks_to_compute(CONFIG, VIDEO, 3, 40, stamp) == ([1], 2)
    assert not store.fs.exists(store.mark_path(CONFIG, VIDEO, 3, 1))
    with pytest.raises(LookupError, match="chunk 1 of 3 is missing"):
        store.load(CONFIG, VIDEO, 3)
    # Another track (the face found elsewhere): every chunk again.
    assert store.chunks_to_compute(CONFIG, VIDEO, 3, 40, {**stamp, "track": "other"})[0] == [0, 1, 2]


def test_changed_frames_forget_the_track(tmp_path):
    store = written_store(tmp_path)
    assert store.attributes(CONFIG, VIDEO)["track"] == TRACK
    assert store.prepare_video(CONFIG, VIDEO, 40, 30.0, "f2")["track"] is None
    assert store.detections_to_compute(CONFIG, VIDEO, 3, "f2") == [0, 1, 2]
    store.write_detections(CONFIG, VIDEO, 0, "f2", {0: None, 30: {"cx": 1.0}})
    assert store.detections_to_compute(CONFIG, VIDEO, 3, "f2") == [1, 2]
    assert store.read_detections(CONFIG, VIDEO, 3) == {0: None, 30: {"cx": 1.0}}


def test_fingerprints_and_chunks(tmp_path):
    (tmp_path / "img1.jpg").write_bytes(b"x")
    first = video_fingerprint(str(tmp_path), ["img1.jpg", "img2.jpg"])
    (tmp_path / "img2.jpg").write_bytes(b"y")
    assert video_fingerprint(str(tmp_path), ["img1.jpg", "img2.jpg"]) != first
    assert inner_chunk(512) == 64 and inner_chunk(48) == 48 and inner_chunk(100) == 50
