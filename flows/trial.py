"""The Tune trainable: one configuration on one fold (``fold_trial``), the unit a search's engine runs.

It lives in flows/ because it orchestrates: it reads the protocol through flows/protocol.py, trains with the
model's ``search_fold`` (training/models/: the registered model whose configuration model the search's base
is; pure computation, checkpointed in storage/checkpoints.py's ``Checkpoints``), writes its predictions part
through storage/results.py and reports to Ray (what it reports: training/search/reports.py).

Meta-MMFNet's trial trains and evaluates the fold with ``training.stages.run_fold`` (every stage checkpointed under
``RESULTS/checkpoints/<run>/<fold>/``, stages named by the settings they depend on, so configurations
that differ in shots share the fold's pretrained encoder, and a retried or resumed trial trains only
what is missing), reports the micro model's validation accuracy after each meta-training epoch
(early stopping), evaluates the whole α grid without retraining, writes its per-sample predictions
as one Parquet part, and reports the fused validation accuracy last. Test labels never reach Ray:
test rows go to Parquet only.
"""

from __future__ import annotations

import functools
import json
import os
import time

import torch
from ray import tune

from merflow.configs.search import SearchConfig
from merflow.flows.protocol import load_protocol
from merflow.storage import catalog as catalog_store
from merflow.storage import locations, results
from merflow.storage.checkpoints import run_checkpoints
from merflow.training import models
from merflow.training.errors import DataError
from merflow.training.search.reports import COMPLETED, DATA_ERROR, METRIC, TIME_ATTR
from merflow.training.search.space import safe_name, trial_train_config


def protocol_data(search: SearchConfig):
    """The search's protocol data (flows/protocol.py ``load_protocol``), read once per process for the same catalog."""
    # Trials of one search in one worker process (actors are reused) read the features once; a catalog
    # written since (a re-ingest between two searches of one process) is read again.
    stamp = locations.stamp(locations.join(search.catalog_dir, catalog_store.SAMPLES_FILE))
    return _cached_protocol_data(search.catalog_dir, search.store, search.protocol, search.dataset, search.class_set,
                                 search.base.seed, stamp, search.base.validation_fraction, search.sample_list,
                                 search.sample_lists, search.feature_config)


@functools.lru_cache(maxsize=2)
def _cached_protocol_data(catalog_dir, store, protocol, dataset, class_set, seed, catalog_stamp, validation_fraction,
                          sample_list=None, sample_lists=None, feature_config=None):
    return load_protocol(catalog_dir, store, protocol, dataset, class_set, seed, validation_fraction,
                         sample_list=sample_list, sample_lists=sample_lists, feature_config=feature_config)


def fold_trial(params: dict, search: SearchConfig, run: str) -> None:
    """The Tune trainable: one configuration on one fold (see the module's docstring)."""
    torch.set_num_threads(max(1, int(search.cpus_per_trial)))
    spec = params["trial"]
    config = trial_train_config(search, spec["searched"])
    out = search.out
    checkpoints = run_checkpoints(out, run)
    started = time.perf_counter()
    data = protocol_data(search)
    fold = data.fold(spec["fold"])

    def on_epoch(epoch: int, accuracy: float) -> None:
        tune.report({METRIC: accuracy, TIME_ATTR: epoch, "stage": "micro_meta"})

    # The model of the search's configuration (training/models/: the one with that configuration model) trains it.
    outcome = models.for_config(config).load().search_fold(data, fold, config, checkpoints, on_epoch=on_epoch)
    predictions = outcome.predictions.drop(columns=["chosen"])
    predictions = predictions.assign(run=run, protocol=search.protocol, trial=spec["id"], shots=config.shots,
                                     recipe=config.recipe)
    results.write_part(out, "predictions", run, search.protocol, f"{spec['id']}-{safe_name(fold.name)}", predictions)
    chosen = outcome.chosen
    # Last report: after it the trial counts as completed; its predictions are already on disk.
    tune.report({METRIC: chosen["validation_accuracy"] if chosen["validation_accuracy"] is not None else float("nan"),
                 TIME_ATTR: config.meta_epochs + 1, "stage": "evaluated", COMPLETED: True, "alpha": chosen["alpha"],
                 "epochs": json.dumps({k: v for k, v in chosen.items() if k.endswith("epoch")}),
                 "seconds": round(time.perf_counter() - started, 2)})


def trial_environment() -> dict[str, str]:
    """The variables of this process that a trial needs to read and write the same locations: a trial runs in
    a Ray worker that may have started before they were set (a Ray already running in this process) or on
    another machine (--ray-address), so each trial is given them (storage/locations.py)."""
    return locations.storage_environment()


def in_environment(trainable, environment: dict[str, str]):
    """``trainable`` run with ``environment`` set in its worker first (``trial_environment`` of the driver)."""

    @functools.wraps(trainable)
    def trial(params: dict, search: SearchConfig, run: str):
        os.environ.update(environment)
        return trainable(params, search, run)

    return trial


def ending_on_data_errors(trainable):
    """``trainable``, except that a ``DataError`` (training/errors.py) ends its trial at once.

    Tune retries every exception a trial raises (FailureConfig has no per-type setting in Ray 2.60),
    and a fold whose data can't be trained on fails the same way every time: the trial catches it
    and reports it as its last result instead, so Tune counts the trial finished, with no retry, and
    ``tables.trial_rows`` records it as an error with the message.
    """

    @functools.wraps(trainable)
    def trial(params: dict, search: SearchConfig, run: str):
        try:
            return trainable(params, search, run)
        except DataError as error:
            # TIME_ATTR 0: below every rung, so early stopping records nothing of this trial.
            tune.report({METRIC: float("nan"), TIME_ATTR: 0, "stage": "data_error",
                         DATA_ERROR: f"{type(error).__name__}: {error}"})

    return trial
