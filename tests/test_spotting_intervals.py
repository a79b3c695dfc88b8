"""SOFTNet's window k, pseudo-labels, smoothing and decodings (training/spotting/intervals.py)."""

import numpy as np
import pytest

from merflow.training.spotting.intervals import (
    Interval,
    moving_average,
    peak_intervals,
    pseudo_labels,
    run_intervals,
    smooth,
    softnet_k,
    threshold,
    within_lengths,
)


def test_k_is_half_the_mean_duration_rounded_down():
    assert softnet_k([12, 13]) == 6        # int((12.5 + 1) / 2)
    assert softnet_k([1]) == 1
    with pytest.raises(ValueError):
        softnet_k([])


def test_k_of_the_real_sheets_is_softnets(reference):
    """ZOO.md section 2: CAS(ME)^2 micro 6 and macro 18 (an offset of 0 replaced by the apex), SAMM-LV micro 37
    and macro 217 (every macro row kept)."""
    from merflow.tasks.datasets import casme_sq_lv, samm_lv
    from merflow.tasks.datasets.long_videos import whole_frame

    def durations(intervals, kind):
        return [whole_frame(i.offset) - whole_frame(i.onset) for i in intervals if i.type == kind]

    _, casme = casme_sq_lv.read_sheet(reference / "casme_sq" / "CAS(ME)^2code_final.xlsx")
    _, samm = samm_lv.read_sheet(reference / "samm_lv" / "SAMM_LongVideos_Release.xlsx")
    assert (softnet_k(durations(casme, "micro")), softnet_k(durations(casme, "macro"))) == (6, 18)
    assert (softnet_k(durations(samm, "micro")), softnet_k(durations(samm, "macro"))) == (37, 217)


def test_a_window_overlapping_an_interval_is_labelled_one():
    labels = pseudo_labels(20, 3, [(10, 12)])
    assert len(labels) == 17                       # frames 0 .. n - k - 1 have a frame i + k
    assert np.flatnonzero(labels).tolist() == [8, 9, 10, 11, 12]   # windows i .. i + 2 touching 10 .. 12


def test_smoothing_averages_2k_frames_and_leaves_the_edges_undefined():
    values = smooth(np.arange(10, dtype=float), 2)
    assert np.isnan(values[:2]).all() and np.isnan(values[-2:]).all()
    assert values[2] == pytest.approx(np.mean([0, 1, 2, 3]))   # frames c - k .. c + k - 1
    assert np.allclose(moving_average(np.ones(7), 3), 1.0)


def test_peaks_become_intervals_of_2k_plus_one_frames():
    scores = np.zeros(100)
    scores[40:50] = 1.0
    found = peak_intervals(smooth(scores, 5), 0.5, 5, 100)
    assert len(found) == 1
    assert found[0].length == 11 and found[0].start <= 44 <= found[0].end


def test_runs_above_the_threshold_become_intervals_and_close_runs_join():
    scores = np.zeros(100)
    scores[[10, 11, 12, 15, 16, 60, 61]] = 1.0
    assert threshold(scores, 0.5) == pytest.approx(scores.mean() + 0.5 * (1 - scores.mean()))
    found = run_intervals(scores, 0.5, 4, 100)
    assert [(i.start, i.end) for i in found] == [(10, 20), (60, 65)]   # a run a .. b is a .. b + k
    assert [(i.start, i.end) for i in within_lengths(found, 7, 20)] == [(10, 20)]
    assert Interval(3, 5).length == 3
