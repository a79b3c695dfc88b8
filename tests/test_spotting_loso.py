"""Leave-one-subject-out spotting (training/spotting/loso.py): every setting chosen without the test subject,
the published recipe's leak, and the learned spotter above the one that learns nothing on synthetic long videos."""

import json

import numpy as np
import pandas as pd
import pytest

from merflow.configs.spotting import SpotConfig
from merflow.training.spotting.loso import (
    SpotVideo,
    TruthInterval,
    split_validation,
    spot_fold,
    spot_loso,
    windows_needed,
)
from merflow.training.spotting.metrics import match_intervals, megc_counts


def signal_videos(seed: int = 0) -> tuple[list[SpotVideo], dict]:
    """Four people, a video each: a noisy motion signal with a bump where each interval is (any k)."""
    rng = np.random.default_rng(seed)
    videos, signals = [], {}
    for person in range(4):
        n, truths = 600, []
        signal = rng.gamma(2.0, 0.02, n)
        for index, (start, length, kind, height) in enumerate([(60, 10, "micro", 0.5), (200, 12, "micro", 0.6),
                                                               (330, 45, "macro", 1.5), (480, 9, "micro", 0.5)]):
            start += int(rng.integers(-20, 20)) + person
            truths.append(TruthInterval(f"p{person}/i{index}", kind, start, start + length - 1))
            signal[max(start - 3, 0):start + length - 3] += height
        key = f"set/p{person}/v"
        videos.append(SpotVideo(key, f"set/p{person}", n, 30.0, tuple(truths)))
        signals[key] = signal
    return videos, signals


def loader(signals):
    def load(key, k, arrays):
        return {"motion": np.concatenate([signals[key][:len(signals[key]) - k], np.full(k, np.nan)])}
    return load


def scores(videos, predictions, types):
    truths = pd.DataFrame([{"video_key": v.key, "type": t.type, "onset": t.onset, "offset": t.offset,
                            "interval_key": t.key} for v in videos for t in v.truths if t.type in types])
    matched_preds, matched_truths = match_intervals(predictions, truths)
    return {r["type"]: r for r in megc_counts(matched_preds, matched_truths, types)}


def test_the_baseline_finds_both_types_on_clear_signals():
    videos, signals = signal_videos()
    predictions, settings = spot_loso(videos, loader(signals), SpotConfig(spotter="baseline"))
    found = scores(videos, predictions, ("micro", "macro"))
    assert found["micro"]["f1"] > 0.7 and found["macro"]["f1"] > 0.7
    assert set(settings["type"]) == {"micro", "macro"} and settings["chosen_on"].eq("training subjects").all()
    micro_k = settings.loc[settings["type"] == "micro", "k"]
    assert (micro_k == int((np.mean([9, 11, 8, 9, 11, 8, 9, 11, 8]) + 1) / 2)).all()   # softnet_k of the others


def test_a_folds_settings_never_see_its_test_subject():
    videos, signals = signal_videos()
    _, chosen = spot_fold("set/p0", videos, loader(signals), SpotConfig(spotter="baseline"), 0)
    # The test subject's annotations emptied, its signal changed: the fold chooses exactly the same.
    blind = [SpotVideo(v.key, v.subject, v.n_frames, v.fps, ()) if v.subject == "set/p0" else v for v in videos]
    signals_changed = dict(signals, **{"set/p0/v": signals["set/p0/v"] * 3})
    _, again = spot_fold("set/p0", blind, loader(signals_changed), SpotConfig(spotter="baseline"), 0)
    assert chosen == again


def test_the_published_recipe_takes_k_from_every_subject():
    videos, _ = signal_videos()
    honest = windows_needed(videos, SpotConfig(spotter="softnet"))
    published = windows_needed(videos, SpotConfig(spotter="softnet", recipe="published"))
    from merflow.training.spotting.intervals import softnet_k
    from merflow.training.spotting.loso import durations

    assert published["micro"] == {softnet_k(durations(videos, "micro"))}      # one k, from everybody
    assert len(honest["micro"]) >= 1
    assert SpotConfig(spotter="softnet", recipe="published").leaky
    assert "test subject included" in SpotConfig(spotter="softnet", recipe="published").chosen_on
    with pytest.raises(ValueError, match="the baseline has no published recipe"):
        SpotConfig(spotter="baseline", recipe="published")


def test_validation_subjects_are_drawn_from_the_training_subjects():
    fit, held = split_validation(["a", "b", "c", "d"], 0.25, seed=3)
    assert len(held) == 1 and sorted(fit + held) == ["a", "b", "c", "d"]
    assert split_validation(["a", "b", "c", "d"], 0.25, seed=3) == (fit, held)
    assert split_validation(["a"], 0.25, seed=3) == (["a"], [])
    assert len(split_validation(["a", "b"], 0.9, seed=3)[0]) == 1   # never every subject


def test_the_learned_spotter_beats_the_one_that_learns_nothing(spotting_set):
    """On synthetic long videos with planted micro-expressions, faces that talk (the mouth moving more than a
    micro-expression does), blink and nod: SOFTNet's pooled LOSO F1 above the baseline's, every setting chosen
    on training subjects. SOFTNet trains at test size here (5 epochs of batches of 32 at lr 0.01, 24-pixel
    regions) so that its five folds train in seconds."""
    from merflow.flows.spotting import ArrayCache, read_long_videos, spot_videos
    from merflow.storage.spotting_features import SpotFeatureStore

    videos_table, intervals = read_long_videos(spotting_set["catalog"], "casme_sq_lv")
    videos = [v for v in spot_videos(videos_table, intervals[intervals["type"] == "micro"])
              if v.key not in spotting_set["summary"]["per_frame"]["no_face"]]
    load = ArrayCache(SpotFeatureStore(spotting_set["store"]), spotting_set["features"])
    baseline, _ = spot_loso(videos, load, SpotConfig(spotter="baseline", types=("micro",)))
    learned, settings = spot_loso(videos, load, SpotConfig(spotter="softnet", types=("micro",), epochs=5,
                                                           batch_size=32, lr=0.01))
    untrained_f1 = scores(videos, baseline, ("micro",))["micro"]["f1"]
    learned_f1 = scores(videos, learned, ("micro",))["micro"]["f1"]
    flow_f1 = next(r["f1"] for r in spotting_set["summary"]["pooled"] if r["evaluator"] == "megc" and r["type"] == "micro")
    assert untrained_f1 == pytest.approx(flow_f1)          # the flow's run, the same folds and settings
    assert learned_f1 > untrained_f1, (learned_f1, untrained_f1)
    assert settings["validation_subjects"].notna().all()   # p chosen on held-out training subjects
    assert all(json.loads(s)["p"] in SpotConfig().p_grid for s in settings["settings"])


def test_a_spotter_fitted_on_every_subject_spots_any_video_and_speaks_seconds():
    from merflow.training.spotting.loso import fit_spotter

    videos, signals = signal_videos()
    fitted = fit_spotter(videos, videos, loader(signals), SpotConfig(spotter="baseline"), "micro", seed=0)
    assert fitted.arrays == ("motion",) and fitted.k >= 1
    seconds = fitted.in_seconds(30.0)
    assert seconds["k_seconds"] == pytest.approx(fitted.k / 30) and seconds["p"] == fitted.settings["p"]
    faster = fitted.at_fps(30.0, 200.0)                     # the same spotter for a 200 fps video
    assert faster.k == round(fitted.k * 200 / 30) and faster.settings["p"] == fitted.settings["p"]
    assert faster.settings["low"] == pytest.approx(fitted.settings["low"] * 200 / 30)
    other, other_signals = signal_videos(seed=5)           # a video nobody fitted on
    found = fitted.intervals(loader(other_signals)(other[0].key, fitted.k, ("motion",)), other[0].n_frames)
    truths = [(t.onset, t.offset) for t in other[0].truths if t.type == "micro"]
    assert sum(any(i.start <= end and start <= i.end for start, end in truths) for i in found) >= 2
