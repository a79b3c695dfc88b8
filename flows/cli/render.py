"""What the CLI prints: rich tables of each command's result, and an error as one ``error:`` line.

Every command prints through ``console`` here (tests swap it for a wider one); nothing here computes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from merflow.storage import locations

console = Console()

# Errors of what the user gave (a path, an option, the data): exit status 2. Anything else is 1.
USER_ERRORS = (ValueError, LookupError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)
CELL_WIDTH = 40  # the widest cell print_frame shows (`merflow results query --width`)


def progress() -> Progress:
    """A progress bar on the CLI's console (synthesizing archives)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is about what the user gave (exit status 2) rather than a failure (1)."""
    return isinstance(error, USER_ERRORS) or type(error).__name__ == "MissingExtra"


def validation_text(error: ValidationError) -> str:
    """A configuration's validation error as one line: each setting, what is wrong with it and what was given
    (pydantic's own text spans lines and ends in a documentation link)."""
    problems = []
    for item in error.errors(include_url=False):
        setting = ".".join(str(part) for part in item["loc"]) or "the settings"
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        said = isinstance(given, dict) or str(given) in message or repr(given) in message  # the message names it
        shown = "" if said else f" (got {given!r})"
        problems.append(f"{setting}: {message}{shown}")
    return f"invalid {error.title}: " + "; ".join(problems)


# botocore's errors when an object store did not answer (they name the endpoint URL); by name, so that
# this module imports no botocore.
STORE_TIMEOUTS = ("ReadTimeoutError", "ConnectTimeoutError")


def error_line(error: BaseException) -> str:
    """One line for an error: its own message for the user's errors, its type and last line otherwise."""
    if isinstance(error, ValidationError):
        return validation_text(error)
    if type(error).__name__ in STORE_TIMEOUTS and type(error).__module__.startswith("botocore"):
        return (f"{error}: no answer within {locations.s3_timeout():g} s, {locations.S3_ATTEMPTS} attempts "
                f"({locations.S3_TIMEOUT_ENV} sets the wait)")
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if is_user_error(error):
        return " ".join(lines) or type(error).__name__
    return f"{type(error).__name__}: {lines[-1] if lines else ''} (run again with --verbose for the traceback)"


def print_error(message: str) -> None:
    """``error: MESSAGE`` as one line: no markup read in it (brackets survive: pip install 'merflow[s3]'),
    no wrapping."""
    console.print(Text.assemble(("error: ", "red"), message), soft_wrap=True)


def print_catalog_summary(result: dict) -> None:
    """A catalog's per-dataset counts and quarantine reasons (storage/catalog.py summary), and each source's outcome."""
    table = Table(title=f"catalog {result['catalog']}")
    for column in ("dataset", "samples", "subjects", "emotions", "class sets", "apex missing", "quarantined"):
        table.add_column(column)
    for name in sorted(set(result["datasets"]) | set(result["quarantine_reasons"])):
        info = result["datasets"].get(name, {"samples": 0, "subjects": 0, "emotions": {}, "apex_missing": 0})
        reasons = result["quarantine_reasons"].get(name, {})
        imported = info.get("imported", 0)  # features imported, no frames (`merflow import-features`)
        label = name + (" (imported)" if imported == info["samples"] and imported else
                        f" ({imported} imported)" if imported else "")
        table.add_row(label, str(info["samples"]), str(info["subjects"]),
                      ", ".join(f"{k} {v}" for k, v in info["emotions"].items()),
                      ", ".join(f"{k} {v}" for k, v in info.get("class_sets", {}).items()) or "-",
                      str(info["apex_missing"]),
                      ", ".join(f"{k} {v}" for k, v in reasons.items()) or "-")
    console.print(table)
    if result.get("long_videos"):
        print_long_videos(result["long_videos"])
    for outcome in result.get("sources", []):
        console.print(f"  {outcome['status']:>9}  {outcome['source']}: {outcome['detail']}", markup=False)
    console.print(f"{result['samples']} samples, {result['quarantined']} quarantined "
                  f"(reasons in {locations.join(result['catalog'], 'quarantine.parquet')})", markup=False)


def print_import_summary(result: dict) -> None:
    """The import flow's result: per source its format and outcome, what it says of its samples, every quarantined
    sample by name and why, the feature groups it filled (and their configuration, for --feature-config), then the
    catalog's summary."""
    for outcome in result["sources"]:
        labels = f" with {outcome['labels']}" if outcome.get("labels") else ""
        console.print(f"{outcome['status']} {outcome['source']}{labels} ({outcome['format']}): {outcome['detail']}",
                      markup=False)
        for note in outcome["notes"]:
            console.print(f"  {note}", markup=False)
        for problem in outcome["quarantined"]:
            console.print(Text.assemble("  quarantined ", problem["sample_key"], ": ", (problem["reason"], "yellow"),
                                        f" ({problem['detail']})"), soft_wrap=True)
        console.print(f"  stored as {outcome['array']} ({', '.join(outcome['channels'])}) in "
                      f"{', '.join(outcome['groups']) or 'no group'}: feature configuration {outcome['config_hash']} "
                      "(--feature-config, where the store holds several)", markup=False)
    print_catalog_summary({k: v for k, v in result.items() if k != "sources"})


def print_long_videos(found: dict) -> None:
    """The catalog's long-video sets (storage/long_videos.py summary): videos, intervals, classes, quarantine."""
    table = Table(title="long videos (spotting)")
    for column in ("dataset", "videos", "subjects", "frames", "intervals", "classes", "quarantined"):
        table.add_column(column)
    for name, info in sorted(found.items()):
        table.add_row(name, str(info["videos"]), str(info["subjects"]), str(info["frames"]),
                      ", ".join(f"{k} {v}" for k, v in info["intervals"].items()),
                      ", ".join(f"{k} {v}" for k, v in info["labels"].items()),
                      ", ".join(f"{k} {v}" for k, v in info["quarantined"].items()) or "-")
    console.print(table)


def print_features_summary(result: dict) -> None:
    """The features flow's summary: per group, samples, quarantined, spotted apexes, centre crops."""
    table = Table(title=f"features in {result['store']} (config {result['config_hash']})")
    for column in ("group", "samples", "quarantined", "apex spotted", "centre crops"):
        table.add_column(column)
    for name, info in result["groups"].items():
        table.add_row(name, str(info["samples"]), ", ".join(f"{k} {v}" for k, v in info["quarantined"].items()) or "-",
                      str(info["apex_spotted"]), str(info["no_face_centre_crop"]))
    console.print(table)
    others = result.get("shards_by_others")
    console.print(f"{result['shards_computed']} shards computed, {result['shards_skipped']} already done"
                  + (f", {others} computed by another run at the same time" if others else ""))
    for damage in result.get("repaired", []):
        shown = ", ".join(damage["samples"][:10]) + (" ..." if len(damage["samples"]) > 10 else "")
        console.print(Text.assemble(("repaired ", "yellow"), f"{damage['group']} shard {damage['shard']}: "
                                    f"{damage['problem']}; recomputed samples: {shown or 'none of the catalog'}"),
                      soft_wrap=True)


def print_verify_report(report: dict, catalog: str) -> int:
    """`merflow features --verify`'s report, a line per group and one per damaged shard; returns the exit
    status (1: something damaged, not computed, or computed from other inputs than the catalog's)."""
    trouble = False
    console.print(f"verified {report['store']}", markup=False)
    for name, info in report["groups"].items():
        missing, changed = info.get("samples_missing", 0), info.get("samples_changed", 0)
        trouble |= bool(info["damaged"] or missing or changed)
        line = (f"{name} ({info['dataset']}): {info['shards']} shards, {info['verified']} intact, "
                f"{len(info['damaged'])} damaged, {info['not_computed']} not computed, {info['unverifiable']} without "
                f"checksums (written before merflow recorded them)")
        if "samples_missing" in info:
            line += f"; catalog samples: {missing} missing, {changed} from changed inputs"
        console.print(Text(line, style="red" if info["damaged"] else ""), soft_wrap=True)
        for damage in info["damaged"]:
            console.print(Text.assemble(("  damaged ", "red"), damage.line()), soft_wrap=True)
    if not report["groups"]:
        console.print(f"no feature groups in {report['store']}", markup=False)
    elif trouble:
        console.print(f"run `merflow features --catalog {catalog} --store {report['store']}` with each group's settings "
                      "to recompute what is damaged or missing", markup=False, soft_wrap=True)
    else:
        console.print("every shard matches its checksums", markup=False)
    return 1 if trouble else 0


def print_spot_result(result: dict) -> None:
    """The spot flow's pooled MEGC and STRS rows, what chose the settings, and the per-frame work done."""
    leak = " [the published recipe's settings saw the test subject: a comparison, not a result]" if result["leaky"] else ""
    table = Table(title=f"{result['dataset']} · {result['spotter']} ({result['recipe']}): leave-one-subject-out over "
                        f"{result['subjects']} people, {result['videos']} videos")
    for column in ("evaluator", "type", "truth", "spotted", "TP", "precision", "recall", "F1", "analysis F1", "STRS"):
        table.add_column(column)

    def number(value) -> str:
        return "-" if value is None or value != value else f"{value:.4f}"

    for row in result["pooled"]:
        table.add_row(row["evaluator"], row["type"], str(row.get("n_truth")), str(row.get("n_pred")), str(row.get("tp")),
                      number(row.get("precision")), number(row.get("recall")), number(row.get("f1")),
                      number(row.get("analysis_f1")), number(row.get("strs")))
    console.print(table)
    console.print(f"settings chosen on: {result['chosen_on']}{leak}", markup=False)
    work = result["per_frame"]
    console.print(f"per-frame features: {work['chunks_computed']} chunks computed ({work['frames_computed']} frames), "
                  f"{work['chunks_skipped']} already done; store {result['store']}", markup=False)
    if work.get("no_face"):
        console.print(f"left out (no face found at any check): {', '.join(work['no_face'])}", style="yellow",
                      markup=False)


def note_lines(notes: dict) -> list[str]:
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
    if notes.get("max_folds"):
        cut = notes["max_folds"]
        lines.append(f"only the first {cut['first']} of {cut['of']} folds ran (--max-folds): a quick look, "
                     "not a result to report")
    return lines


def print_train_result(result: dict, protocol: str, dataset: str | None) -> None:
    """The train flow's pooled test table, its notes, the balancing and LOVO's leakage warning."""
    table = Table(title=f"{protocol} {dataset or ''}: {result['folds']} folds, pooled test "
                        f"(classes {', '.join(result['classes'])})")
    for column in ("model", "α", "n", "accuracy", "UF1", "UAR"):
        table.add_column(column)
    for row in result["pooled"]:
        table.add_row(row["model"], "" if row["alpha"] is None else f"{row['alpha']:.1f}", str(row["n"]),
                      f"{row['accuracy']:.3f}", f"{row['uf1']:.3f}", f"{row['uar']:.3f}")
    console.print(table)
    notes = result.get("notes", {})
    for line in note_lines(notes):
        console.print(line, markup=False)
    if notes.get("balance"):
        balance = notes["balance"]
        if balance.get("method") == "undersample-training":
            console.print(f"balanced inside each fold (undersample-training, seed {balance['seed']}): each fold's "
                          f"training samples at {balance['per_class']['min']} to {balance['per_class']['max']} per "
                          "class", markup=False)
        else:
            console.print(f"balanced (undersample, seed {balance['seed']}) before the split: {balance['per_class']} "
                          f"per class, {len(balance['kept'])} samples kept of " + ", ".join(
                              f"{k} {v}" for k, v in balance["before"].items()), markup=False)
    if notes.get("recipe_differences"):
        console.print("recipe custom: " + "; ".join(notes["recipe_differences"]), markup=False)
    for leak in notes.get("leaks") or (["LOVO: a held-out sample's person has other clips in training"]
                                       if result.get("leaky") else []):
        what, why = leak.split(": ", 1) if ": " in leak else (leak, "")
        console.print(f"[yellow]{escape(what)} is leaky (the number uses test labels): {escape(why)}[/]")


def print_tune_summary(summary: dict, out) -> None:
    """The tune flow's summary: the selected result's pooled test table, trials by status, failures, plots."""
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
    for line in note_lines(summary.get("notes", {})):
        console.print(f"  {line}", markup=False)
    for picture in summary["pictures"]:
        console.print(f"  plot: {picture}", markup=False)
    console.print(f"run {summary['run']}: tables runs, trials, metrics, predictions in {out}; try "
                  f"`merflow results summary --results {out} --run {summary['run']}` or "
                  f"`merflow results best --results {out} --run {summary['run']}`", markup=False)


def _cell(value, float_format: str) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_cell(v, float_format) for v in value) + "]"
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return float_format.format(value)
    return str(value)


def print_frame(frame: pd.DataFrame, title: str | None = None, limit: int | None = None, float_format: str = "{:.4g}",
                max_width: int = CELL_WIDTH, headers: dict[str, str] | None = None) -> None:
    """A DataFrame as a rich table: numbers right-aligned, cells wider than ``max_width`` cut with an ellipsis,
    the first ``limit`` rows, column names shown as ``headers`` maps them."""
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
        table.add_column((headers or {}).get(name, str(name)), justify="right" if numeric else "left",
                         max_width=max_width, overflow="ellipsis", no_wrap=True)
    for row in frame.head(limit).itertuples(index=False):
        table.add_row(*(Text(_cell(v, float_format)) for v in row))  # Text: brackets are data, not markup
    # Rich fits a table to the terminal by squeezing columns, down to nothing; a table wider than the terminal
    # is printed whole instead (the terminal wraps it, `less -S` scrolls it, --csv keeps it).
    natural = console.measure(table, options=console.options.update(max_width=100_000)).maximum
    if natural <= console.width:
        console.print(table)
    else:
        Console(width=natural, file=console.file, force_terminal=console.is_terminal,
                color_system=console.color_system).print(table)


def print_export_summary(summary: dict) -> None:
    """What `merflow export` wrote: the spotters (k in frames and seconds), the recognition model, the bundle."""
    table = Table(title=f"bundle {summary['out']} ({summary['hash'][:12]}): fitted on {len(summary['subjects'])} "
                        "subjects, every one of the run's")
    for column in ("part", "what", "settings"):
        table.add_column(column)
    for kind, spotter in summary["spotters"].items():
        seconds = ", ".join(f"{k.removesuffix('_seconds')} {v:.3f} s" for k, v in spotter.items()
                            if k.endswith("_seconds") and v is not None)
        table.add_row(f"{kind} spotter", spotter["spotter"], f"k {spotter['k']} at {spotter['fps']:g} fps ({seconds}), "
                                                             f"p {spotter['p']}")
    recogniser = summary["recogniser"]
    counts = recogniser["trained_on"].get("per_class", {})
    table.add_row("recogniser", recogniser["model"], ", ".join(f"{c} {counts.get(c, 0)}" for c in recogniser["classes"]))
    console.print(table)
    console.print(f"{len(summary['files'])} files listed in {summary['out']}/manifest.json; took "
                  f"{summary['seconds']:.0f} s", markup=False)


def print_recognise_result(result: dict) -> None:
    """`merflow recognise`'s outcome: the counts per type and class, and where the result is (or that it was there)."""
    if result.get("skipped"):
        console.print(f"{result['out']} already holds this video's result with this model and settings: nothing to do",
                      markup=False)
        return
    video = result["video"]
    table = Table(title=f"{video['location']}: {video['n_frames']} frames at {video['fps']:g} fps "
                        f"({video['fps_source']}), {result['intervals']} intervals")
    for column in ("type / class", "intervals"):
        table.add_column(column)
    for name, count in sorted(result["counts"].items()):
        table.add_row(name, str(count))
    console.print(table)
    track = result["track"]
    console.print(f"face: {track['segments']} segment(s), not found at {track['lost']} of {track['checked']} checks; "
                  f"{result['frames_per_second']:g} frames/s; result in {result['out']} (intervals.parquet, "
                  f"intervals.csv, timeline.png, strips/); took {result['seconds']:.0f} s", markup=False)
