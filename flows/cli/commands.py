"""One handler per ``merflow`` command: it assembles the typed configuration (``options``), calls a flow
or a task, and prints the result (``render``). Heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape

from merflow.flows.cli.options import model_config, search_grids, spot_configs, tune_model_config
from merflow.flows.cli.render import (
    console,
    print_catalog_summary,
    print_error,
    print_export_summary,
    print_features_summary,
    print_import_summary,
    print_recognise_result,
    print_spot_result,
    print_train_result,
    print_tune_summary,
    progress,
)
from merflow.storage import locations


def cmd_synth(args: argparse.Namespace) -> int:
    """`merflow synth`: synthetic archives in a real dataset's layout (or every dataset's, with --dataset all)."""
    from merflow.configs.synth import LONG_VIDEO_SYNTH_EMOTIONS, SynthConfig
    from merflow.tasks.synthetic import DATASETS, synthesize

    if args.dataset in LONG_VIDEO_SYNTH_EMOTIONS:
        return synth_long_videos(args)
    names = DATASETS if args.dataset == "all" else [args.dataset]
    with progress() as bar:
        for name in names:
            config = SynthConfig(dataset=name, subjects=args.subjects, samples_per_subject=args.samples_per_subject,
                                 samples=args.samples, archive=args.archive, seed=args.seed,
                                 scale=args.scale,
                                 quirks=not args.no_quirks, face_image=args.face_image,
                                 emotions=tuple(e for e in (args.emotions or "").split(",") if e))
            job = bar.add_task(f"synth {config.dataset}", total=config.total)
            path = synthesize(config, Path(args.out), progress=lambda n, job=job: bar.advance(job, n))
            console.print(f"[green]wrote[/] {escape(str(path))}")
    return 0


def synth_long_videos(args: argparse.Namespace) -> int:
    """`merflow synth --dataset samm_lv|casme_sq_lv`: synthetic long videos with planted expressions."""
    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos

    settings = {"subjects": args.subjects, "videos_per_subject": args.videos_per_subject, "seconds": args.seconds,
                "micro_per_video": args.micro_per_video, "macro_per_video": args.macro_per_video,
                "archive": args.archive, "seed": args.seed, "quirks": not args.no_quirks,
                "talking": not args.no_talking, "face_image": args.face_image, "scale": args.scale,
                "emotions": tuple(e for e in (args.emotions or "").split(",") if e)}
    config = LongVideoSynthConfig(args.dataset, **settings)
    with progress() as bar:
        job = bar.add_task(f"synth {config.dataset}: videos", total=config.subjects * config.videos_per_subject)
        path = synthesize_long_videos(config, Path(args.out), progress=lambda n: bar.advance(job, n))
    console.print(f"[green]wrote[/] {escape(str(path))}")
    return 0


def cmd_spot(args: argparse.Namespace) -> int:
    """`merflow spot`: the spot flow with the options' configurations, a progress bar, then its pooled metrics."""
    from merflow.flows.spotting import reporting, spot_flow

    config, features = spot_configs(args)
    started = time.perf_counter()
    with progress() as bar:
        jobs: dict[str, int] = {}

        def hear(stage: str, done: int, total: int) -> None:
            if stage not in jobs:
                jobs[stage] = bar.add_task(stage, total=total)
            bar.update(jobs[stage], completed=done, total=total)

        with reporting(hear):
            result = spot_flow(catalog_dir=str(args.catalog), store=str(args.store), dataset=args.dataset,
                               out=str(args.out), run=args.run, config=config, features=features,
                               dask_address=args.dask_address, n_workers=args.workers)
    print_spot_result(result)
    console.print(f"run {result['run']}: results in {result['results']} (tables spot_runs, spot_intervals, "
                  f"spot_metrics); took {time.perf_counter() - started:.0f} s", markup=False)
    if args.export:
        return export(str(args.out), result["run"], args.export, dask_address=args.dask_address,
                      n_workers=args.workers)
    return 0


class StageBars:
    """A progress bar per stage (``hear(stage, done, total)``), shown from the first report on: a command that
    fails before any work prints its one error line alone."""

    def __init__(self):
        self.bar, self.jobs = None, {}

    def __enter__(self):
        return self.hear

    def hear(self, stage: str, done: int, total: int) -> None:
        """One stage's progress."""
        if self.bar is None:
            self.bar = progress()
            self.bar.start()
        if stage not in self.jobs:
            self.jobs[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.jobs[stage], completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def export(results: str, run: str, out: str, **options) -> int:
    """flows/export.py ``export_run`` with a progress bar, then what the bundle holds."""
    from merflow.flows.export import export_run

    with StageBars() as hear:
        summary = export_run(results, run, out, report=hear, **options)
    print_export_summary(summary)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`merflow export`: a run's recipe fitted on every subject, written as a bundle."""
    return export(str(args.results), args.run, str(args.out), catalog=args.catalog, store=args.store,
                  spotter_run=args.spotter_run, recogniser_run=args.recogniser_run, dask_address=args.dask_address,
                  n_workers=args.workers)


def cmd_recognise(args: argparse.Namespace) -> int:
    """`merflow recognise`: a bundle applied to a video, with a progress bar; the intervals printed."""
    from merflow.configs.recognise import RecogniseConfig
    from merflow.flows.recognise import load_model, recognise_video

    config = RecogniseConfig(fps=args.fps, types=args.types or (), strips=not args.no_strips,
                             chunk_frames=args.chunk_frames)
    model = load_model(str(args.model))
    for line in model.drift:
        print_error(f"{line}: the bundle's numbers may differ from its export's (see result.json)")
    with StageBars() as hear:
        result = recognise_video(str(args.video), model, str(args.out), config, dask_address=args.dask_address,
                                 n_workers=args.workers, report=hear)
    print_recognise_result(result)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """`merflow ingest`: the ingest flow, then the catalog's summary."""
    from merflow.flows.ingest import ingest_flow

    started = time.perf_counter()
    result = ingest_flow(sources=[str(s) for s in args.sources], out=str(args.out), dataset=args.dataset,
                         max_total_gb=args.max_total_gb, max_ratio=args.max_ratio)
    print_catalog_summary(result)
    console.print(f"ingest took {time.perf_counter() - started:.1f} s")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """`merflow import-features`: the import flow, then what each source brought, what was quarantined and why,
    and the catalog's summary."""
    from merflow.flows.imports import import_flow

    started = time.perf_counter()
    result = import_flow(sources=[str(s) for s in args.sources], catalog_dir=str(args.catalog), store=str(args.store),
                         sample_list=args.sample_list, dataset=args.dataset, fmt=args.fmt, size=args.size,
                         shard_size=args.shard_size)
    print_import_summary(result)
    console.print(f"import took {time.perf_counter() - started:.1f} s")
    return 0


def check_megc2019(catalog_dir, official_path) -> int:
    """`merflow catalog --check megc2019`: every difference from the official list; exit 1 if any."""
    from merflow.storage import catalog
    from merflow.tasks.datasets import megc2019

    path = megc2019.official_list_path(official_path)
    differences, absent = megc2019.check_catalog(catalog.read_samples(catalog_dir), megc2019.read_official_list(path))
    quarantined = dict(zip(*(catalog.read_quarantine(catalog_dir)[c] for c in ("sample_key", "reason"))))
    for row in differences.itertuples():
        why = quarantined.get(f"{row.dataset}/{row.subject}/{row.sample_id}")
        console.print(f"  {row.problem:>7}  {row.dataset}/{row.subject}/{row.sample_id}: official {row.official or '-'}, "
                      f"catalog {row.catalog or '-'}" + (f" (quarantined: {why})" if why else ""), markup=False)
    for dataset in absent:
        console.print(f"  {dataset}: no samples in this catalog; its official rows were not checked", markup=False)
    console.print(f"megc2019 check against {path}: {len(differences)} difference(s)", markup=False)
    return 1 if len(differences) else 0


CATALOG_CHECKS = {"megc2019": check_megc2019}  # `merflow catalog --check NAME`


def cmd_catalog(args: argparse.Namespace) -> int:
    """`merflow catalog`: a catalog's summary, its quarantine (--quarantine) and a check against a list (--check)."""
    from merflow.storage import catalog, long_videos

    locations.require(args.catalog)
    result = catalog.summary(args.catalog) | {"catalog": locations.normalise(args.catalog),
                                              "long_videos": long_videos.summary(args.catalog)}
    print_catalog_summary(result)
    if args.quarantine:
        quarantine = catalog.read_quarantine(args.catalog)
        for row in quarantine.itertuples():
            console.print(f"  {escape(row.sample_key)}: [yellow]{escape(row.reason)}[/] {escape(str(row.detail))}")
        for row in long_videos.read_quarantine(args.catalog).itertuples():
            console.print(f"  {escape(row.key)}: [yellow]{escape(row.reason)}[/] {escape(str(row.detail))}")
    for warning in result.get("warnings", []):
        console.print("  [yellow]warning[/] " + escape(f"{warning['sample_key']}: {warning['warning']}: {warning['detail']}"))
    if args.check:
        return CATALOG_CHECKS[args.check](args.catalog, args.official)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """`merflow features`: the features flow, then the store's summary (`--verify`: check the store instead)."""
    if args.verify:
        return verify_features(args)
    from merflow.flows.features import features_flow

    started = time.perf_counter()
    result = features_flow(catalog_dir=str(args.catalog), store=str(args.store), dataset=args.dataset,
                           dask_address=args.dask_address, flow_algorithm=args.flow, size=args.size,
                           detector=args.detector, no_face=args.no_face, shard_size=args.shard_size,
                           n_workers=args.workers, first_frame=args.first_frame, sequence_length=args.sequence_length,
                           max_missing_share=args.max_missing_share)
    print_features_summary(result)
    console.print(f"features took {time.perf_counter() - started:.1f} s")
    return 0


def verify_features(args: argparse.Namespace) -> int:
    """`merflow features --verify`: every group of the store read back and checked against its shards'
    checksums, and against the catalog's samples; exit 1 when something is damaged or missing."""
    from merflow.flows.cli.render import print_verify_report
    from merflow.storage import catalog
    from merflow.storage.features import verify_store
    from merflow.tasks.features import input_fingerprint

    locations.require(args.catalog, args.store)
    samples = catalog.read_samples(args.catalog)
    if args.dataset:
        samples = samples[(samples["dataset"] == args.dataset) | samples["dataset"].str.startswith(f"{args.dataset}_")]
    records = samples.astype(object).where(samples.notna(), None).to_dict("records")
    fingerprints = {r["sample_key"]: input_fingerprint(r) for r in records}
    report = verify_store(str(args.store), fingerprints, set(samples["dataset"]) if args.dataset else None)
    return print_verify_report(report, str(args.catalog))


def draw_sample(store: str, sample_key: str, out: Path) -> None:
    """A sample's stored features drawn as one PNG strip at ``out``."""
    from merflow.storage.features import find_sample
    from merflow.tasks.visualise import STRIP_ARRAYS, png_bytes, sample_strip

    info, arrays = find_sample(store, sample_key, STRIP_ARRAYS)
    title = f"{sample_key}  apex {info['apex_frame']} ({info['apex_source']}), face by {info['face']['detector']}"
    locations.write_bytes(out, png_bytes(sample_strip(arrays, title)))  # whole or absent


def cmd_show(args: argparse.Namespace) -> int:
    """`merflow show`: one sample's features as a PNG."""
    draw_sample(str(args.store), args.sample, args.out)
    console.print(f"[green]wrote[/] {escape(str(args.out))}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`merflow train`: the train flow with the options' configuration, then its pooled test table."""
    from merflow.flows.train import train_flow

    if args.export:  # refused before training, not after
        from merflow.training.deploy import check_exportable

        check_exportable(args.model)
        if not args.spotter_run:
            raise ValueError("--export needs --spotter-run: a bundle spots before it recognises, and a training run "
                             "spots nothing (run `merflow spot` first)")
    config = model_config(args)  # the model's whole configuration, validated (one line naming a wrong field)
    started = time.perf_counter()
    result = train_flow(catalog_dir=str(args.catalog), store=str(args.store), protocol=args.protocol,
                        dataset=args.dataset, out=str(args.out), class_set=args.class_set, config=config, run=args.run,
                        sample_list=args.sample_list, sample_lists=args.sample_lists,
                        feature_config=args.feature_config, model=args.model, balance=args.balance,
                        max_folds=args.max_folds)
    print_train_result(result, args.protocol, args.dataset)
    console.print(f"run {result['run']}: results in {args.out} (tables runs, metrics, predictions); "
                  f"took {time.perf_counter() - started:.0f} s", markup=False)
    if args.export:
        return export(str(args.out), result["run"], args.export, spotter_run=args.spotter_run)
    return 0


def search(out: str, **parameters) -> int:
    """The tune flow with ``parameters``, its summary printed; 1 when trials failed every retry, else 0."""
    from merflow.flows.tune import TrialsFailed, tune_flow

    started = time.perf_counter()
    status = 0
    try:
        summary = tune_flow(out=out, **parameters)
    except TrialsFailed as failed:  # the flow run fails (a schedule must not lose them); its tables are written
        print_error(str(failed))
        summary, status = stored_search_summary(failed.results, failed.run), 1
    print_tune_summary(summary, out)
    console.print(f"took {time.perf_counter() - started:.0f} s")
    return status


def stored_search_summary(out: str, run: str) -> dict:
    """What ``print_tune_summary`` prints of a search, read back from its stored tables (read-only, through
    ``storage.results``) and plots: a failed search's flow raises instead of returning its summary."""
    import json

    from merflow.flows.tune import headline_table, plot_locations
    from merflow.storage import results
    from merflow.training.search.tables import trial_counts

    trials, runs = results.read_table(out, "trials", run=run), results.read_table(out, "runs", run=run)
    if runs.empty:
        raise LookupError(f"search {run} has no runs row in {out}")
    row = runs.iloc[0]
    return {"run": run, "protocol": row["protocol"], "dataset": row["dataset"], **trial_counts(trials),
            "notes": json.loads(row["config"]).get("data", {}),
            "headline": headline_table(results.read_table(out, "metrics", run=run),
                                       results.read_table(out, "floor_metrics", run=run)),
            "pictures": plot_locations(out, run)}


def cmd_tune(args: argparse.Namespace) -> int:
    """`merflow tune`: a search with the options' grids and base configuration."""
    from merflow.training import models

    info = models.get(args.model)
    if not info.tunable:
        tunable = [name for name, other in models.MODELS.items() if other.tunable]
        raise ValueError(f"merflow tune supports --model {' / '.join(tunable)} only: --model {info.name} declares no "
                         f"search space ({info.description}), nothing to search; run it with `merflow train --model "
                         f"{info.name}`")
    grids = search_grids(args)
    return search(str(args.out), catalog_dir=str(args.catalog), store=str(args.store), protocol=args.protocol,
                  dataset=args.dataset, config=tune_model_config(args), class_set=args.class_set,
                  scheduler=args.scheduler, select_by=args.select_by, cpus_per_trial=args.cpus_per_trial,
                  gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures, max_folds=args.max_folds,
                  ray_address=args.ray_address, run=args.run, sample_list=args.sample_list,
                  sample_lists=args.sample_lists, feature_config=args.feature_config, **grids)
