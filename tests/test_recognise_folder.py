"""The recognise-folder flow (flows/recognise_folder.py), as its deployment runs it: a real Prefect flow run over a
folder of videos, one result per video, failures recorded as results, and a rerun that does nothing."""

import json

import cv2
import numpy as np
import pytest

from merflow.configs.recognise import RecogniseConfig
from merflow.flows.parameters import VideoFolderOptions
from merflow.flows.recognise_folder import recognise_folder_flow
from merflow.storage import long_videos, recognitions

pytestmark = pytest.mark.slow


def write_video(path, frames, fps, fourcc):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path.suffix}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_a_rerun_of_the_folder_flow_does_nothing(recognition_bundle, recognition_set, prefect_backend, tmp_path):
    """Two videos (one with a face, one without) and one whose result folder another run holds: the first run
    recognises the first, records the faceless one as failed and leaves the held one; the rerun reads no video and
    rewrites nothing (each result's stamp, bundle and settings unchanged), and recognises the one left."""
    row = long_videos.read_videos(recognition_set["catalog"]).sort_values("video_key").iloc[0]
    frames = [cv2.imread(f"{row['video_dir']}/{name}") for name in row["frame_files"][:90]]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_video(inbox / "talk.avi", frames, 30.0, "MJPG")
    write_video(inbox / "held.avi", frames[:60], 30.0, "MJPG")
    write_video(inbox / "empty.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 45, 30.0, "mp4v")
    (inbox / "notes.txt").write_text("not a video")
    out = tmp_path / "recognised"
    options = VideoFolderOptions(dask_address=recognition_set["dask_address"])
    settings = RecogniseConfig(strips=False)

    def run():
        return recognise_folder_flow(source=str(inbox), model=str(recognition_bundle), out=str(out),
                                     settings=settings, videos=options)

    with recognitions.claim(out / "held.avi"):  # another run writes this one now
        first = run()
    assert first["videos"] == 3 and first["recognised"] == 1 and first["failed"] == 1 and first["busy"] == 1
    assert json.loads((out / "talk.avi" / "result.json").read_text())["status"] == "ok"
    failed = json.loads((out / "empty.mp4" / "result.json").read_text())
    assert failed["status"] == "failed" and "no face found in" in failed["error"]
    assert not (out / "held.avi").exists()
    stamps = {name: (out / name / "result.json").stat().st_mtime_ns for name in ("talk.avi", "empty.mp4")}

    second = run()
    assert sorted(second["skipped"]) == ["empty.mp4", "talk.avi"] and second["recognised"] == 1
    assert [o["video"] for o in second["outcomes"]] == ["held.avi"]
    assert {name: (out / name / "result.json").stat().st_mtime_ns for name in stamps} == stamps

    third = run()
    assert len(third["skipped"]) == 3 and third["outcomes"] == []
