"""Early stopping for a search: ASHA with one set of rungs per fold (``foldwise_asha``)."""

from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from merflow.training.search.reports import METRIC, TIME_ATTR


def foldwise_asha(max_t: int, grace_period: int = 1, reduction_factor: float = 2):
    """ASHA with its own rungs per fold: a trial is compared only with the other configurations of its fold.

    Plain ASHA keeps one set of rungs for all trials, so a fold whose subjects are hard to recognise would
    have its best configuration stopped for scoring below another fold's weak ones: which settings a fold
    keeps would then depend on other folds' validation subjects, each of which is a test subject elsewhere
    (tests/test_tune.py shows both). This scheduler is Ray's ``AsyncHyperBandScheduler`` with each trial
    given its fold's bracket.

    Built on Ray's private ``ray.tune.schedulers.async_hyperband._Bracket`` (its constructor
    ``(min_t, max_t, reduction_factor, s)`` and its ``_rungs``, a list of (milestone, {trial id: score})),
    and on the scheduler's ``_trial_info`` (trial id -> bracket): neither is public API, and either may
    change in any Ray release. That is why pyproject.toml pins ray[tune] to 2.60.x, and why
    tests/test_tune.py's early-stopping test runs this scheduler through a real Tuner: a Ray upgrade is
    accepted only where that test passes.
    """

    class FoldwiseASHA(AsyncHyperBandScheduler):
        def __init__(self):
            super().__init__(time_attr=TIME_ATTR, metric=METRIC, mode="max", max_t=max_t,
                             grace_period=grace_period, reduction_factor=reduction_factor)
            self._fold_brackets: dict[str, _Bracket] = {}

        def on_trial_add(self, tune_controller, trial):
            """A new trial joins its fold's bracket (made on the fold's first trial)."""
            super().on_trial_add(tune_controller, trial)  # checks metric and mode
            fold = trial.config["trial"]["fold"]
            if fold not in self._fold_brackets:
                self._fold_brackets[fold] = _Bracket(grace_period, max_t, reduction_factor, 0)
            self._trial_info[trial.trial_id] = self._fold_brackets[fold]

        def fold_rungs(self) -> dict[str, list]:
            """Per fold, the scores recorded at each rung: what early stopping compared."""
            return {fold: [(milestone, dict(recorded)) for milestone, recorded in bracket._rungs]
                    for fold, bracket in self._fold_brackets.items()}

    return FoldwiseASHA()
