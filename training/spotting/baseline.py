"""The spotter that learns nothing: the MEGC baseline's idea (HeyingGithub/Baseline-project-for-MEGC2020_spotting
@7d186cf: a motion signal against frame i + k, a threshold T = mean + p (max - mean) per video, and interval
length filters; ZOO.md section 2), on merflow's signal: the mean ROI flow magnitude of
tasks/spotting_features.py, smoothed over k frames.

Per expression type: frames whose smoothed signal reaches T form runs (runs closer than k frames joined);
a run a .. b is the interval a .. b + k; intervals outside the length filter [low, high] are dropped. p and
the filter are chosen on the training subjects' videos (``fit``: the pooled MEGC F1 over them, grids of
``SpotConfig``); k is SOFTNet's rule on the training intervals (training/spotting/loso.py). Nothing is
trained and nothing of a test subject is looked at.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from merflow.configs.spotting import SpotConfig
from merflow.training.spotting.intervals import Interval, moving_average, run_intervals, within_lengths
from merflow.training.spotting.metrics import match_video, prf


@dataclass(frozen=True)
class BaselineSettings:
    """One type's settings: the window k, the threshold fraction p and the length filter (frames)."""

    k: int
    p: float
    low: float
    high: float

    def to_dict(self) -> dict:
        """Plain JSON values (the infinite upper bound as None)."""
        values = asdict(self)
        values["high"] = None if math.isinf(self.high) else self.high
        return values


def predict(motion: np.ndarray, n_frames: int, settings: BaselineSettings) -> list[Interval]:
    """The intervals of one video from its motion signal (``motion_k<k>``, NaN where there is no i + k)."""
    smoothed = moving_average(motion, settings.k)
    return within_lengths(run_intervals(smoothed, settings.p, settings.k, n_frames), settings.low, settings.high)


def length_candidates(lengths: list[int], config: SpotConfig) -> list[tuple[float, float]]:
    """Length filters to choose from: quantile pairs of the training intervals' lengths, widened by the slack."""
    lengths = np.asarray(lengths, dtype=np.float64)
    found = []
    for low_q, high_q in config.length_quantiles:
        low = float(np.quantile(lengths, low_q)) * (1 - config.length_slack)
        high = math.inf if math.isinf(high_q) else float(np.quantile(lengths, min(high_q, 1.0))) * (1 + config.length_slack)
        if (low, high) not in found:
            found.append((low, high))
    return found


def fit(videos: list[tuple[np.ndarray, int, list[tuple[int, int]]]], k: int, config: SpotConfig
        ) -> tuple[BaselineSettings, float]:
    """The settings that score best (pooled MEGC F1) on ``videos`` ((motion, n_frames, intervals of the type)
    of the training subjects), and that F1. Ties go to the first in the grids' order."""
    lengths = [end - start + 1 for _, _, spans in videos for start, end in spans]
    candidates = length_candidates(lengths, config)
    best, best_f1 = None, -1.0
    smoothed = [(moving_average(motion, k), n_frames, spans) for motion, n_frames, spans in videos]
    for p in config.p_grid:
        decoded = [(run_intervals(values, p, k, n_frames), spans) for values, n_frames, spans in smoothed]
        for low, high in candidates:
            tp = n_pred = n_truth = 0
            for intervals, spans in decoded:
                kept = within_lengths(intervals, low, high)
                matched = match_video([(i.start, i.end, i.score) for i in kept], spans)
                tp += sum(1 for truth, _ in matched if truth is not None)
                n_pred += len(kept)
                n_truth += len(spans)
            f1 = prf(tp, n_pred - tp, n_truth - tp)[2]
            if f1 > best_f1:
                best, best_f1 = BaselineSettings(k, p, low, high), f1
    return best, best_f1
