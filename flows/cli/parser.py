"""The ``merflow`` argument parser. No choice list or default is written here: a configuration's options
are made from its fields (``fields.add_config_options``: name, type, choices, default, help from the
model's annotation, default and description); the other options take theirs from the registry or module
constant that defines them, or from the function that owns them (``flows.defaults.parameter``). A
subcommand's options are added when it is first used (parsed, or its --help shown), so that `merflow --help`
and the light commands import no training code."""

from __future__ import annotations

import argparse
from pathlib import Path

from merflow.configs.names import NAME_FORM
from merflow.flows.cli import commands, demo, results
from merflow.flows.cli.fields import add_config_options, default_text, option_name
from merflow.flows.defaults import default, parameter

# training/loops.py pick_device's names (TrainConfig.device); loops.py keeps no tuple of them.
DEVICES = ("auto", "cpu", "cuda")
# The one alias of CAS(ME)^2 the CLI lists (tasks/synthetic and tasks/datasets accept it as casme_sq).
CASME_SQ_ALIAS = "casme2sq"
QUERY_LIMIT = 200  # rows `merflow results query` prints (--csv gets all)


class Subcommand(argparse.ArgumentParser):
    """A subcommand's parser whose options (``options(parser)``) are added on first use: parsing, or --help."""

    def __init__(self, *args, options=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._options = options

    def add_options(self) -> None:
        """Add the options now (once), then ``-v/--verbose`` after them."""
        if self._options is None:
            return
        options, self._options = self._options, None
        options(self)
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="print the full traceback of an error")

    def parse_known_args(self, args=None, namespace=None):
        """argparse's parse, the command's options added first."""
        self.add_options()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        """argparse's help, the command's options added first."""
        self.add_options()
        return super().format_help()


# ------------------------------------------------------------------------------------------ per command
def synth_options(synth: argparse.ArgumentParser) -> None:
    """`merflow synth`'s options: SynthConfig's fields (configs/synth.py), and LongVideoSynthConfig's for the
    long-video sets (samm_lv, casme_sq_lv)."""
    from merflow.configs.synth import LONG_VIDEO_SYNTH_EMOTIONS, SYNTH_DATASETS, LongVideoSynthConfig, SynthConfig

    add_config_options(synth, SynthConfig, ["dataset"], required=["dataset"],
                       overrides={"dataset": {"choices": [*SYNTH_DATASETS, CASME_SQ_ALIAS, *LONG_VIDEO_SYNTH_EMOTIONS,
                                                          "all"],
                                              "help": "the real dataset whose layout and sheets are written; samm_lv "
                                                      "and casme_sq_lv write long videos for spotting"}})
    synth.add_argument("--out", required=True, type=Path, help="folder to write the archive into")
    add_config_options(synth, SynthConfig, ["subjects", "samples_per_subject", "samples", "archive", "seed", "scale",
                                            "quirks", "face_image", "emotions"],
                       overrides={"face_image": {"metavar": "PATH"}, "emotions": {"metavar": "A,B,..."}})
    long_videos = synth.add_argument_group("long videos (--dataset samm_lv or casme_sq_lv)")
    add_config_options(long_videos, LongVideoSynthConfig, ["videos_per_subject", "seconds", "micro_per_video",
                                                           "macro_per_video", "talking"])
    synth.set_defaults(handler=commands.cmd_synth)


def ingest_options(ingest: argparse.ArgumentParser) -> None:
    """`merflow ingest`'s options: the ingest flow's parameters."""
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.datasets import ADAPTERS

    ingest.add_argument("sources", nargs="+", metavar="SOURCE", help="archive, folder or fsspec URL")
    ingest.add_argument("--out", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL (s3://...)")
    ingest.add_argument("--dataset", choices=[*ADAPTERS, CASME_SQ_ALIAS],
                        help="the dataset kind (default: detected from the content)")
    ingest.add_argument("--max-total-gb", type=float, default=parameter(ingest_flow, "max_total_gb"),
                        help="refuse archives that unpack to more than this (default %(default)g)")
    ingest.add_argument("--max-ratio", type=float, default=parameter(ingest_flow, "max_ratio"),
                        help="refuse archives whose unpacked size exceeds this multiple of their size "
                             "(default %(default)g)")
    ingest.set_defaults(handler=commands.cmd_ingest)


def import_options(parser: argparse.ArgumentParser) -> None:
    """`merflow import-features`'s options: the import flow's parameters."""
    from merflow.configs.catalog import SURVEY_SETS
    from merflow.configs.features import IMPORT_FORMATS, SIZES
    from merflow.flows.imports import import_flow

    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="the survey's images and their label file (C4.mat label4.mat, C9.mat label9.mat), a "
                             "folder of STSTNet flow images '<subject>_<clip> .png', STSTNet's per-fold tree "
                             "(<subject>/u_train|u_test/<label>/), or a folder of apex frames '<subject>_<clip>.jpg' "
                             "(or an archive of one)")
    parser.add_argument("--catalog", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL")
    parser.add_argument("--store", required=True, help="Zarr store: a path or an fsspec URL (s3://...)")
    parser.add_argument("--list", dest="sample_list", metavar="CSV",
                        help="for folders: the list that names, labels and groups their samples by person (the "
                             "MEGC2019 combined_3class_gt.csv, or HTNet's combined_3_class2_for_optical_flow.csv)")
    parser.add_argument("--dataset", help="folders: only this dataset's rows of the list (casme2, samm, smic); the "
                                          f"survey's images: {' or '.join(SURVEY_SETS)} (default: from its labels)")
    parser.add_argument("--format", dest="fmt", choices=IMPORT_FORMATS,
                        help="the sources' format (default: told from their content)")
    parser.add_argument("--size", type=int, choices=SIZES, default=parameter(import_flow, "size"),
                        help="the images' side in pixels: flow and survey images must have it, apex frames are "
                             "resized to it (default %(default)s)")
    parser.add_argument("--shard-size", type=int, default=parameter(import_flow, "shard_size"),
                        help="samples per Zarr shard (default %(default)s)")
    parser.set_defaults(handler=commands.cmd_import)


def catalog_options(summary: argparse.ArgumentParser) -> None:
    """`merflow catalog`'s options."""
    summary.add_argument("catalog", metavar="CATALOG_DIR")
    summary.add_argument("--quarantine", action="store_true", help="also list every quarantined sample and why")
    summary.add_argument("--check", choices=list(commands.CATALOG_CHECKS),
                         help="list every difference between the catalog's label_megc2019 rows and the official list "
                              "(exit status 1 when there is one)")
    summary.add_argument("--official", metavar="CSV", help="the official combined_3class_gt.csv for --check megc2019 "
                                                           "(default $MERFLOW_REFERENCE/megc2019/combined_3class_gt.csv)")
    summary.set_defaults(handler=commands.cmd_catalog)


def features_options(features: argparse.ArgumentParser) -> None:
    """`merflow features`'s options: the features flow's parameters (FeatureConfig's, FaceConfig's, MotionConfig's)."""
    from merflow.configs.features import FaceConfig, FeatureConfig, MotionConfig

    features.add_argument("--catalog", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL")
    features.add_argument("--store", required=True, help="Zarr store: a path or an fsspec URL (s3://...)")
    features.add_argument("--dataset", help="only this dataset (e.g. casme2, smic); default: every one")
    features.add_argument("--dask-address", help="scheduler address, e.g. tcp://HOST:8786 (default: a local cluster)")
    features.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    features.add_argument("--verify", action="store_true",
                          help="compute nothing: read every group of the store back, check each shard against the "
                               "checksums its mark recorded and against the catalog's samples, report per group "
                               "(exit 1 if anything is damaged or missing; a run without --verify repairs it)")
    add_config_options(features, MotionConfig, ["algorithm"], rename={"algorithm": "flow"})
    add_config_options(features, FeatureConfig, ["size"])
    add_config_options(features, FaceConfig, ["detector", "no_face"])
    add_config_options(features, FeatureConfig, ["shard_size", "first_frame", "sequence_length", "max_missing_share"])
    features.set_defaults(handler=commands.cmd_features)


def show_options(show: argparse.ArgumentParser) -> None:
    """`merflow show`'s options."""
    show.add_argument("sample", metavar="SAMPLE_KEY", help="dataset/subject/sample_id, e.g. casme2/sub01/EP02_01f")
    show.add_argument("--store", required=True)
    show.add_argument("--out", required=True, type=Path, metavar="PNG")
    show.set_defaults(handler=commands.cmd_show)


def add_protocol_options(parser: argparse.ArgumentParser, flow) -> None:
    """What `train` and `tune` evaluate: the catalog, the features and the protocol (``flow``'s defaults)."""
    from merflow.tasks.sample_lists import SAMPLE_LISTS
    from merflow.training.folds import PER_DATASET_PROTOCOLS, PROTOCOLS

    parser.add_argument("--catalog", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL")
    parser.add_argument("--store", required=True, help="the feature store written by `merflow features`")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=parameter(flow, "protocol"))
    # No default here, unlike the flows' (casme2): a per-dataset protocol on the command line names its dataset.
    parser.add_argument("--dataset", default=None,
                        help=f"for {'/'.join(PER_DATASET_PROTOCOLS)}: casme, casme2, smic, samm, casme_sq, casme3; the "
                             "imported survey images: survey_c4, survey_c9 (lovo only)")
    parser.add_argument("--class-set", help="another class set for loso/lovo, e.g. casme2_5 (CASME II with others), "
                                            "casme3_4 or casme3_3 (CAS(ME)^3 in 4 or 3 classes; casme3_7 its default)")
    parser.add_argument("--sample-list", choices=SAMPLE_LISTS,
                        help="only the samples of a published list: survey = the survey baseline's own lists "
                             "(CASME.xls, casme2.xls, samm.xls, SMIC.xls, CAS(ME)2.xls), with their labels")
    parser.add_argument("--sample-lists", metavar="DIR",
                        help="the folder holding those lists (default $MERFLOW_SAMPLE_LISTS)")
    parser.add_argument("--feature-config", metavar="HASH",
                        help="the feature configuration to train on where the store holds several (e.g. after "
                             "`merflow features --size 28`): its hash, or the start of it (the error lists them)")


def add_training_options(parser: argparse.ArgumentParser, flow, taken: set[str] = frozenset()) -> None:
    """How `train` and `tune` train: --model (the registry's, training/models/), --balance, each registered
    model's options (``add_model_options``) and where results go. ``taken``: options the command already has."""
    from merflow.training import models

    registered = models.MODELS
    parser.add_argument("--model", choices=list(registered), default=models.DEFAULT_MODEL,
                        help="; ".join(f"{name}{' (default)' if name == models.DEFAULT_MODEL else ''}: "
                                       f"{info.description}" for name, info in registered.items())
                        + " (training/models/)")
    parser.add_argument("--balance", choices=models.BALANCES,
                        help="undersample = every class subsampled to the smallest before the split, seeded (the "
                             "survey's; leaky: it reads the held-out samples' labels), undersample-training = each "
                             "fold's training samples only (honest), none (default: the model's: "
                             + ", ".join(f"{info.name} {info.default_balance}" for info in registered.values()) + ")")
    add_model_options(parser, registered, taken)
    # Locations are strings: Path("s3://b/r") would be a local folder "s3:" (storage/locations.py).
    parser.add_argument("--out", default=parameter(flow, "out"), metavar="RESULTS",
                        help="results folder or fsspec URL, e.g. s3://bucket/results (default ./%(default)s)")


def add_model_options(parser: argparse.ArgumentParser, registered: dict, taken: set[str] = frozenset()) -> None:
    """Each registered model's options (``ModelInfo.options``: fields of its configuration, made by
    ``add_config_options``), in one group per model; an option several models share (--seed, --epochs) is added
    once, by the first model, its help naming each model's default, and defaults to None (not given: each
    model's configuration decides), as does one whose default the model words itself (``unset_help``: the
    recipe's); the others show their configuration's default."""
    added = set(taken)
    for info in registered.values():
        fields = [name for name in info.options if option_name(name, info.rename) not in added]
        if not fields:
            continue
        group = parser.add_argument_group(f"--model {info.name}")
        unset = {}
        for name in fields:
            sharing = [other for other in registered.values() if name in other.options
                       and other.rename.get(name, name) == info.rename.get(name, name)]
            if len(sharing) == 1 and name not in info.unset_help:
                continue  # its own default, shown and parsed as the configuration's
            texts = [other.unset_help.get(name) or _default_text(other, name) for other in sharing]
            unset[name] = texts[0] if len(sharing) == 1 else "default: the model's (" + ", ".join(
                f"{other.name} {text.removeprefix('default ')}" for other, text in zip(sharing, texts)) + ")"
        bools = [name for name in fields if info.config.model_fields[name].annotation is bool]
        add_config_options(group, info.config, fields, rename=info.rename,
                           unset={name: text for name, text in unset.items() if name not in bools},
                           overrides={"device": {"choices": DEVICES}} if "device" in fields else None)
        added.update(option_name(name, info.rename) for name in fields)


def _default_text(info, name: str) -> str:
    value = info.config.model_fields[name].get_default(call_default_factory=True)
    return f"default {default_text(value)}"


def given_options(args: argparse.Namespace, info) -> dict:
    """The options of model ``info`` typed on the command line: field -> value (unset ones left out)."""
    given = {}
    for name in info.options:
        dest = info.rename.get(name, name)
        if info.config.model_fields[name].annotation is bool:
            default = info.config.model_fields[name].default
            flag = getattr(args, f"no_{dest}" if default is True else dest, False)
            if flag:
                given[name] = not default
        elif getattr(args, dest, None) is not None:
            given[name] = getattr(args, dest)
    return given


def train_options(train: argparse.ArgumentParser) -> None:
    """`merflow train`'s options: the train flow's parameters and each registered model's options."""
    from merflow.flows.train import train_flow

    add_protocol_options(train, train_flow)
    add_training_options(train, train_flow)
    train.add_argument("--max-folds", type=_positive, help="only the first N folds: a quick look, not a result to "
                                                           "report (the runs row records it)")
    train.add_argument("--run", help="run id: reuse one to resume an interrupted run; " + NAME_FORM)
    from merflow.training.deploy import RECOGNISERS

    export = train.add_argument_group(f"a model to apply ({', '.join(RECOGNISERS)})")
    export.add_argument("--export", metavar="MODEL_DIR", help="after the run, fit its model on every subject and write "
                                                            "a bundle here (as `merflow export`), with the spotters "
                                                            "of --spotter-run")
    export.add_argument("--spotter-run", metavar="RUN", help="the spot run (same --out) whose spotters go into the "
                                                            "bundle")
    train.set_defaults(handler=commands.cmd_train)


def tune_options(tune: argparse.ArgumentParser) -> None:
    """`merflow tune`'s options: the tune flow's parameters (SearchConfig's, SearchSpace's) and TrainConfig's."""
    from merflow.configs.search import SearchConfig, SearchSpace
    from merflow.configs.train import TrainConfig
    from merflow.flows.tune import tune_flow

    alphas = parameter(tune_flow, "alphas")
    add_protocol_options(tune, tune_flow)
    # The grids, one text each (training/search/space.py parse_grid); unset: the tune flow's grids.
    add_config_options(tune, SearchSpace, ["shots", "alphas", "meta_lr", "pretrain_lr"], rename={"alphas": "alpha"},
                       unset={"shots": f"default {default_text(parameter(tune_flow, 'shots'))}",
                              "alphas": f"default {min(alphas)} to {max(alphas)}, {len(alphas)} values",
                              "meta_lr": f"default: {default(TrainConfig, 'meta_lr')} only",
                              "pretrain_lr": f"default: {default(TrainConfig, 'pretrain_lr')} only"})
    add_training_options(tune, tune_flow, taken={"--shots", "--alpha", "--meta-lr", "--pretrain-lr"})
    add_config_options(tune, SearchConfig, ["scheduler", "select_by", "ray_address", "cpus_per_trial",
                                            "gpus_per_trial", "max_failures", "max_folds"])
    tune.add_argument("--run", help="run id (the search's name): reuse one to resume an interrupted search; " + NAME_FORM)
    tune.set_defaults(handler=commands.cmd_tune)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def results_options(group: argparse.ArgumentParser) -> None:
    """`merflow results` and its subcommands: query, summary, best, plot, runs (handlers in ``results``)."""
    from merflow.configs.results import RESULTS
    from merflow.flows.cli.render import CELL_WIDTH
    from merflow.training.report import SCORES, SPLITS, alpha_shots_heatmaps, best_table

    location = argparse.ArgumentParser(add_help=False)
    location.add_argument("--results", default=RESULTS, metavar="RESULTS",
                          help="the results written by `merflow train --out`: a folder or an fsspec URL "
                               "(default ./%(default)s)")
    one_run = argparse.ArgumentParser(add_help=False)
    one_run.add_argument("--run", help="only this run id (default: every run)")
    subcommands = group.add_subparsers(dest="results_command", required=True, metavar="SUBCOMMAND",
                                       parser_class=argparse.ArgumentParser)

    query = subcommands.add_parser(
        "query", parents=[location], help="run one SQL SELECT over the result tables",
        description="Run one read-only SQL statement (SELECT, or EXPLAIN of a SELECT) with DuckDB over the views "
                    "runs, trials, metrics and predictions (and the floor's floor_metrics, floor_predictions); run "
                    "and protocol are columns. Writes, settings and "
                    "several statements are refused; no file can be read directly. A plain run's trial is NULL.",
        epilog="Example: merflow results query \"SELECT trial, model, alpha, uf1 FROM metrics WHERE scope = 'pooled' "
               "AND split = 'test' ORDER BY uf1 DESC\"")
    query.add_argument("sql", metavar="SQL", help="one SELECT statement (quote it for the shell)")
    query.add_argument("--csv", type=Path, metavar="FILE", help="also write every row of the result to this CSV file")
    query.add_argument("--limit", type=_positive, default=QUERY_LIMIT,
                       help="rows to print (default %(default)s; --csv gets all)")
    query.add_argument("--width", type=_positive, default=CELL_WIDTH,
                       help="widest cell to print, in characters (default %(default)s)")
    query.set_defaults(handler=results.cmd_results_query)

    summary = subcommands.add_parser(
        "summary", parents=[location, one_run],
        help="paper-style tables of each run's headline test results, each saying what chose what",
        description="Per run and protocol: the model's headline rows (Meta-MMFNet: micro, macro and fused at the α "
                    "its run chose on validation, or α 1.0 where it had no validation subjects; survey-cnn, ststnet: "
                    "their one model) on the test samples pooled over folds: per-class accuracy, accuracy, UF1, UAR, "
                    "n and each row's honesty (nothing chosen, chosen on validation subjects, or uses test labels: "
                    "LOVO, balancing before the split); composite protocols (megc2019, cde, fused4, fused9) add one "
                    "block per dataset. For a search, the 'selected' result. The title says what chose the epochs, α "
                    "and settings (the recipe and what differs from it), from the run's own record; the lines below "
                    "repeat what `train` warned (--max-folds, features that differ from the recipe's). Each block "
                    "ends with the run's floor: a nearest centroid on flow u, v on the same folds.")
    summary.set_defaults(handler=results.cmd_results_summary)

    best = subcommands.add_parser(
        "best", parents=[location, one_run], help="rank a hyperparameter search's configurations and α",
        description="Rank each search's (configuration, model, α) rows by a pooled score on the validation subjects "
                    "(default) and show their validation and test scores, then the honest 'selected' result. "
                    "Ranking on --split test is an oracle, for understanding only.")
    best.add_argument("--by", choices=SCORES, default=parameter(best_table, "by"),
                      help="score to rank by (default %(default)s)")
    best.add_argument("--split", choices=SPLITS, default=parameter(best_table, "split"),
                      help="split to rank on (default %(default)s; test is an oracle)")
    best.add_argument("--top", type=_positive, default=parameter(best_table, "top"),
                      help="rows per run and protocol (default %(default)s)")
    best.set_defaults(handler=results.cmd_results_best)

    plot = subcommands.add_parser(
        "plot", parents=[location, one_run], help="α x shots heatmaps and confusion matrices as PNG",
        description="For each search: heatmaps of the fused model's pooled score over shots and α, validation next "
                    "to test (one PNG per setting of the other searched settings). For each run: the confusion "
                    "matrix of the honest fused model on the pooled test subjects.")
    plot.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the PNG files into")
    plot.add_argument("--metric", choices=SCORES, default=parameter(alpha_shots_heatmaps, "metric"),
                      help="score in the heatmaps (default %(default)s)")
    plot.set_defaults(handler=results.cmd_results_plot)

    runs = subcommands.add_parser(
        "runs", parents=[location], help="list runs, with the trials of searches",
        description="One row per (run, protocol): dataset, creation time and, for a search, its configurations and "
                    "trials by status (completed, stopped early, error) and the failed attempts retried.")
    runs.set_defaults(handler=results.cmd_results_runs)


def spot_options(spot: argparse.ArgumentParser) -> None:
    """`merflow spot`'s options: the spot flow's parameters, SpotConfig's and SpotFeatureConfig's fields."""
    from merflow.configs.features import MotionConfig
    from merflow.configs.spotting import LONG_VIDEO_DATASETS, SpotConfig, SpotFeatureConfig
    from merflow.flows.parameters import RESULTS

    spot.add_argument("--catalog", required=True, metavar="CATALOG_DIR",
                      help="a catalog holding long videos (`merflow ingest` of SAMM Long Videos or CAS(ME)^2)")
    spot.add_argument("--store", required=True, help="Zarr store for the per-frame features: a path or an fsspec URL")
    spot.add_argument("--dataset", required=True, help=f"the long-video set: {', '.join(LONG_VIDEO_DATASETS)} "
                                                       "(casme_sq and samm name them too)")
    spot.add_argument("--out", default=RESULTS, help="results folder or URL (default %(default)s): tables spot_runs, "
                                                     "spot_intervals, spot_metrics")
    spot.add_argument("--run", help="run id (default: named by the dataset and the settings' hashes)")
    add_config_options(spot, SpotConfig, ["spotter", "recipe", "types", "p_grid", "epochs", "batch_size", "lr",
                                          "validation_fraction", "seed", "device", "classifier"],
                       overrides={"types": {"metavar": "micro,macro", "help": "expression types to spot, a comma list "
                                                                               "(default micro,macro)"},
                                  "p_grid": {"metavar": "P,P,...", "help": "threshold fractions p to choose from on "
                                                                           "training subjects (default 0.05..0.95 by "
                                                                           "0.05)"},
                                  "validation_fraction": {"help": "softnet: share of the training subjects held out "
                                                                  "of fitting to choose p on (default 0.25)"}})
    features = spot.add_argument_group("per-frame features (their hash names the store's group)")
    add_config_options(features, SpotFeatureConfig, ["crop", "redetect_seconds", "drift_iou", "chunk_frames"])
    add_config_options(features, MotionConfig, ["algorithm"], rename={"algorithm": "flow"})
    spot.add_argument("--dask-address", help="scheduler address, e.g. tcp://HOST:8786 (default: a local cluster)")
    spot.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    spot.add_argument("--export", metavar="MODEL_DIR", help="after the run, fit its spotters and classifier on every "
                                                          "subject and write a bundle here (as `merflow export`)")
    spot.set_defaults(handler=commands.cmd_spot)


def export_options(export: argparse.ArgumentParser) -> None:
    """`merflow export`'s options (flows/export.py ``export_run``)."""
    from merflow.flows.parameters import RESULTS

    export.add_argument("--results", default=RESULTS, help="the results folder or URL holding the run (default "
                                                           "%(default)s)")
    export.add_argument("--run", required=True, help="a spot run (`merflow spot`) or a training run (`merflow train "
                                                     "--model nearest-centroid|survey-cnn`); " + NAME_FORM)
    export.add_argument("--out", required=True, metavar="MODEL_DIR", help="the bundle's folder (or URL); an existing "
                                                                          "bundle there is replaced")
    export.add_argument("--spotter-run", metavar="RUN", help="with a training run: the spot run whose spotters go "
                                                            "with its model")
    export.add_argument("--recogniser-run", metavar="RUN", help="with a spot run: a training run whose model "
                                                               "classifies instead of the spot run's classifier")
    export.add_argument("--catalog", help="the run's catalog, where it moved (default: where its row says it was)")
    export.add_argument("--store", help="the run's feature store, where it moved (default: where its row says)")
    export.add_argument("--dask-address", help="scheduler address for per-frame features (default: a local cluster)")
    export.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    export.set_defaults(handler=commands.cmd_export)


def recognise_options(recognise: argparse.ArgumentParser) -> None:
    """`merflow recognise`'s options: RecogniseConfig's fields and where it runs."""
    from merflow.configs.recognise import RecogniseConfig

    recognise.add_argument("video", metavar="VIDEO", help="a video file (mp4, avi, mov, mkv, ...), a folder of frames "
                                                          "(sorted naturally) or an fsspec URL of a file")
    recognise.add_argument("--model", required=True, metavar="MODEL_DIR", help="a bundle written by `merflow export`")
    recognise.add_argument("--out", required=True, metavar="OUT", help="the result folder (or URL): intervals.parquet "
                                                                      "and .csv, timeline.png, strips/, result.json")
    add_config_options(recognise, RecogniseConfig, ["fps", "types", "strips", "chunk_frames"],
                       overrides={"types": {"metavar": "micro,macro"}})
    recognise.add_argument("--dask-address", help="scheduler address (default: a local cluster, for a video longer "
                                                  "than one chunk)")
    recognise.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    recognise.set_defaults(handler=commands.cmd_recognise)


def demo_options(parser: argparse.ArgumentParser) -> None:
    """`merflow demo`'s options (the demo's own settings, flows/cli/demo.py)."""
    parser.add_argument("--out", type=Path, default=demo.DEMO_OUT, help="working folder (default ./%(default)s)")
    parser.add_argument("--seed", type=int, default=demo.DEMO_SEED)
    parser.add_argument("--scale", type=float, default=demo.DEMO_SCALE)
    parser.set_defaults(handler=demo.cmd_demo)


# ------------------------------------------------------------------------------------------ the parser
def build_parser() -> argparse.ArgumentParser:
    """The ``merflow`` parser: one subcommand per job, each with its options added on first use."""
    parser = argparse.ArgumentParser(
        prog="merflow",
        description="Micro-expression recognition pipeline: ingest dataset archives into a sample catalog, "
                    "extract face crops and optical flow on Dask into a Zarr store, train and tune Meta-MMFNet "
                    "(Ray Tune), and query the result tables.",
        epilog="Example: merflow synth --dataset casme2 --out archives && "
               "merflow ingest archives/CASME2.zip --out catalog")
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Subcommand)
    commands_.add_parser(
        "synth", options=synth_options, help="write a synthetic dataset archive in a real dataset's layout",
        description="Write synthetic archives in the exact layout and sheet format of a real dataset, with real "
                    "faces performing micro-expressions.")
    commands_.add_parser(
        "ingest", options=ingest_options, help="ingest dataset archives or folders into a sample catalog",
        description="Unpack archives safely (zip, tar, tar.gz, tar.bz2, tar.xz, 7z) or read folders, local or fsspec "
                    "URLs; recognise each dataset; write CATALOG_DIR/samples.parquet and quarantine.parquet. "
                    "Rerunning skips unchanged sources.")
    commands_.add_parser(
        "import-features", options=import_options,
        help="import features made elsewhere (the survey's C4/C9.mat, STSTNet flow images) into a catalog and store",
        description="Bring inputs someone else's pipeline made into the catalog and the feature store, as they are: "
                    "the survey's balanced images (qutrain_C, with its categorical label file: images named by "
                    "position, person unknown), STSTNet-style flow images (one 28x28 PNG a sample, BGR = strain, v, u, "
                    "min-max scaled per image) or STSTNet's per-fold trees, and apex frames; the folders named, "
                    "labelled and grouped by person by --list. The feature group records the source, its checksum, "
                    "the channel order and scaling. Files the list does not name, list rows without a file, "
                    "unreadable or mis-shaped images and a label file of another length are quarantined and printed. "
                    "Rerunning skips unchanged sources.",
        epilog="Example: merflow import-features STSNet_whole_norm_u_v_os --list combined_3class_gt.csv --catalog "
               "cat --store features.zarr && merflow train --model nearest-centroid --protocol megc2019 --catalog cat "
               "--store features.zarr")
    commands_.add_parser("catalog", options=catalog_options, help="summarise an existing catalog",
                         description="Print the per-dataset counts and quarantine reasons of a catalog.")
    commands_.add_parser(
        "features", options=features_options,
        help="face crops, difference and optical flow of every sample into a Zarr store (on Dask)",
        description="Detect the face on each sample's onset frame, crop every frame with that one box, take the "
                    "annotated apex (or spot it), and store the crops, apex-onset difference and optical flow "
                    "(u, v, magnitude, strain) in a Zarr store, with each sample's sequence (--sequence-length T "
                    "frames onset to offset and their T - 1 flows) and its landmarks. Runs on a local Dask cluster, or on an existing "
                    "one with --dask-address. Rerunning computes only what is missing or changed.")
    commands_.add_parser("show", options=show_options, help="draw a sample's stored features as a PNG",
                         description="Onset crop, apex crop, difference, flow as HSV colour and strain, side by side.")
    commands_.add_parser(
        "train", options=train_options, help="train and evaluate a model (--model) on every fold of a protocol",
        description="Train and evaluate a registered model (--model, training/models/; default Meta-MMFNet) on every "
                    "fold of a protocol, with the floor (a nearest centroid) on the same folds. Each model's options "
                    "are listed under its name; what chooses its settings (nothing, or an inner validation split of "
                    "the training subjects only) is recorded with the run. Results go to Parquet under --out; "
                    "interrupted runs resume from their checkpoints when given the same --run.")
    commands_.add_parser(
        "tune", options=tune_options,
        help="search shots (and learning rates) with Ray Tune, scoring the α grid in every trial",
        description="A Ray Tune search: one trial per (configuration, fold), on a local Ray or a cluster, each "
                    "trial scoring the whole α grid without retraining. Early stopping (ASHA) compares a trial only "
                    "with the other configurations of its fold, on that fold's validation subjects; the reported "
                    "result takes, in each fold, the configuration and α that scored best on its validation "
                    "subjects. Failed trials are retried and reported; rerun with the same --run to resume.",
        epilog="Example: merflow tune --catalog catalog --store features.zarr --dataset casme2 --alpha 0.1:1.0:0.1 "
               "--shots 1,3,5,10 --gpus-per-trial 0.25 --ray-address auto --out results")
    commands_.add_parser(
        "spot", options=spot_options, help="spot micro- and macro-expressions in long videos (LOSO), scored as MEGC",
        description="Track the face through each long video and compute per-frame features (optical flow from frame "
                    "i to i + k in SOFTNet's regions) on Dask into a Zarr store, chunk by chunk (a rerun computes only "
                    "what is missing); spot under leave-one-subject-out with SOFTNet (learned) or the baseline (a "
                    "threshold on the flow magnitude, learns nothing), every setting (k, p, length filters) chosen on "
                    "training subjects; classify each spotted micro-expression with a model trained on the other "
                    "subjects' clips; score as MEGC does (IoU >= 0.5, P/R/F1 per type and overall) and STRS (the "
                    "official evaluator's and a corrected one). Tables under --out; see docs/spotting.md.",
        epilog="Example: merflow synth --dataset casme_sq_lv --subjects 4 --out archives && merflow ingest "
               "archives/CASME_sq_long.zip --out catalog && merflow spot --catalog catalog --store spot.zarr "
               "--dataset casme_sq_lv --spotter baseline --out results && merflow results summary --results results")
    commands_.add_parser(
        "export", options=export_options, help="fit a run's model on every subject and write a bundle to apply",
        description="Fit a run's recipe on every subject (not a fold's) with the run's own settings, reading its data "
                    "where its row in the result tables says it was (--catalog/--store where it moved), and write a "
                    "bundle: the spotters (settings in frames and seconds, SOFTNet's weights), the recognition model "
                    "(weights, configuration, classes in order), the feature settings, versions, a golden check and a "
                    "manifest of every file's SHA-256. A spot run gives spotters and its classifier; a training run "
                    "(nearest-centroid, survey-cnn) gives the model, with the spotters of --spotter-run.",
        epilog="Example: merflow export --results results --run spot-casme_sq_lv-softnet-merflow-... --out model && "
               "merflow recognise my_video.mp4 --model model --out my_video")
    commands_.add_parser(
        "recognise", options=recognise_options, help="spot and classify micro-expressions in a video with a bundle",
        description="Decode the video (or a folder of frames), track the face, compute each frame's motion against "
                    "frame i + k in chunks (on Dask for a long video), spot intervals with the bundle's spotters at the "
                    "video's frame rate, classify each with its recognition model, and write the intervals (frames and "
                    "seconds, class, confidence, face box) as Parquet and CSV, a timeline picture and a strip per "
                    "interval, whole or absent. A rerun with the same video, bundle and settings does nothing.",
        epilog="Example: merflow recognise interview.mp4 --model model --out interview-result")
    commands_.add_parser(
        "results", options=results_options, help="query, summarise, rank and plot result tables (read-only)",
        description="Read the result tables (runs, trials, metrics, predictions) without changing them: SQL queries "
                    "through DuckDB, paper-style summary tables, the ranking of a hyperparameter search, and plots.",
        epilog="Example: merflow results summary --results results && "
               "merflow results query \"SELECT run, count(*) FROM predictions GROUP BY run\"")
    commands_.add_parser(
        "demo", options=demo_options, help="run the main job on the embedded synthetic default",
        description="Synthesize every dataset (small), ingest them into one catalog, compute their features on a "
                    "local Dask cluster, draw one sample, search shots and α for Meta-MMFNet with Ray Tune (small "
                    "encoder, short schedule, LOSO on CASME II) and print the result tables.")
    # `merflow --verbose COMMAND ...`, or the same flag after the command (each Subcommand adds its own).
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the full traceback of an error (otherwise one line; the flow run's log in "
                             "Prefect always has it)")
    return parser
