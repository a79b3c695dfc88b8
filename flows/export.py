"""`merflow export`: a model you can apply, fitted on every subject of a run (not a fold's), written as a bundle.

A run's row in the result tables records where it read its data (``spot_runs.inputs``; a training run's
``runs.config`` notes, ``data.inputs``): the catalog and store (and the protocol's dataset, class set,
sample list and feature configuration). Export reads them back (``--catalog`` / ``--store`` replace them:
moved data, or a run written before they were recorded), fits the run's recipe on every subject with
the run's own settings, and writes the bundle (storage/bundles.py). Nothing about a test subject is left
to choose here: the settings a fold chose on its training subjects are chosen the same way on all of them.

- a **spot run** (`merflow spot`) gives the spotters (each type it spotted: the per-frame features of every
  video for the all-subjects window k, on Dask, resumed from the run's store; training/spotting/loso.py
  ``fit_spotter`` on every video) and, unless ``recogniser_run`` names a training run, the recognition model
  it used (its classifier on every annotated micro-expression of MEAN's three classes);
- a **training run** (`merflow train --model nearest-centroid | survey-cnn`) gives the recognition model
  (training/deploy.py ``RECOGNISERS``: the run's model and settings fitted on every sample of its protocol);
  its spotters come from a spot run (``spotter_run``), which a bundle needs.

Plain Python (no Prefect flow run): the CLI (`merflow export`, `merflow spot|train --export`) calls
``export_run``; per-frame features run on Dask (flows/spotting.py ``per_frame_features``).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

from merflow.configs.features import FeatureConfig
from merflow.configs.names import check_name
from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
from merflow.storage import bundles, locations
from merflow.storage import results as result_tables
from merflow.storage.spotting_features import SpotFeatureStore
from merflow.tasks.datasets.long_videos import ANALYSIS_CLASSES
from merflow.tasks.faces import NoFaceError
from merflow.tasks.spotting_features import FrameError, FrameFiles, clip_features
from merflow.training import deploy
from merflow.training.spotting import loso

log = logging.getLogger("merflow.export")
VERSIONED = ("merflow", "torch", "numpy", "scipy", "opencv-contrib-python-headless", "yuface", "scikit-image")
# The all-subjects fit's seed offset (a fold's is fold_index * 2, loso.spot_fold): one past any fold.
ALL_SUBJECTS_SEED = 999_999


def versions() -> dict:
    """The libraries whose upgrades can move a bundle's numbers, and Python's version."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def find_run(results: str, run: str) -> tuple[str, dict]:
    """("spot" | "train", the run's row as a dict); a LookupError naming what ``results`` holds."""
    spot = result_tables.read_table(results, "spot_runs", run=run)
    train = result_tables.read_table(results, "runs", run=run)
    if not spot.empty and not train.empty:
        raise LookupError(f"{run} names a spotting run and a training run in {results}: rename one")
    if not spot.empty:
        return "spot", spot.iloc[0].to_dict()
    if not train.empty:
        if len(train) > 1:
            raise LookupError(f"training run {run} has {len(train)} protocols in {results}; export one at a time")
        row = train.iloc[0].to_dict()
        if "search" in json.loads(row["config"]):
            raise ValueError(f"{run} is a search: each fold chose its own configuration, so there is no one model to "
                             "export; train its chosen settings with `merflow train` and export that run")
        return "train", row
    held = sorted(set(result_tables.read_table(results, "spot_runs")["run"]) |
                  set(result_tables.read_table(results, "runs")["run"]))
    raise LookupError(f"no run {run!r} in {results} (it holds {', '.join(held[:12]) or 'no runs'}"
                      f"{' ...' if len(held) > 12 else ''})")


def _json(value) -> dict | None:
    """A JSON column's value (None where the column is null or absent: NaN when read by pandas)."""
    return json.loads(value) if isinstance(value, str) and value else None


def _inputs(recorded: dict, catalog: str | None, store: str | None, run: str) -> tuple[str, str]:
    catalog, store = catalog or recorded.get("catalog"), store or recorded.get("store")
    if not catalog or not store:
        raise ValueError(f"run {run}'s row records no catalog and store (written before merflow recorded where a "
                         "run read its data): give them with --catalog and --store")
    locations.require(catalog, store)
    for what, where in (("catalog", catalog), ("store", store)):
        if not locations.exists(where):
            raise FileNotFoundError(f"run {run} read its {what} at {where}, which is gone: give its new place with "
                                    f"--{what}")
    return catalog, store


# ------------------------------------------------------------------------------------------ from a spot run
def spotters_of(results: str, row: dict, catalog: str | None, store: str | None, dask_address: str | None,
                n_workers: int | None, report=None) -> dict:
    """A spot run's spotters fitted on every subject, and what the bundle says of them."""
    from merflow.flows.spotting import ArrayCache, per_frame_features, read_long_videos, spot_videos

    config = SpotConfig.model_validate(json.loads(row["config"]))
    features = SpotFeatureConfig.from_dict(json.loads(row["feature_config"]))
    recorded = _json(row.get("inputs")) or {}
    catalog, store = _inputs(recorded, catalog, store, row["run"])
    videos, intervals = read_long_videos(catalog, row["dataset"])
    intervals = intervals[intervals["type"].isin(config.types)]
    rates = sorted(videos["fps"].astype(float).unique())
    if len(rates) != 1:
        raise ValueError(f"{row['dataset']}'s videos run at {len(rates)} frame rates ({rates}): a spotter's windows are "
                         "set at one")
    fps = rates[0]
    spotted = spot_videos(videos, intervals)
    windows = {kind: loso.fold_k(spotted, spotted, kind, config) for kind in config.types}
    started = time.perf_counter()
    counts = per_frame_features(videos, {k for k in windows.values() if k}, store, features, dask_address, n_workers,
                                log, report)
    spotted = [v for v in spotted if v.key not in counts["no_face"]]
    videos = videos[~videos["video_key"].isin(counts["no_face"])].reset_index(drop=True)
    load = ArrayCache(SpotFeatureStore(store), features)
    fitted = {}
    for index, kind in enumerate(config.types):
        spotter = loso.fit_spotter(spotted, spotted, load, config, kind,
                                   config.seed * 1000 + ALL_SUBJECTS_SEED * 2 + index)
        if spotter is not None:
            fitted[kind] = spotter
            log.info("%s spotter on every subject: k %d, settings %s", kind, spotter.k, spotter.settings)
    if not fitted:
        raise ValueError(f"{row['dataset']} in {catalog} holds no interval of {', '.join(config.types)}: nothing to "
                         "fit a spotter on")
    subjects = sorted({v.subject for v in spotted})
    return {"spotters": fitted, "features": features, "config": config, "fps": fps, "videos": videos,
            "intervals": intervals, "catalog": catalog, "store": store, "subjects": subjects,
            "per_frame": counts, "seconds": round(time.perf_counter() - started, 2)}


def spot_run_recogniser(row: dict, part: dict) -> deploy.Recogniser:
    """The recognition model a spot run used (its classifier and clip features, ``spot_runs.recognition``), fitted
    on every annotated micro-expression of its set with one of MEAN's three classes."""
    recognition = _json(row.get("recognition"))
    if recognition is None:
        raise ValueError(f"spot run {row['run']} classified nothing (it spotted no micro-expressions): name a training "
                         "run to recognise with (--recogniser-run)")
    features = FeatureConfig.from_dict(recognition["clip_features"])
    classes = tuple(recognition.get("classes") or ANALYSIS_CLASSES)
    by_key = part["videos"].set_index("video_key")
    clips, labels, skipped = [], [], {}
    micro = part["intervals"][(part["intervals"]["type"] == "micro") & part["intervals"]["label"].isin(classes)]
    micro = micro[micro["video_key"].isin(by_key.index)]
    for row_ in micro.itertuples():
        video = by_key.loc[row_.video_key]
        frames = FrameFiles(video["video_dir"], list(video["frame_files"])[int(row_.onset):int(row_.offset) + 1],
                            int(row_.onset), int(video["n_frames"]))
        apex = None if pd.isna(row_.apex) else int(row_.apex)
        try:
            arrays, info = clip_features(frames, int(row_.onset), int(row_.offset), apex, features)
        except (NoFaceError, FrameError) as error:
            skipped[row_.interval_key] = str(error)
            continue
        clips.append(arrays | {"apex_source": info["apex_source"]})
        labels.append(row_.label)
    trained_on = {"what": "every annotated micro-expression of the set with one of these classes (MEAN's three)",
                  "clips": len(clips), "subjects": part["subjects"], "clips_without_features": skipped,
                  "dataset": row["dataset"]}
    model = recognition["classifier"]
    return deploy.fit_recogniser(model, {"features": "flow"} if model == "nearest-centroid" else {}, classes,
                                 features, "grey", clips, labels, trained_on)


# ------------------------------------------------------------------------------------------ from a training run
def train_run_recogniser(row: dict, catalog: str | None, store: str | None) -> tuple[deploy.Recogniser, dict]:
    """A training run's model fitted on every sample of its protocol, with the run's settings."""
    from merflow.flows.protocol import load_protocol
    from merflow.training import models
    from merflow.training.folds import undersample

    model = row.get("method") or models.DEFAULT_MODEL
    deploy.check_exportable(model)
    settings = json.loads(row["config"])
    notes = settings.pop("data", {}) or {}
    settings.pop("model", None)
    recorded = notes.get("inputs") or {}
    catalog, store = _inputs(recorded, catalog, store, row["run"])
    module = models.load(model)
    config = module.Config.model_validate({k: v for k, v in settings.items() if k in module.Config.model_fields})
    data = load_protocol(catalog, store, row["protocol"], row.get("dataset"), recorded.get("class_set"), config.seed,
                         config.validation_fraction, sample_list=recorded.get("sample_list"),
                         sample_lists=recorded.get("sample_lists"),
                         feature_config=recorded.get("feature_config") or row["feature_config_hash"], model=model)
    column = data.folds[0].label_column
    # the samples' keys: a column (and the index) of the protocol's table
    samples = data.samples if "sample_key" in data.samples.columns else data.samples.reset_index()
    samples = samples.reset_index(drop=True)
    balance = None
    if getattr(config, "balance", "none") == "undersample":  # the survey balanced every sample before its folds
        samples, balance = undersample(samples, column, config.seed)
    keys = list(samples["sample_key"])
    source = data.source
    clips = [{name: source.arrays[name][key] for name in source.arrays} | {"apex_source": source.apex_source.get(key)}
             for key in keys]
    labels = [str(v) for v in samples[column]]
    trained_on = {"what": f"every sample of protocol {row['protocol']}" + (f" ({row['dataset']})" if row.get("dataset")
                                                                            else ""),
                  "samples": len(keys), "subjects": sorted(samples["subject_key"].astype(str).unique()),
                  "label_column": column, "excluded_samples": len(data.excluded),
                  "balance": None if balance is None else {k: balance[k] for k in ("seed", "per_class")}}
    recogniser = deploy.fit_recogniser(model, config.to_dict(), data.classes, data.feature_config, "colour", clips,
                                       labels, trained_on)
    return recogniser, {"catalog": catalog, "store": store, "protocol": row["protocol"], "dataset": row.get("dataset")}


def _evaluation(results: str, kind: str, run: str) -> dict:
    """The run's own leave-one-subject-out figures (pooled), which estimate what the bundle's recipe does on a new
    person: MEGC F1 per type and STRS for a spot run, accuracy / UF1 / UAR for a training run."""
    if kind == "spot":
        metrics = result_tables.read_table(results, "spot_metrics", run=run)
        pooled = metrics[metrics["scope"] == "pooled"]
        return {f"{r.evaluator} {r.type}": {"f1": None if pd.isna(r.f1) else round(float(r.f1), 4),
                                            "strs": None if pd.isna(r.strs) else round(float(r.strs), 4)}
                for r in pooled.itertuples()}
    metrics = result_tables.read_table(results, "metrics", run=run)
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    return {f"{r.model}" + ("" if pd.isna(r.alpha) else f" α {r.alpha:.1f}") + (" chosen" if r.chosen else ""):
            {"accuracy": round(float(r.accuracy), 4), "uf1": round(float(r.uf1), 4), "uar": round(float(r.uar), 4)}
            for r in pooled.itertuples()}


# ------------------------------------------------------------------------------------------ export
def export_run(results: str, run: str, out: str, *, catalog: str | None = None, store: str | None = None,
               spotter_run: str | None = None, recogniser_run: str | None = None, dask_address: str | None = None,
               n_workers: int | None = None, report=None) -> dict:
    """Fit the run's recipe on every subject and write the bundle at ``out`` (module docstring). ``run``: a spot run
    (its spotters, and its classifier unless ``recogniser_run`` names a training run) or a training run (its model;
    ``spotter_run`` names the spot run whose spotters go with it). Returns a summary (the manifest's hash, what
    was fitted on what, the seconds)."""
    for name, what in ((run, "run id"), (spotter_run, "--spotter-run"), (recogniser_run, "--recogniser-run")):
        if name is not None:
            check_name(name, what)  # configs/names.py: the form every run id has
    results = locations.normalise(results)
    locations.require(results, out)
    with bundles.writing(out):  # another export into the same folder now: refused, one line naming it
        return _export(results, run, out, catalog=catalog, store=store, spotter_run=spotter_run,
                       recogniser_run=recogniser_run, dask_address=dask_address, n_workers=n_workers, report=report)


def _export(results: str, run: str, out: str, *, catalog, store, spotter_run, recogniser_run, dask_address, n_workers,
            report) -> dict:
    started = time.perf_counter()
    kind, row = find_run(results, run)
    if kind == "train":
        if recogniser_run:
            raise ValueError("--recogniser-run goes with a spot run; this run is a training run: name the spot run "
                             "with --spotter-run")
        if not spotter_run:
            raise ValueError(f"{run} is a training run, which spots nothing: name the spot run whose spotters go with "
                             "it (--spotter-run RUN, from `merflow spot`)")
        spot_kind, spot_row = find_run(results, spotter_run)
        recogniser_kind, recogniser_row = kind, row
    else:
        if spotter_run:
            raise ValueError("--spotter-run goes with a training run; this run is a spot run, whose spotters are used")
        spot_kind, spot_row = kind, row
        recogniser_kind, recogniser_row = (find_run(results, recogniser_run) if recogniser_run else (kind, row))
    if spot_kind != "spot":
        raise ValueError(f"{spot_row['run']} is not a spot run: its spotters are needed")
    if recogniser_kind == "train":  # before the per-frame work: a model without a bundle is refused at once
        deploy.check_exportable(recogniser_row.get("method") or "meta-mmfnet")
    part = spotters_of(results, spot_row, catalog if kind == "spot" else None, store if kind == "spot" else None,
                       dask_address, n_workers, report)
    if recogniser_kind == "spot":
        recogniser = spot_run_recogniser(spot_row, part)
        recogniser_source = {"run": spot_row["run"], "kind": "spot", "catalog": part["catalog"]}
    else:
        recogniser, where = train_run_recogniser(recogniser_row, catalog if kind == "train" else None,
                                                 store if kind == "train" else None)
        recogniser_source = {"run": recogniser_row["run"], "kind": "train"} | where
    applied = deploy.AppliedModel(part["features"], part["spotters"], part["fps"], recogniser)
    golden = deploy.golden_frames(part["fps"], part["spotters"])
    expected = deploy.golden_outputs(applied, *golden)
    if np.isnan(expected["box"]).any():
        raise RuntimeError("the golden check's synthetic face is not found by this model's detector settings: the "
                           "bundle could not verify itself on load")
    source = {"results": results, "note": "fitted on every subject of the runs below, not on a fold's",
              "spotters": {"run": spot_row["run"], "protocol": spot_row["protocol"], "dataset": spot_row["dataset"],
                           "catalog": part["catalog"], "store": part["store"], "subjects": part["subjects"],
                           "videos": int(len(part["videos"])), "chosen_on": part["config"].chosen_on,
                           "leaky_recipe": part["config"].leaky,
                           "evaluation": _evaluation(results, "spot", spot_row["run"])},
              "recogniser": recogniser_source | {"evaluation": _evaluation(results, recogniser_source["kind"],
                                                                           recogniser_source["run"])}}
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card = deploy.make_card(applied, source, part["config"].to_dict(), versions(), created, golden, expected)
    manifest = bundles.write_bundle(out, card, deploy.card_arrays(applied, golden))
    seconds = round(time.perf_counter() - started, 2)
    log.info("bundle %s written to %s in %.1f s", manifest["hash"][:12], out, seconds)
    return {"out": locations.normalise(out), "hash": manifest["hash"], "files": manifest["files"],
            "spotters": {k: {"spotter": s.spotter, "k": s.k, "fps": part["fps"], **s.in_seconds(part["fps"])}
                         for k, s in part["spotters"].items()},
            "recogniser": {"model": recogniser.model, "classes": list(recogniser.classes),
                           "trained_on": {k: v for k, v in recogniser.trained_on.items() if k != "subjects"}},
            "subjects": part["subjects"], "per_frame": part["per_frame"], "seconds": seconds}
