"""The ``merflow`` command line: one subcommand per job, each a thin call into a flow or a task."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from merflow.flows.cli_results import add_results_parser
from merflow.storage import locations

console = Console()

DEMO_DATASETS = {  # dataset -> (subjects, samples): every dataset and quirk appears; CASME II at its real
    # size, so that LOSO has 26 folds to learn from (6 subjects leave too little to rise above chance)
    "casme2": (26, 255), "samm": (5, 25), "smic": (4, 24), "casme": (4, 20), "casme_sq": (4, 18), "ckplus": (6, 30),
}


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def cmd_synth(args: argparse.Namespace) -> int:
    from merflow.tasks.synthetic import DATASETS, SynthConfig, synthesize

    names = DATASETS if args.dataset == "all" else [args.dataset]
    with _progress() as bar:
        for name in names:
            config = SynthConfig(dataset=name, subjects=args.subjects, samples_per_subject=args.samples_per_subject,
                                 samples=args.samples, archive=args.archive, seed=args.seed, scale=args.scale,
                                 quirks=not args.no_quirks)
            job = bar.add_task(f"synth {config.dataset}", total=config.total)
            path = synthesize(config, Path(args.out), progress=lambda n, job=job: bar.advance(job, n))
            console.print(f"[green]wrote[/] {escape(str(path))}")
    return 0


def print_summary(result: dict) -> None:
    table = Table(title=f"catalog {result['catalog']}")
    for column in ("dataset", "samples", "subjects", "emotions", "apex missing", "quarantined"):
        table.add_column(column)
    for name in sorted(set(result["datasets"]) | set(result["quarantine_reasons"])):
        info = result["datasets"].get(name, {"samples": 0, "subjects": 0, "emotions": {}, "apex_missing": 0})
        reasons = result["quarantine_reasons"].get(name, {})
        table.add_row(name, str(info["samples"]), str(info["subjects"]),
                      ", ".join(f"{k} {v}" for k, v in info["emotions"].items()), str(info["apex_missing"]),
                      ", ".join(f"{k} {v}" for k, v in reasons.items()) or "-")
    console.print(table)
    for outcome in result.get("sources", []):
        console.print(f"  {outcome['status']:>9}  {outcome['source']}: {outcome['detail']}", markup=False)
    console.print(f"{result['samples']} samples, {result['quarantined']} quarantined "
                  f"(reasons in {locations.join(result['catalog'], 'quarantine.parquet')})", markup=False)


def cmd_ingest(args: argparse.Namespace) -> int:
    from merflow.flows.ingest import ingest_flow

    started = time.perf_counter()
    result = ingest_flow(sources=[str(s) for s in args.sources], out=str(args.out), dataset=args.dataset,
                         max_total_gb=args.max_total_gb, max_ratio=args.max_ratio)
    print_summary(result)
    console.print(f"ingest took {time.perf_counter() - started:.1f} s")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from merflow.storage import catalog

    locations.require(args.catalog)
    result = catalog.summary(args.catalog) | {"catalog": locations.normalise(args.catalog)}
    print_summary(result)
    if args.quarantine:
        quarantine = catalog.read_quarantine(args.catalog)
        for row in quarantine.itertuples():
            console.print(f"  {escape(row.sample_key)}: [yellow]{escape(row.reason)}[/] {escape(str(row.detail))}")
    for warning in result.get("warnings", []):
        console.print("  [yellow]warning[/] " + escape(f"{warning['sample_key']}: {warning['warning']}: {warning['detail']}"))
    if args.check == "megc2019":
        return check_megc2019(args.catalog, args.official)
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


def cmd_features(args: argparse.Namespace) -> int:
    from merflow.flows.features import features_flow

    started = time.perf_counter()
    result = features_flow(catalog_dir=str(args.catalog), store=str(args.store), dataset=args.dataset,
                           dask_address=args.dask_address, flow_algorithm=args.flow, size=args.size,
                           detector=args.detector, no_face=args.no_face, shard_size=args.shard_size,
                           n_workers=args.workers, first_frame=args.first_frame)
    print_features_summary(result)
    console.print(f"features took {time.perf_counter() - started:.1f} s")
    return 0


def print_features_summary(result: dict) -> None:
    table = Table(title=f"features in {result['store']} (config {result['config_hash']})")
    for column in ("group", "samples", "quarantined", "apex spotted", "centre crops"):
        table.add_column(column)
    for name, info in result["groups"].items():
        table.add_row(name, str(info["samples"]), ", ".join(f"{k} {v}" for k, v in info["quarantined"].items()) or "-",
                      str(info["apex_spotted"]), str(info["no_face_centre_crop"]))
    console.print(table)
    console.print(f"{result['shards_computed']} shards computed, {result['shards_skipped']} already done")


def train_config(args: argparse.Namespace, **fixed):
    """The TrainConfig of the options `train` and `tune` share: the --recipe's settings (training/fit.py
    RECIPES), with the options given on top; unset options keep the recipe's."""
    from merflow.training.fit import TrainConfig

    given = {name: getattr(args, name) for name in ("encoder", "layout", "macro_epochs", "pretrain_epochs",
                                                   "meta_epochs", "batches_per_epoch")
             if getattr(args, name, None) is not None}
    return TrainConfig.from_recipe(getattr(args, "recipe", None) or "merflow", seed=args.seed, device=args.device,
                                   **given, **fixed)


def tune_train_config(args: argparse.Namespace):
    """`tune`'s base TrainConfig. A search chooses on validation subjects, so under --recipe published
    (which has none) 20% of the training subjects validate, as merflow's default; the rest is published."""
    return train_config(args, **({"validation_fraction": 0.2} if getattr(args, "recipe", None) == "published" else {}))


def survey_config(args: argparse.Namespace):
    """The SurveyConfig of `train --model survey-cnn`: main4.m's schedule unless --epochs says otherwise."""
    from merflow.training.models.survey_cnn import SurveyConfig

    return SurveyConfig(seed=args.seed, device=args.device, unannotated_apex=args.unannotated_apex,
                        grey_channels=args.grey_channels, balance=args.balance or "undersample",
                        **({"epochs": args.epochs} if args.epochs else {}))


def cmd_train(args: argparse.Namespace) -> int:
    from merflow.flows.train import train_flow

    survey = args.model == "survey-cnn"
    config = None if survey else train_config(args, shots=args.shots)
    started = time.perf_counter()
    result = train_flow(catalog_dir=str(args.catalog), store=str(args.store), protocol=args.protocol,
                        dataset=args.dataset, out=str(args.out), class_set=args.class_set, config=config, run=args.run,
                        sample_list=args.sample_list, sample_lists=args.sample_lists,
                        feature_config=args.feature_config, model=args.model,
                        survey_config=survey_config(args) if survey else None, balance=args.balance)
    table = Table(title=f"{args.protocol} {args.dataset or ''}: {result['folds']} folds, pooled test "
                        f"(classes {', '.join(result['classes'])})")
    for column in ("model", "α", "n", "accuracy", "UF1", "UAR"):
        table.add_column(column)
    for row in result["pooled"]:
        table.add_row(row["model"], "" if row["alpha"] is None else f"{row['alpha']:.1f}", str(row["n"]),
                      f"{row['accuracy']:.3f}", f"{row['uf1']:.3f}", f"{row['uar']:.3f}")
    console.print(table)
    notes = result.get("notes", {})
    for line in print_notes(notes):
        console.print(line, markup=False)
    if notes.get("balance"):
        balance = notes["balance"]
        console.print(f"balanced (undersample, seed {balance['seed']}): {balance['per_class']} per class, "
                      f"{len(balance['kept'])} samples kept of " + ", ".join(f"{k} {v}" for k, v in
                                                                          balance["before"].items()), markup=False)
    if result.get("leaky"):
        console.print("[yellow]LOVO is leaky: a held-out sample's person has other clips in training (the survey's "
                      "protocol, for comparison); the subject-disjoint number: --protocol fused4 / fused9 or loso[/]")
    console.print(f"run {result['run']}: results in {args.out} (tables runs, metrics, predictions); "
                  f"took {time.perf_counter() - started:.0f} s", markup=False)
    return 0


def print_notes(notes: dict) -> list[str]:
    """The run's notes (training/run.py run_notes) as lines: left-out samples, skipped folds, shortfalls."""
    lines = [f"left out (quarantined by the features flow): {key}: {why['reason']}"
             + (f" ({why['detail']})" if why.get("detail") else "")
             for key, why in notes.get("excluded_samples", {}).items()]
    lines += [f"fold {fold} skipped: {reason}" for fold, reason in notes.get("skipped_folds", {}).items()]
    lines += [f"fold {fold}: fit split short of " + ", ".join(f"{name} ({info['samples']} samples: "
                                                              f"{info['queries']} queries, {info['distinct_shots']} "
                                                              "distinct shots)" for name, info in short.items())
              for fold, short in notes.get("fold_shortfalls", {}).items()]
    if notes.get("feature_mismatch"):
        lines.append("features differ from the published code's: " + "; ".join(notes["feature_mismatch"]))
    return lines


def cmd_tune(args: argparse.Namespace) -> int:
    from merflow.flows.tune import TrialsFailed, tune_flow
    from merflow.training.tune import parse_grid

    if args.model != "meta-mmfnet":
        raise ValueError(f"merflow tune supports --model meta-mmfnet only: {args.model} trains the survey's fixed "
                         "published schedule (main4.m), with nothing to search; run it with `merflow train --model "
                         f"{args.model}`")

    grids = {"shots": parse_grid(args.shots, int), "alphas": parse_grid(args.alpha),
             "meta_lr": parse_grid(args.meta_lr) if args.meta_lr else (),
             "pretrain_lr": parse_grid(args.pretrain_lr) if args.pretrain_lr else ()}
    started = time.perf_counter()
    status = 0
    try:
        summary = tune_flow(catalog_dir=str(args.catalog), store=str(args.store), protocol=args.protocol,
                            dataset=args.dataset, out=str(args.out), config=tune_train_config(args),
                            class_set=args.class_set,
                            scheduler=args.scheduler, select_by=args.select_by, cpus_per_trial=args.cpus_per_trial,
                            gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures,
                            max_folds=args.max_folds, ray_address=args.ray_address, run=args.run,
                            sample_list=args.sample_list, sample_lists=args.sample_lists,
                            feature_config=args.feature_config, **grids)
    except TrialsFailed as failed:
        summary, status = failed.summary, 1
        print_error(str(failed))
    print_tune_summary(summary, args.out)
    console.print(f"took {time.perf_counter() - started:.0f} s")
    return status


def print_tune_summary(summary: dict, out) -> None:
    table = Table(title=f"{summary['protocol']} {summary['dataset'] or ''}: pooled test, each fold's configuration "
                        f"and α chosen on its validation subjects ({summary['folds']} folds, "
                        f"{summary['configurations']} configurations)")
    for column in ("scope", "model", "n", "accuracy", "UF1", "UAR"):
        table.add_column(column)
    for row in summary["headline"]:
        table.add_row(row["key"] if row["scope"] == "dataset" else "pooled", row["model"], str(row["n"]),
                      f"{row['accuracy']:.3f}", f"{row['uf1']:.3f}", f"{row['uar']:.3f}")
    console.print(table)
    console.print(f"trials: {summary['trials']} (" + ", ".join(f"{k} {v}" for k, v in summary["status"].items())
                  + f"), {summary['failures']} failed attempts retried")
    for row in summary["errors"].itertuples():
        console.print(Text.assemble((f"  {row.trial} on {row.fold} failed", "red"),
                                    f": {str(row.error).strip().splitlines()[-1]}"), soft_wrap=True)
    for line in print_notes(summary.get("notes", {})):
        console.print(f"  {line}", markup=False)
    for picture in summary["pictures"]:
        console.print(f"  plot: {picture}", markup=False)
    console.print(f"run {summary['run']}: tables runs, trials, metrics, predictions in {out}; try "
                  f"`merflow results summary --results {out} --run {summary['run']}` or "
                  f"`merflow results best --results {out} --run {summary['run']}`", markup=False)


def draw_sample(store: str, sample_key: str, out: Path) -> None:
    from merflow.flows.features import find_sample
    from merflow.tasks.visualise import sample_strip, write_png

    info, arrays = find_sample(store, sample_key)
    title = f"{sample_key}  apex {info['apex_frame']} ({info['apex_source']}), face by {info['face']['detector']}"
    write_png(out, sample_strip(arrays, title))


def cmd_show(args: argparse.Namespace) -> int:
    draw_sample(str(args.store), args.sample, args.out)
    console.print(f"[green]wrote[/] {escape(str(args.out))}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: synthesize every dataset small, ingest them into one catalog, compute
    their features (28x28) on a local Dask cluster, draw one sample, and search shots and α with Ray
    Tune over LOSO on CASME II (26 subjects)."""
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import SynthConfig, output_path, synthesize

    out = Path(args.out)
    archives = []
    with _progress() as bar:
        for index, (name, (subjects, samples)) in enumerate(DEMO_DATASETS.items()):
            # Mix the formats users meet: zip, tar.gz, and a plain folder.
            config = SynthConfig(dataset=name, subjects=subjects, samples=samples, seed=args.seed, scale=args.scale,
                                 archive=("zip", "tar.gz", "none")[index % 3])
            path = output_path(config, out / "archives")
            if not path.exists():
                job = bar.add_task(f"synth {name}", total=config.total)
                synthesize(config, out / "archives", progress=lambda n, job=job: bar.advance(job, n))
            archives.append(str(path))
    started = time.perf_counter()
    result = ingest_flow(sources=archives, out=str(out / "catalog"))
    print_summary(result)
    console.print(f"ingest took {time.perf_counter() - started:.1f} s; catalog in {out / 'catalog'}", markup=False)

    started = time.perf_counter()
    # 28x28 crops (STSTNet's size): a search of 52 trials then fits in minutes on 2 cores.
    features = features_flow(catalog_dir=str(out / "catalog"), store=str(out / "features.zarr"), size=28)
    print_features_summary(features)
    console.print(f"features took {time.perf_counter() - started:.1f} s; store in {out / 'features.zarr'}",
                  markup=False)
    key = next(k for k in catalog_keys(out / "catalog") if k.startswith("casme2/"))
    draw_sample(str(out / "features.zarr"), key, out / "sample.png")
    console.print(f"one sample drawn in {out / 'sample.png'}; try: merflow show {key} --store {out / 'features.zarr'} "
                  "--out sample.png", markup=False)

    # A small search with a short schedule: the demo shows the whole chain, not the accuracy a full
    # schedule reaches (benchmarks/README.md has that).
    tune_args = build_parser().parse_args([
        "tune", "--catalog", str(out / "catalog"), "--store", str(out / "features.zarr"), "--dataset", "casme2",
        "--out", str(out / "results"), "--shots", "1,3", "--scheduler", "fifo", "--macro-epochs", "10",
        "--pretrain-epochs", "15", "--meta-epochs", "3", "--batches-per-epoch", "8", "--seed", str(args.seed),
        "--run", "demo"])
    status = cmd_tune(tune_args)
    summary_args = build_parser().parse_args(["results", "summary", "--results", str(out / "results"), "--run", "demo"])
    summary_args.handler(summary_args)
    console.print(f"The demo searched 2 numbers of shots x 11 values of α on 26 synthetic subjects with a short "
                  f"schedule, to show the chain. Results: {out / 'results'} (query them with `merflow results query "
                  f"\"select * from metrics limit 5\" --results {out / 'results'}`); plots: "
                  f"{out / 'results' / 'plots' / 'demo'}.", markup=False)
    return status


def catalog_keys(catalog_dir: Path) -> list[str]:
    from merflow.storage import catalog

    return catalog.read_samples(catalog_dir)["sample_key"].tolist()


def add_protocol_options(parser: argparse.ArgumentParser) -> None:
    """What `train` and `tune` evaluate: the catalog, the features and the protocol."""
    parser.add_argument("--catalog", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL")
    parser.add_argument("--store", required=True, help="the feature store written by `merflow features`")
    parser.add_argument("--protocol", choices=["loso", "lovo", "megc2019", "cde", "fused4", "fused9"], default="loso")
    parser.add_argument("--dataset", default=None, help="for loso/lovo: casme, casme2, smic, samm, casme_sq")
    parser.add_argument("--class-set", help="another class set for loso/lovo, e.g. casme2_5 (CASME II with others)")
    parser.add_argument("--sample-list", choices=["survey"],
                        help="only the samples of a published list: survey = the survey baseline's own lists "
                             "(CASME.xls, casme2.xls, samm.xls, SMIC.xls, CAS(ME)2.xls), with their labels")
    parser.add_argument("--sample-lists", metavar="DIR",
                        help="the folder holding those lists (default $MERFLOW_SAMPLE_LISTS)")
    parser.add_argument("--feature-config", metavar="HASH",
                        help="the feature configuration to train on where the store holds several (e.g. after "
                             "`merflow features --size 28`): its hash, or the start of it (the error lists them)")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """How `train` and `tune` train: encoder, input layout, schedule, seed, device, where results go."""
    parser.add_argument("--model", choices=["meta-mmfnet", "survey-cnn"], default="meta-mmfnet",
                        help="meta-mmfnet (default), or survey-cnn: the survey baseline's CNN on the 28x28 apex "
                             "frame with its MATLAB schedule (training/models/)")
    parser.add_argument("--balance", choices=["none", "undersample"],
                        help="subsample every class to the smallest before the split, seeded (default: survey-cnn "
                             "undersample, as the survey; meta-mmfnet none)")
    parser.add_argument("--unannotated-apex", choices=["middle", "spotted"], default="middle",
                        help="survey-cnn, datasets without an apex (SMIC): the clip's middle frame as the survey "
                             "(default), or merflow's spotted apex")
    parser.add_argument("--grey-channels", choices=["replicate", "first"], default="replicate",
                        help="survey-cnn, grey datasets (SAMM, CASME): three equal channels (default), or the "
                             "grey image in channel 1 and zeros, as the survey's apex4.m filled them")
    parser.add_argument("--epochs", type=int, help="survey-cnn training epochs (default 150, main4.m's)")
    parser.add_argument("--recipe", choices=["merflow", "published"], default="merflow",
                        help="merflow: leakage-free defaults, epochs chosen on validation (default); published: "
                             "Meta-MMFNet's code exactly (ResNet-18, batch 128, no weight decay, StepLR pretraining, "
                             "fixed schedule, no inner validation); differences in docs/recipes.md")
    parser.add_argument("--encoder", choices=["small", "resnet18"],
                        help="default: the recipe's (merflow small, published resnet18)")
    parser.add_argument("--layout", choices=["stack_height", "channels"],
                        help="difference above flow in one 3x2HxW image (published, the default), or 6 channels")
    parser.add_argument("--macro-epochs", type=int, help="CK+ pretraining epochs (default 100)")
    parser.add_argument("--pretrain-epochs", type=int, help="micro pretraining epochs per fold (default 50)")
    parser.add_argument("--meta-epochs", type=int, help="meta-training epochs (default 7)")
    parser.add_argument("--batches-per-epoch", type=int, help="episode batches per meta epoch (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: a GPU where the trial has one (default)")
    # Locations are strings: Path("s3://b/r") would be a local folder "s3:" (storage/locations.py).
    parser.add_argument("--out", default="results", metavar="RESULTS",
                        help="results folder or fsspec URL, e.g. s3://bucket/results (default ./results)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="merflow",
        description="Micro-expression recognition pipeline: ingest dataset archives into a sample catalog, "
                    "extract face crops and optical flow on Dask into a Zarr store, train and tune Meta-MMFNet "
                    "(Ray Tune), and query the result tables.",
        epilog="Example: merflow synth --dataset casme2 --out archives && "
               "merflow ingest archives/CASME2.zip --out catalog")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write a synthetic dataset archive in a real dataset's layout",
                                description="Write synthetic archives in the exact layout and sheet format of a real "
                                            "dataset, with real faces performing micro-expressions.")
    synth.add_argument("--dataset", required=True,
                       choices=["casme", "casme2", "casme2sq", "casme_sq", "smic", "samm", "ckplus", "all"])
    synth.add_argument("--out", required=True, type=Path, help="folder to write the archive into")
    synth.add_argument("--subjects", type=int, default=4, help="number of subjects (default 4)")
    synth.add_argument("--samples-per-subject", type=int, default=3, help="samples per subject (default 3)")
    synth.add_argument("--samples", type=int, help="total samples, spread over the subjects (overrides the above)")
    synth.add_argument("--archive", choices=["zip", "tar.gz", "none"], default="zip",
                       help="pack as zip or tar.gz, or leave a folder (default zip)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same seed, same archive content")
    synth.add_argument("--scale", type=float, default=0.5,
                       help="frame size relative to the real dataset's, e.g. 0.25 for fast tests (default 0.5)")
    synth.add_argument("--no-quirks", action="store_true",
                       help="leave out the real datasets' quirks (apex '/', missing frames, stray files, ...)")
    synth.set_defaults(handler=cmd_synth)

    ingest = commands.add_parser("ingest", help="ingest dataset archives or folders into a sample catalog",
                                 description="Unpack archives safely (zip, tar, tar.gz, tar.bz2, tar.xz, 7z) or read "
                                             "folders, local or fsspec URLs; recognise each dataset; write "
                                             "CATALOG_DIR/samples.parquet and quarantine.parquet. Rerunning skips "
                                             "unchanged sources.")
    ingest.add_argument("sources", nargs="+", metavar="SOURCE", help="archive, folder or fsspec URL")
    ingest.add_argument("--out", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL (s3://...)")
    ingest.add_argument("--dataset", choices=["casme", "casme2", "casme2sq", "casme_sq", "smic", "samm", "ckplus"],
                        help="the dataset kind (default: detected from the content)")
    ingest.add_argument("--max-total-gb", type=float, default=512.0,
                        help="refuse archives that unpack to more than this (default 512)")
    ingest.add_argument("--max-ratio", type=float, default=100.0,
                        help="refuse archives whose unpacked size exceeds this multiple of their size (default 100)")
    ingest.set_defaults(handler=cmd_ingest)

    summary = commands.add_parser("catalog", help="summarise an existing catalog",
                               description="Print the per-dataset counts and quarantine reasons of a catalog.")
    summary.add_argument("catalog", metavar="CATALOG_DIR")
    summary.add_argument("--quarantine", action="store_true", help="also list every quarantined sample and why")
    summary.add_argument("--check", choices=["megc2019"],
                         help="list every difference between the catalog's label_megc2019 rows and the official list "
                              "(exit status 1 when there is one)")
    summary.add_argument("--official", metavar="CSV", help="the official combined_3class_gt.csv for --check megc2019 "
                                                           "(default $MERFLOW_REFERENCE/megc2019/combined_3class_gt.csv)")
    summary.set_defaults(handler=cmd_catalog)

    features = commands.add_parser(
        "features", help="face crops, difference and optical flow of every sample into a Zarr store (on Dask)",
        description="Detect the face on each sample's onset frame, crop every frame with that one box, take the "
                    "annotated apex (or spot it), and store the crops, apex-onset difference and optical flow "
                    "(u, v, magnitude, strain) in a Zarr store. Runs on a local Dask cluster, or on an existing "
                    "one with --dask-address. Rerunning computes only what is missing or changed.")
    features.add_argument("--catalog", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL")
    features.add_argument("--store", required=True, help="Zarr store: a path or an fsspec URL (s3://...)")
    features.add_argument("--dataset", help="only this dataset (e.g. casme2, smic); default: every one")
    features.add_argument("--dask-address", help="scheduler address, e.g. tcp://HOST:8786 (default: a local cluster)")
    features.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    features.add_argument("--flow", choices=["farneback", "tvl1", "dis"], default="farneback",
                          help="optical flow algorithm (default farneback, with the published Meta-MMFNet parameters)")
    features.add_argument("--size", type=int, default=80, choices=[28, 64, 80, 112, 128], help="crop size (default 80)")
    features.add_argument("--detector", choices=["yunet", "haar"], default="yunet", help="face detector (default yunet)")
    features.add_argument("--no-face", choices=["centre", "quarantine"], default="centre",
                          help="when no face is found: centre crop and flag it, or quarantine the sample")
    features.add_argument("--shard-size", type=int, default=16, help="samples per Zarr shard (default 16)")
    features.add_argument("--first-frame", choices=["onset", "onset+1"], default="onset",
                          help="the pair compared: onset and apex (default), or onset+1 and apex+1 as the "
                               "published Meta-MMFNet code reads them (for `merflow train --recipe published`)")
    features.set_defaults(handler=cmd_features)

    show = commands.add_parser("show", help="draw a sample's stored features as a PNG",
                               description="Onset crop, apex crop, difference, flow as HSV colour and strain, "
                                           "side by side.")
    show.add_argument("sample", metavar="SAMPLE_KEY", help="dataset/subject/sample_id, e.g. casme2/sub01/EP02_01f")
    show.add_argument("--store", required=True)
    show.add_argument("--out", required=True, type=Path, metavar="PNG")
    show.set_defaults(handler=cmd_show)

    train = commands.add_parser(
        "train", help="train and evaluate Meta-MMFNet on every fold of a protocol",
        description="Macro encoder pretrained on CK+, micro encoder per fold, both meta-trained as prototype "
                    "classifiers, scores fused as d_micro + α·d_macro over an α grid. Epochs and α are chosen on an "
                    "inner validation split of the training subjects only. Results go to Parquet under --out; "
                    "interrupted runs resume from their checkpoints when given the same --run.")
    add_protocol_options(train)
    add_training_options(train)
    train.add_argument("--shots", type=int, default=5, help="support shots per class (default 5)")
    train.add_argument("--run", help="run id: reuse one to resume an interrupted run")
    train.set_defaults(handler=cmd_train)

    tune = commands.add_parser(
        "tune", help="search shots (and learning rates) with Ray Tune, scoring the α grid in every trial",
        description="A Ray Tune search: one trial per (configuration, fold), on a local Ray or a cluster, each "
                    "trial scoring the whole α grid without retraining. Early stopping (ASHA) compares a trial only "
                    "with the other configurations of its fold, on that fold's validation subjects; the reported "
                    "result takes, in each fold, the configuration and α that scored best on its validation "
                    "subjects. Failed trials are retried and reported; rerun with the same --run to resume.",
        epilog="Example: merflow tune --catalog catalog --store features.zarr --dataset casme2 --alpha 0.1:1.0:0.1 "
               "--shots 1,3,5,10 --gpus-per-trial 0.25 --ray-address auto --out results")
    add_protocol_options(tune)
    tune.add_argument("--shots", default="1,3,5,10", help="support shots per class to search: a list or "
                                                          "start:stop:step (default 1,3,5,10)")
    tune.add_argument("--alpha", default="0.0:1.0:0.1",
                      help="fusion weights α scored in every trial, d = d_micro + α·d_macro (default 0.0:1.0:0.1)")
    tune.add_argument("--meta-lr", help="meta-training learning rates to search, e.g. 0.05,0.01 (default: 0.05 only)")
    tune.add_argument("--pretrain-lr", help="pretraining learning rates to search (default: 0.01 only)")
    add_training_options(tune)
    tune.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                      help="asha: stop weak configurations early, per fold, on validation (default); fifo: run all")
    tune.add_argument("--select-by", choices=["accuracy", "uf1", "uar"], default="accuracy",
                      help="validation metric that picks each fold's configuration and α (default accuracy)")
    tune.add_argument("--ray-address", help="an existing Ray cluster: auto, or ray://HOST:10001 (default: a local Ray)")
    tune.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    tune.add_argument("--gpus-per-trial", type=float, default=0.0,
                      help="GPUs per trial, a fraction shares one GPU, e.g. 0.25 (default 0)")
    tune.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial (default 2)")
    tune.add_argument("--max-folds", type=int, help="only the first N folds: a quick look, not a result to report")
    tune.add_argument("--run", help="run id: reuse one to resume an interrupted search")
    tune.set_defaults(handler=cmd_tune)

    add_results_parser(commands)

    demo = commands.add_parser("demo", help="run the main job on the embedded synthetic default",
                               description="Synthesize every dataset (small), ingest them into one catalog, "
                                           "compute their features on a local Dask cluster, draw one sample, "
                                           "search shots and α for Meta-MMFNet with Ray Tune (small encoder, short "
                                           "schedule, LOSO on CASME II) and print the result tables.")
    demo.add_argument("--out", type=Path, default=Path("demo"), help="working folder (default ./demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--scale", type=float, default=0.25)
    demo.set_defaults(handler=cmd_demo)
    # `merflow --verbose COMMAND ...`, or the same flag after the command.
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the full traceback of an error (otherwise one line; the flow run's log in "
                             "Prefect always has it)")
    for command in commands.choices.values():
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="print the full traceback of an error")
    return parser


# Commands that run Prefect flows; without a configured PREFECT_API_URL they get a local Prefect server
# that ends with this process, even when it is SIGKILLed (flows/ephemeral.py).
FLOW_COMMANDS = ("ingest", "features", "train", "tune", "demo")


def flow_api(args: argparse.Namespace):
    from contextlib import nullcontext

    if args.command not in FLOW_COMMANDS:
        return nullcontext()
    from merflow.flows.ephemeral import local_api

    return local_api()


# Errors of what the user gave (a path, an option, the data): exit status 2. Anything else is 1.
USER_ERRORS = (ValueError, LookupError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


class _RunErrorsOffTheConsole(logging.Filter):
    """Prefect's flow and task engines log a failed run's exception, traceback included, at ERROR: the
    console keeps their other records, and the CLI prints the error as one line instead. The record
    still reaches the run's own log in the Prefect API (a handler of its own, unfiltered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        # The engine's last word on a failed run repeats the error the CLI prints (logged at INFO for flows).
        return record.levelno < logging.ERROR and not str(record.msg).startswith("Finished in state Failed")


def quiet_run_errors() -> None:
    """Put the filter above on Prefect's console handler (set up when Prefect is first imported)."""
    import prefect.logging.configuration as configuration
    from prefect.logging.handlers import PrefectConsoleHandler

    if not configuration.PROCESS_LOGGING_CONFIG:
        # Prefect's logging is set up when prefect.main is imported (`import prefect` alone is lazy); its
        # console handler keeps the stderr of that moment: the process's own, not a caller's stand-in.
        stderr, sys.stderr = sys.stderr, sys.__stderr__
        try:
            import prefect.main  # noqa: F401
        finally:
            sys.stderr = stderr

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _RunErrorsOffTheConsole) for f in handler.filters):
            handler.addFilter(_RunErrorsOffTheConsole())


def error_line(error: BaseException) -> str:
    """One line for an error: its own message for the user's errors, its type and last line otherwise."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if isinstance(error, USER_ERRORS) or type(error).__name__ == "MissingExtra":
        return " ".join(lines) or type(error).__name__
    return f"{type(error).__name__}: {lines[-1] if lines else ''} (run again with --verbose for the traceback)"


def print_error(message: str) -> None:
    """``error: MESSAGE`` as one line: no markup read in it (brackets survive: pip install 'merflow[s3]'),
    no wrapping."""
    console.print(Text.assemble(("error: ", "red"), message), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    if args.command in FLOW_COMMANDS and not verbose:
        quiet_run_errors()
    try:
        with flow_api(args):
            return args.handler(args)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - every error ends as one line (the traceback under --verbose)
        if verbose:
            traceback.print_exc()
        print_error(error_line(error))
        return 2 if isinstance(error, USER_ERRORS) or type(error).__name__ == "MissingExtra" else 1


if __name__ == "__main__":
    sys.exit(main())
