"""`merflow export` and `merflow recognise` as users run them (flows/export.py, flows/recognise.py): a bundle exported
from a spot run of synthetic long videos, applied to a video of the same layout in each container, a folder of
frames, a faceless and a truncated video, a rerun, the bundle alone without the catalog and the store."""

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from merflow.flows.cli import main
from merflow.storage import long_videos, recognitions
from merflow.training.spotting.metrics import iou

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(recognition_bundle):
    """The spot run exported (tests/conftest.py ``recognition_bundle``)."""
    return recognition_bundle


@pytest.fixture(scope="module")
def video(recognition_set):
    """The first person's long video (one the bundle was fitted on), its frames, fps and annotated intervals."""
    videos = long_videos.read_videos(recognition_set["catalog"])
    row = videos.sort_values("video_key").iloc[0]
    intervals = long_videos.read_intervals(recognition_set["catalog"])
    truth = intervals[(intervals["video_key"] == row["video_key"]) & (intervals["type"] == "micro")]
    frames = [cv2.imread(f"{row['video_dir']}/{name}") for name in row["frame_files"]]
    return {"row": row, "frames": frames, "fps": float(row["fps"]),
            "truth": sorted(zip(truth["onset"].astype(int), truth["offset"].astype(int)))}


def write_video(path, frames, fps, fourcc):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path.suffix}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_the_bundle_holds_what_applying_it_needs(bundle, recognition_set):
    card = json.loads((bundle / "bundle.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == {"bundle.json", "recogniser.npz", "spotter-micro.npz", "golden.npz"}
    spotter = card["spotting"]["spotters"]["micro"]
    assert spotter["spotter"] == "softnet" and spotter["fps"] == 30.0
    assert spotter["in_seconds"]["k_seconds"] == pytest.approx(spotter["k"] / 30.0)
    assert card["spotting"]["features"]["crop"] == 64 and card["recogniser"]["model"] == "nearest-centroid"
    assert card["recogniser"]["classes"] == ["negative", "positive", "surprise"]
    assert card["recogniser"]["features"]["face"]["detector"] == "yunet" and "size" in card["recogniser"]["features"]
    source = card["source"]["spotters"]
    assert source["run"] == recognition_set["spot_run"] and len(source["subjects"]) == 3  # every subject, not a fold's
    assert source["catalog"] == recognition_set["catalog"] and card["versions"]["torch"]
    assert source["store"] == recognition_set["spot_store"] and len(manifest["hash"]) == 64
    with np.load(bundle / "spotter-micro.npz", allow_pickle=False) as weights:  # a state_dict's arrays, no module
        assert {"dense.weight", "out.weight", "streams.0.weight"} <= set(weights.files)


def check_table(out, fps):
    table = pd.read_parquet(out / "intervals.parquet")
    assert (table["start_s"] == table["start_frame"] / fps).all() and (table["end_s"] == table["end_frame"] / fps).all()
    assert table["class"].isin(["negative", "positive", "surprise"]).all()
    assert table["confidence"].between(0, 1).all() and table["face_size"].gt(0).all()
    assert (table["start_frame"] <= table["apex_frame"]).all() and (table["apex_frame"] <= table["end_frame"]).all()
    assert list(pd.read_csv(out / "intervals.csv")["start_frame"]) == list(table["start_frame"])
    return table


def found(table, truth) -> list[float]:
    spotted = list(zip(table["start_frame"], table["end_frame"]))
    return [max((iou(t, s) for s in spotted), default=0.0) for t in truth]


def test_each_planted_interval_is_found_in_a_lossless_video(bundle, video, tmp_path):
    """A video the bundle was fitted on, in FFV1 (lossless) in .avi: each annotated micro-expression has a spotted
    interval at IoU >= 0.5 (MEGC's true positive), in frames and in seconds, with a class, a picture and a strip."""
    path = write_video(tmp_path / "v.avi", video["frames"], video["fps"], "FFV1")
    out = tmp_path / "out"
    assert main(["recognise", str(path), "--model", str(bundle), "--out", str(out)]) == 0
    table = check_table(out, video["fps"])
    assert min(found(table, video["truth"])) >= 0.5, (video["truth"], list(zip(table["start_frame"], table["end_frame"])))
    assert (out / "timeline.png").stat().st_size > 0 and len(list((out / "strips").glob("*.png"))) == len(table)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["video"]["fps_source"] == "container" and result["model"]["drift"] == []


def test_each_container_kind_is_read_and_recognised(bundle, video, tmp_path):
    """mp4v in .mp4 and .mov, MJPG in .avi: what OpenCV's wheel writes (it has no H.264 encoder). Every frame is
    decoded and the video recognised; re-encoding these 160x120 frames a second time, lossily, weakens the
    smallest motions, so fewer of the planted intervals stand out than in the lossless video (docs/spotting.md)."""
    for kind, fourcc in (("mp4", "mp4v"), ("mov", "mp4v"), ("avi", "MJPG")):
        path = write_video(tmp_path / f"v.{kind}", video["frames"], video["fps"], fourcc)
        out = tmp_path / f"out-{kind}"
        assert main(["recognise", str(path), "--model", str(bundle), "--out", str(out), "--no-strips"]) == 0
        result = json.loads((out / "result.json").read_text())
        assert result["video"]["n_frames"] == len(video["frames"]) and result["video"]["fps"] == video["fps"]
        table = check_table(out, video["fps"])
        assert sum(score >= 0.5 for score in found(table, video["truth"])) >= len(video["truth"]) // 2, kind


def reference_intervals(bundle, folder, names, fps) -> list[tuple[int, int]]:
    """The bundle's spotter called directly (training/spotting/loso.py, as under LOSO) on the frames, read as the
    spot flow reads a catalog's: what recognise must find on the same folder, whatever the spotter's quality."""
    from merflow.flows.recognise import load_model
    from merflow.tasks.spotting_features import FrameFiles, track_face, video_features

    model = load_model(str(bundle)).model
    spotter = model.spotters["micro"]
    frames = FrameFiles(str(folder), names)
    track = track_face(frames, fps, model.spot_features)
    roi, motion = video_features(frames, spotter.k, track, model.spot_features)
    return [(i.start, i.end) for i in spotter.intervals({"roi": roi, "motion": motion}, len(frames))]


def test_a_folder_of_frames_in_chunks_on_dask_finds_what_the_spotter_finds_in_one_process(bundle, video,
                                                                                        recognition_set, tmp_path):
    """A folder of frames (the video's first 150, sorted naturally: img2 before img10), in chunks of 48 frames on
    Dask, gives the intervals of the bundle's spotter called directly on the whole folder in one process: chunking
    changes nothing, and the planted intervals in those frames are found."""
    names = list(video["row"]["frame_files"])[:150]
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(f"{video['row']['video_dir']}/{name}")
    chunked = tmp_path / "chunked"
    assert main(["recognise", str(folder), "--model", str(bundle), "--out", str(chunked), "--fps", "30",
                 "--no-strips", "--chunk-frames", "48", "--dask-address", recognition_set["dask_address"]]) == 0
    table = check_table(chunked, 30.0)
    spotted = list(zip(table["start_frame"], table["end_frame"]))
    assert spotted == reference_intervals(bundle, folder, names, 30.0)
    truth = [t for t in video["truth"] if t[1] < len(names)]
    assert truth and all(max(iou(t, s) for s in spotted) >= 0.5 for t in truth), (truth, spotted)
    assert json.loads((chunked / "result.json").read_text())["video"]["fps_source"] == "given"
    assert not (chunked / "strips").exists()
    # A folder has no frame rate of its own.
    assert main(["recognise", str(folder), "--model", str(bundle), "--out", str(tmp_path / "no-fps")]) == 2


def test_a_rerun_does_nothing_and_a_busy_folder_is_refused(bundle, video, tmp_path, capsys):
    path = write_video(tmp_path / "v.avi", video["frames"][:150], video["fps"], "MJPG")
    out = tmp_path / "out"
    assert main(["recognise", str(path), "--model", str(bundle), "--out", str(out), "--no-strips"]) == 0
    before = (out / "result.json").stat().st_mtime_ns
    assert main(["recognise", str(path), "--model", str(bundle), "--out", str(out), "--no-strips"]) == 0
    assert "nothing to do" in capsys.readouterr().out and (out / "result.json").stat().st_mtime_ns == before
    other = tmp_path / "other"
    with recognitions.claim(other):  # another command writing it (the lock refuses this process's second claim too)
        assert main(["recognise", str(path), "--model", str(bundle), "--out", str(other)]) == 1  # refused, not wrong
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "is in use by `merflow recognise" in line and "choose another --out" in line, line
    assert not other.exists()
    assert main(["recognise", str(path), "--model", str(bundle), "--out", str(other), "--no-strips"]) == 0  # released


def test_a_faceless_a_truncated_and_a_too_slow_video_are_one_line_each(bundle, video, tmp_path, capsys):
    faceless = write_video(tmp_path / "empty.mp4", [np.full((120, 160, 3), 80 + i % 3, np.uint8) for i in range(60)],
                           30.0, "mp4v")
    whole = write_video(tmp_path / "whole.avi", video["frames"][:120], 30.0, "MJPG")
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(write_video(tmp_path / "full.mp4", video["frames"][:60], 30.0, "mp4v").read_bytes()[:20000])
    cases = {faceless: "no face found in", truncated: "is truncated or damaged: its container lists 120 frames",
             cut_mp4: "cannot be opened as a video", tmp_path / "none.mp4": "no video at"}
    for path, words in cases.items():
        out = tmp_path / f"out-{path.name}"
        assert main(["recognise", str(path), "--model", str(bundle), "--out", str(out)]) == 2
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and words in lines[0], lines
        assert not out.exists()  # whole or absent
    assert main(["recognise", str(whole), "--model", str(bundle), "--out", str(tmp_path / "slow"), "--fps", "4"]) == 2
    assert "too few to tell an onset from an apex; it needs" in capsys.readouterr().out


def test_a_tampered_bundle_is_refused_in_one_line(bundle, video, tmp_path, capsys):
    path = write_video(tmp_path / "v.avi", video["frames"][:90], video["fps"], "MJPG")
    for name in ("recogniser.npz", "manifest.json"):
        copy = tmp_path / f"model-{name}"
        shutil.copytree(bundle, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0xFF if name.endswith(".npz") else 0
        if name == "manifest.json":  # an edited file list: a hash changed by hand
            manifest = json.loads(data)
            manifest["files"]["recogniser.npz"]["sha256"] = "0" * 64
            data = json.dumps(manifest).encode()
        (copy / name).write_bytes(bytes(data))
        assert main(["recognise", str(path), "--model", str(copy), "--out", str(tmp_path / "out")]) == 2
        line = capsys.readouterr().out.strip()
        assert line.startswith("error:") and "\n" not in line
        assert ("recogniser.npz was changed after export" in line if name.endswith(".npz")
                else "manifest.json was changed after export" in line), line


def test_the_bundle_loads_and_applies_without_the_catalog_or_the_store(bundle, video, recognition_set, tmp_path):
    """The catalog and the store moved away: the bundle alone is enough (read afresh from its folder, its golden
    check finding no drift). In this process, not a fresh one: a subprocess cost ~10 s of CI's budget, and nothing
    of the bundle is cached between loads (flows/recognise.py ``load_model`` reads and checks every file)."""
    from merflow.flows.recognise import load_model, recognise_video

    path = write_video(tmp_path / "v.avi", video["frames"][:150], video["fps"], "MJPG")
    moved = {name: recognition_set["root"] / f"moved-{name}" for name in ("catalog", "spot.zarr")}
    for name, target in moved.items():
        (recognition_set["root"] / name).rename(target)
    try:
        model = load_model(str(bundle))
        result = recognise_video(str(path), model, str(tmp_path / "out"))
    finally:
        for name, target in moved.items():
            target.rename(recognition_set["root"] / name)
    assert model.drift == [] and result["status"] == "ok" and result["intervals"] >= 1
