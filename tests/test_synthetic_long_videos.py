"""Synthetic long videos (tasks/synthetic/long_videos.py): planted intervals that never overlap each other or
speech, frames that move where they are planted, and `merflow synth` writing them."""

import json

import numpy as np

from merflow.configs.synth import LongVideoSynthConfig
from merflow.flows.cli import main
from merflow.tasks.synthetic.long_videos import GAP_SECONDS, plan_video


def test_planned_expressions_and_speech_never_overlap():
    rng = np.random.default_rng(4)
    planted, talks = plan_video(900, 30.0, micro=4, macro=2, emotions=("surprise", "happiness"), talking=True, rng=rng)
    assert sum(p.type == "micro" for p in planted) == 4 and sum(p.type == "macro" for p in planted) == 2 and talks
    spans = sorted([(p.onset, p.offset) for p in planted] + [(t.start, t.stop) for t in talks])
    gap = GAP_SECONDS * 30
    assert all(b[0] - a[1] > gap for a, b in zip(spans, spans[1:]))
    for p in planted:
        assert p.onset < p.apex < p.offset
        seconds = (p.offset - p.onset + 1) / 30
        assert (0.2 <= seconds <= 0.5) if p.type == "micro" else (0.85 <= seconds <= 2.1)
    assert sorted(p.emotion for p in planted) == ["happiness"] * 3 + ["surprise"] * 3   # in turn


def test_the_face_moves_where_an_expression_is_planted(long_video_folders):
    import cv2

    root = long_video_folders["casme_sq_lv"]
    truth = json.loads((root / "merflow-synthetic.json").read_text())["truth"]
    event = next(t for t in truth if t["type"] == "macro")
    folder = next((root / "rawpic").glob(f"s*/{event['video']}*"))

    def frame(index):  # blurred: the sensor noise averaged away, the motion kept
        image = cv2.imread(str(folder / f"img{index + 1}.jpg"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        return cv2.GaussianBlur(image, (0, 0), 1.5)

    moved = np.abs(frame(event["apex"]) - frame(event["onset"])).max()
    still = np.abs(frame(max(event["onset"] - 6, 0)) - frame(max(event["onset"] - 2, 0))).max()
    assert moved > 2 * still


def test_merflow_synth_writes_a_long_video_set(tmp_path):
    assert main(["synth", "--dataset", "casme_sq_lv", "--subjects", "1", "--videos-per-subject", "1", "--seconds", "2",
                 "--micro-per-video", "1", "--macro-per-video", "0", "--scale", "0.1", "--archive", "none",
                 "--no-talking", "--out", str(tmp_path)]) == 0
    root = tmp_path / "CASME_sq_long"
    manifest = json.loads((root / "merflow-synthetic.json").read_text())
    assert manifest["talking"] is False and len(manifest["truth"]) == 1
    assert len(list(root.glob("rawpic/s15/15_0101*/img*.jpg"))) == 60
    assert LongVideoSynthConfig("sammlv").dataset == "samm_lv"
