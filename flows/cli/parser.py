"""The ``merflow`` argument parser. No choice list or default is written here: each comes from the
registry or module constant that defines it, or from the configuration class (or function) that owns
it, through ``flows.defaults``. A subcommand's options are added when it is first used (parsed, or its
--help shown), so that `merflow --help` and the light commands import no training code."""

from __future__ import annotations

import argparse
from pathlib import Path

from merflow.configs.search import SCHEDULERS
from merflow.flows.cli import commands, demo, results
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


def _grid_text(values) -> str:
    """A grid as `merflow tune` reads it back (training/search/space.py: parse_grid)."""
    return ",".join(str(v) for v in values)


# ------------------------------------------------------------------------------------------ per command
def synth_options(synth: argparse.ArgumentParser) -> None:
    """`merflow synth`'s options: SynthConfig's fields (tasks/synthetic)."""
    from merflow.tasks.synthetic import ARCHIVE_FORMATS, DATASETS, SynthConfig

    synth.add_argument("--dataset", required=True, choices=[*DATASETS, CASME_SQ_ALIAS, "all"])
    synth.add_argument("--out", required=True, type=Path, help="folder to write the archive into")
    synth.add_argument("--subjects", type=int, default=default(SynthConfig, "subjects"),
                       help="number of subjects (default %(default)s)")
    synth.add_argument("--samples-per-subject", type=int, default=default(SynthConfig, "samples_per_subject"),
                       help="samples per subject (default %(default)s)")
    synth.add_argument("--samples", type=int, help="total samples, spread over the subjects (overrides the above)")
    synth.add_argument("--archive", choices=ARCHIVE_FORMATS, default=default(SynthConfig, "archive"),
                       help="pack as zip or tar.gz, or leave a folder (default %(default)s)")
    synth.add_argument("--seed", type=int, default=default(SynthConfig, "seed"),
                       help="random seed: same seed, same archive content")
    synth.add_argument("--scale", type=float, default=default(SynthConfig, "scale"),
                       help="frame size relative to the real dataset's, e.g. 0.25 for fast tests (default %(default)s)")
    synth.add_argument("--no-quirks", action="store_true",
                       help="leave out the real datasets' quirks (apex '/', missing frames, stray files, ...)")
    synth.add_argument("--face-image", metavar="PATH",
                       help="a photo of one frontal face to make every subject from (own pose, warp, tone each); "
                            "read at run time, never copied")
    synth.add_argument("--emotions", metavar="A,B,...",
                       help="only these emotions (the dataset's own names, e.g. Anger,Happiness,Surprise), equally many")
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
    from merflow.flows.features import features_flow
    from merflow.storage.features import FIRST_FRAMES, SIZES
    from merflow.tasks.faces import DETECTORS, NO_FACE_POLICIES
    from merflow.tasks.motion import FLOW_ALGORITHMS

    def flow_default(name: str):
        return parameter(features_flow, name)

    features.add_argument("--catalog", required=True, metavar="CATALOG_DIR", help="a folder or an fsspec URL")
    features.add_argument("--store", required=True, help="Zarr store: a path or an fsspec URL (s3://...)")
    features.add_argument("--dataset", help="only this dataset (e.g. casme2, smic); default: every one")
    features.add_argument("--dask-address", help="scheduler address, e.g. tcp://HOST:8786 (default: a local cluster)")
    features.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    features.add_argument("--flow", choices=FLOW_ALGORITHMS, default=flow_default("flow_algorithm"),
                          help="optical flow algorithm (default %(default)s, with the published Meta-MMFNet "
                               "parameters)")
    features.add_argument("--size", type=int, default=flow_default("size"), choices=SIZES,
                          help="crop size (default %(default)s)")
    features.add_argument("--detector", choices=DETECTORS, default=flow_default("detector"),
                          help="face detector (default %(default)s)")
    features.add_argument("--no-face", choices=NO_FACE_POLICIES, default=flow_default("no_face"),
                          help="when no face is found: centre crop and flag it, or quarantine the sample "
                               "(default %(default)s)")
    features.add_argument("--shard-size", type=int, default=flow_default("shard_size"),
                          help="samples per Zarr shard (default %(default)s)")
    features.add_argument("--first-frame", choices=FIRST_FRAMES, default=flow_default("first_frame"),
                          help="the pair compared: onset and apex (default), or onset+1 and apex+1 as the "
                               "published Meta-MMFNet code reads them (for `merflow train --recipe published`)")
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
                        help=f"for {'/'.join(PER_DATASET_PROTOCOLS)}: casme, casme2, smic, samm, casme_sq")
    parser.add_argument("--class-set", help="another class set for loso/lovo, e.g. casme2_5 (CASME II with others)")
    parser.add_argument("--sample-list", choices=SAMPLE_LISTS,
                        help="only the samples of a published list: survey = the survey baseline's own lists "
                             "(CASME.xls, casme2.xls, samm.xls, SMIC.xls, CAS(ME)2.xls), with their labels")
    parser.add_argument("--sample-lists", metavar="DIR",
                        help="the folder holding those lists (default $MERFLOW_SAMPLE_LISTS)")
    parser.add_argument("--feature-config", metavar="HASH",
                        help="the feature configuration to train on where the store holds several (e.g. after "
                             "`merflow features --size 28`): its hash, or the start of it (the error lists them)")


def add_training_options(parser: argparse.ArgumentParser, flow) -> None:
    """How `train` and `tune` train: encoder, input layout, schedule, seed, device, where results go."""
    from merflow.configs.train import EPOCH_CHOICES, RECIPES, TrainConfig
    from merflow.training import models
    from merflow.training.encoders import ENCODERS
    from merflow.training.model import INPUT_LAYOUTS
    from merflow.training.models.nearest_centroid import FEATURES, CentroidConfig
    from merflow.training.models.survey_cnn import GREY_CHANNELS, UNANNOTATED_APEX, SurveyConfig

    def train(name: str):
        return default(TrainConfig, name)

    def recipes(name: str) -> str:
        return ", ".join(f"{recipe} {settings.get(name, train(name))}" for recipe, settings in RECIPES.items())

    parser.add_argument("--model", choices=list(models.MODELS), default=models.DEFAULT_MODEL,
                        help="meta-mmfnet (default), or survey-cnn: the survey baseline's CNN on the 28x28 apex "
                             "frame with its MATLAB schedule, or nearest-centroid: the floor every run records, "
                             "class means of the training samples (training/models/)")
    parser.add_argument("--centroid-features", choices=FEATURES, default=default(CentroidConfig, "features"),
                        help="nearest-centroid: flow u, v (default, as the floor), the apex - onset difference, or both")
    parser.add_argument("--balance", choices=models.BALANCES,
                        help="subsample every class to the smallest before the split, seeded (default: "
                             + ", ".join(f"{info.name} {info.default_balance}" for info in models.MODELS.values())
                             + ")")
    parser.add_argument("--unannotated-apex", choices=UNANNOTATED_APEX, default=default(SurveyConfig, "unannotated_apex"),
                        help="survey-cnn, datasets without an apex (SMIC): the clip's middle frame as the survey "
                             "(default), or merflow's spotted apex")
    parser.add_argument("--grey-channels", choices=GREY_CHANNELS, default=default(SurveyConfig, "grey_channels"),
                        help="survey-cnn, grey datasets (SAMM, CASME): three equal channels (default), or the "
                             "grey image in channel 1 and zeros, as the survey's apex4.m filled them")
    parser.add_argument("--epochs", type=int,
                        help=f"survey-cnn training epochs (default {default(SurveyConfig, 'epochs')}, main4.m's)")
    parser.add_argument("--recipe", choices=list(RECIPES), default=train("recipe"),
                        help="merflow: leakage-free defaults, each stage's last epoch and α chosen on validation (default); published: "
                             "Meta-MMFNet's code exactly (ResNet-18, batch 128, no weight decay, StepLR pretraining, "
                             "fixed schedule, no inner validation); differences in docs/recipes.md")
    parser.add_argument("--encoder", choices=list(ENCODERS), help=f"default: the recipe's ({recipes('encoder')})")
    parser.add_argument("--layout", choices=INPUT_LAYOUTS,
                        help="difference above flow in one 3x2HxW image (published, the default), or 6 channels")
    parser.add_argument("--macro-epochs", type=int, help=f"CK+ pretraining epochs (default {train('macro_epochs')})")
    parser.add_argument("--pretrain-epochs", type=int,
                        help=f"micro pretraining epochs per fold (default {train('pretrain_epochs')})")
    parser.add_argument("--meta-epochs", type=int, help=f"meta-training epochs (default {train('meta_epochs')})")
    parser.add_argument("--batches-per-epoch", type=int,
                        help=f"episode batches per meta epoch (default {train('batches_per_epoch')})")
    parser.add_argument("--batch-size", type=int,
                        help=f"classifier pretraining mini-batch (default: the recipe's ({recipes('batch_size')})); "
                             "a small set trains few steps an epoch: see benchmarks/README.md, model selection")
    parser.add_argument("--epoch-choice", choices=EPOCH_CHOICES,
                        help="each stage keeps its last epoch (default: the recipe's, "
                             f"{recipes('epoch_choice')}), its best validation accuracy, or its lowest validation loss")
    parser.add_argument("--seed", type=int, default=train("seed"))
    parser.add_argument("--device", choices=DEVICES, default=train("device"),
                        help="auto: a GPU where the trial has one (default)")
    # Locations are strings: Path("s3://b/r") would be a local folder "s3:" (storage/locations.py).
    parser.add_argument("--out", default=parameter(flow, "out"), metavar="RESULTS",
                        help="results folder or fsspec URL, e.g. s3://bucket/results (default ./%(default)s)")


def train_options(train: argparse.ArgumentParser) -> None:
    """`merflow train`'s options: the train flow's parameters, TrainConfig's and SurveyConfig's fields."""
    from merflow.configs.train import TrainConfig
    from merflow.flows.train import train_flow

    add_protocol_options(train, train_flow)
    add_training_options(train, train_flow)
    train.add_argument("--shots", type=int, default=default(TrainConfig, "shots"),
                       help="support shots per class (default %(default)s)")
    train.add_argument("--run", help="run id: reuse one to resume an interrupted run")
    train.set_defaults(handler=commands.cmd_train)


def tune_options(tune: argparse.ArgumentParser) -> None:
    """`merflow tune`'s options: the tune flow's parameters (SearchConfig's, SearchSpace's) and TrainConfig's."""
    from merflow.configs.train import TrainConfig
    from merflow.flows.tune import tune_flow
    from merflow.training.selection import SELECTION_METRICS

    def flow_default(name: str):
        return parameter(tune_flow, name)

    alphas = flow_default("alphas")
    add_protocol_options(tune, tune_flow)
    tune.add_argument("--shots", help="support shots per class to search: a list or start:stop:step "
                                      f"(default {_grid_text(flow_default('shots'))})")
    tune.add_argument("--alpha", help="fusion weights α scored in every trial, d = d_micro + α·d_macro (default "
                                      f"{min(alphas)} to {max(alphas)}, {len(alphas)} values)")
    tune.add_argument("--meta-lr", help="meta-training learning rates to search, e.g. 0.05,0.01 "
                                        f"(default: {default(TrainConfig, 'meta_lr')} only)")
    tune.add_argument("--pretrain-lr", help="pretraining learning rates to search "
                                            f"(default: {default(TrainConfig, 'pretrain_lr')} only)")
    add_training_options(tune, tune_flow)
    tune.add_argument("--scheduler", choices=SCHEDULERS, default=flow_default("scheduler"),
                      help="asha: stop weak configurations early, per fold, on validation; fifo: run all "
                           "(default %(default)s)")
    tune.add_argument("--select-by", choices=SELECTION_METRICS, default=flow_default("select_by"),
                      help="validation metric that picks each fold's configuration and α (default %(default)s)")
    tune.add_argument("--ray-address", help="an existing Ray cluster: auto, or ray://HOST:10001 (default: a local Ray)")
    tune.add_argument("--cpus-per-trial", type=float, default=flow_default("cpus_per_trial"),
                      help="CPUs per trial (default %(default)g)")
    tune.add_argument("--gpus-per-trial", type=float, default=flow_default("gpus_per_trial"),
                      help="GPUs per trial, a fraction shares one GPU, e.g. 0.25 (default %(default)g)")
    tune.add_argument("--max-failures", type=int, default=flow_default("max_failures"),
                      help="retries of a failed trial (default %(default)s)")
    tune.add_argument("--max-folds", type=int, help="only the first N folds: a quick look, not a result to report")
    tune.add_argument("--run", help="run id: reuse one to resume an interrupted search")
    tune.set_defaults(handler=commands.cmd_tune)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def results_options(group: argparse.ArgumentParser) -> None:
    """`merflow results` and its subcommands: query, summary, best, plot, runs (handlers in ``results``)."""
    from merflow.flows.cli.render import CELL_WIDTH
    from merflow.flows.parameters import RESULTS
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
                    "several statements are refused; files outside RESULTS cannot be read.",
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
        "summary", parents=[location, one_run], help="paper-style tables of the honest test results",
        description="Per run and protocol: micro, macro and fused (α chosen per fold on validation) on the test "
                    "subjects pooled over folds: per-class accuracy, accuracy, UF1, UAR and n; composite protocols "
                    "(megc2019, cde, fused4, fused9) add one block per dataset. For a search, the 'selected' result. "
                    "Each block ends with the run's floor: a nearest centroid on flow u, v on the same folds.")
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
    commands_.add_parser("catalog", options=catalog_options, help="summarise an existing catalog",
                         description="Print the per-dataset counts and quarantine reasons of a catalog.")
    commands_.add_parser(
        "features", options=features_options,
        help="face crops, difference and optical flow of every sample into a Zarr store (on Dask)",
        description="Detect the face on each sample's onset frame, crop every frame with that one box, take the "
                    "annotated apex (or spot it), and store the crops, apex-onset difference and optical flow "
                    "(u, v, magnitude, strain) in a Zarr store. Runs on a local Dask cluster, or on an existing "
                    "one with --dask-address. Rerunning computes only what is missing or changed.")
    commands_.add_parser("show", options=show_options, help="draw a sample's stored features as a PNG",
                         description="Onset crop, apex crop, difference, flow as HSV colour and strain, side by side.")
    commands_.add_parser(
        "train", options=train_options, help="train and evaluate Meta-MMFNet on every fold of a protocol",
        description="Macro encoder pretrained on CK+, micro encoder per fold, both meta-trained as prototype "
                    "classifiers, scores fused as d_micro + α·d_macro over an α grid. α (and, with --epoch-choice, "
                    "each stage's epoch) is chosen on an inner validation split of the training subjects only. Results go to Parquet under --out; "
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
