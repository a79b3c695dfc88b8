"""Intervals from per-frame scores, and the window k, as SOFTNet defines them
(genbing99/SoftNet-SpotME@dd43d1e load_label.py ``cal_k``, training.py ``pseudo_labeling``, ``spotting``).

Frames are 0-based indices into a video; an interval (start, end) is inclusive at both ends, as the MEGC
metric counts it. The score of frame i describes the motion between frame i and frame i + k, so a video
of n frames has n - k scored frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks


@dataclass(frozen=True)
class Interval:
    """A spotted (or annotated) stretch of a video: frames ``start`` .. ``end`` inclusive."""

    start: int
    end: int
    score: float = 0.0

    @property
    def length(self) -> int:
        """Frames in it."""
        return self.end - self.start + 1


def softnet_k(durations) -> int:
    """SOFTNet's window: k = int((N + 1) / 2), N the mean of (offset - onset) over ``durations`` (load_label.py
    cal_k); at least 1. ``durations`` are offset - onset of the intervals of one expression type."""
    durations = np.asarray(list(durations), dtype=np.float64)
    if not len(durations):
        raise ValueError("no intervals to take the window k from")
    return max(int((durations.mean() + 1) / 2), 1)


def pseudo_labels(n_frames: int, k: int, truths: list[tuple[int, int]]) -> np.ndarray:
    """SOFTNet's targets: frame i (0 <= i < n_frames - k) is 1 when its window i .. i + k - 1 overlaps an
    interval (IoU > 0), else 0 (training.py pseudo_labeling). float32 (n_frames - k,)."""
    labels = np.zeros(max(n_frames - k, 0), np.float32)
    for onset, offset in truths:
        labels[max(onset - k + 1, 0):max(min(offset + 1, len(labels)), 0)] = 1.0
    return labels


def smooth(scores: np.ndarray, k: int) -> np.ndarray:
    """SOFTNet's score aggregation: frame c gets the mean of scores c - k .. c + k - 1 (2k frames), for
    k <= c < len - k; NaN elsewhere (training.py ``spotting``: score_plot_agg[x + k] = mean(score[x:x + 2k]))."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(len(scores), np.nan)
    if len(scores) < 2 * k + 1:
        return out
    cumulative = np.concatenate([[0.0], np.cumsum(np.nan_to_num(scores))])
    centres = np.arange(k, len(scores) - k)
    out[centres] = (cumulative[centres + k] - cumulative[centres - k]) / (2 * k)
    return out


def moving_average(scores: np.ndarray, width: int) -> np.ndarray:
    """The centred mean over ``width`` frames (edges over what there is), NaN where the score is NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    valid = ~np.isnan(scores)
    filled = np.where(valid, scores, 0.0)
    kernel = np.ones(max(int(width), 1))
    sums = np.convolve(filled, kernel, mode="same")
    counts = np.convolve(valid.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    out[~valid] = np.nan
    return out


def threshold(scores: np.ndarray, p: float) -> float:
    """T = mean + p (max - mean) over a video's valid scores (Moilanen's threshold, SOFTNet training.py)."""
    valid = np.asarray(scores, dtype=np.float64)
    valid = valid[~np.isnan(valid)]
    if not len(valid):
        return float("inf")
    mean = float(valid.mean())
    return mean + p * (float(valid.max()) - mean)


def peak_intervals(smoothed: np.ndarray, p: float, k: int, n_frames: int) -> list[Interval]:
    """SOFTNet's decoding: peaks of the smoothed score at least T high and k frames apart
    (``find_peaks(height=T, distance=k)``), each the interval [peak - k, peak + k] (clipped to the video);
    its score is the peak's height."""
    values = np.asarray(smoothed, dtype=np.float64)
    valid = ~np.isnan(values)
    if not valid.any():
        return []
    floor = np.nanmin(values)
    peaks, _ = find_peaks(np.where(valid, values, floor - 1.0), height=threshold(values, p), distance=max(k, 1))
    return [Interval(max(int(c) - k, 0), min(int(c) + k, n_frames - 1), float(values[c])) for c in peaks]


def run_intervals(scores: np.ndarray, p: float, k: int, n_frames: int, merge_gap: int | None = None) -> list[Interval]:
    """The untrained spotter's decoding: frames whose score is at least T, grouped into runs (runs fewer
    than ``merge_gap`` frames apart, k by default, joined); a run a .. b becomes the interval a .. b + k (the
    frames its flow compared), clipped to the video; its score is the run's highest."""
    values = np.asarray(scores, dtype=np.float64)
    above = np.nan_to_num(values, nan=-np.inf) >= threshold(values, p)
    frames = np.flatnonzero(above)
    if not len(frames):
        return []
    gap = k if merge_gap is None else merge_gap
    breaks = np.flatnonzero(np.diff(frames) > gap)
    starts = np.concatenate([[frames[0]], frames[breaks + 1]])
    ends = np.concatenate([frames[breaks], [frames[-1]]])
    return [Interval(int(a), min(int(b) + k, n_frames - 1), float(np.nanmax(values[a:b + 1])))
            for a, b in zip(starts, ends)]


def within_lengths(intervals: list[Interval], low: float, high: float) -> list[Interval]:
    """The intervals whose length (frames) lies in low .. high (the MEGC baseline's length filters)."""
    return [i for i in intervals if low <= i.length <= high]
