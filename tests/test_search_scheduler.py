"""training/search/scheduler.py builds on Ray's private ``_Bracket``: the parts of it that it uses, pinned, so
that a Ray release that changes them fails here, at once, and not as a scheduler that silently pools folds
(tests/test_tune.py runs the scheduler itself through a real Tuner)."""

from __future__ import annotations

import inspect

from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from merflow.training.search.scheduler import foldwise_asha


def test_the_private_bracket_has_what_the_scheduler_uses():
    # The scheduler passes the first four positionally (Ray 2.60's signature; stop_last_trials keeps its default).
    assert list(inspect.signature(_Bracket.__init__).parameters)[:5] == ["self", "min_t", "max_t", "reduction_factor",
                                                                         "s"]
    bracket = _Bracket(1, 3, 2, 0)
    assert [milestone for milestone, _ in bracket._rungs] == [2, 1]  # rungs from the last, each {trial: score}
    assert all(recorded == {} for _, recorded in bracket._rungs)
    scheduler = foldwise_asha(max_t=3)
    assert isinstance(scheduler, AsyncHyperBandScheduler) and scheduler._trial_info == {}
    assert scheduler.fold_rungs() == {}
