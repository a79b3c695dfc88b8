"""The ``merflow results`` commands: query, summarise, rank, plot and list the result tables, read-only.

``add_results_parser(commands)`` adds the group to the main parser; each ``cmd_results_<name>`` reads
through ``storage.queries``, computes with ``training.report`` and prints with rich. Bad input is a
ValueError or LookupError, which the main CLI prints as one red line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console()

RUNS_OVERVIEW = """
WITH known AS (
    SELECT run, protocol FROM runs UNION SELECT run, protocol FROM metrics UNION SELECT run, protocol FROM trials
), described AS (
    SELECT run, protocol, any_value(dataset) AS dataset, min(created_at) AS created_at FROM runs GROUP BY ALL
), searched AS (
    SELECT run, protocol, count(DISTINCT trial) AS configurations, count(*) AS trials,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'stopped') AS stopped,
           count(*) FILTER (WHERE status = 'error') AS error,
           sum(failures) AS failures
    FROM trials GROUP BY ALL
)
SELECT known.run, known.protocol, dataset, created_at, configurations, trials, completed, stopped, error, failures
FROM known LEFT JOIN described USING (run, protocol) LEFT JOIN searched USING (run, protocol)
ORDER BY created_at NULLS LAST, known.run, known.protocol
"""


def _cell(value, float_format: str) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_cell(v, float_format) for v in value) + "]"
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return float_format.format(value)
    return str(value)


def print_frame(frame: pd.DataFrame, title: str | None = None, limit: int | None = None, float_format: str = "{:.4g}",
                max_width: int = 40, headers: dict[str, str] | None = None) -> None:
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


def _load(results: Path, run: str | None, *tables: str) -> list[pd.DataFrame]:
    """The named tables (one run's rows, if given); a LookupError naming the known runs if ``run`` is not one."""
    from merflow.storage import queries

    if run is not None:
        known = queries.query(results, "SELECT run FROM runs UNION SELECT run FROM metrics UNION SELECT run FROM trials "
                                       "ORDER BY run")["run"]
        if run not in set(known):
            raise LookupError(f"no run {run!r} in {results}; the runs are: {', '.join(known) or 'none'}")
    return [queries.table(results, name, run) for name in tables]


def cmd_results_query(args: argparse.Namespace) -> int:
    from merflow.storage import queries

    frame = queries.query(args.results, args.sql)
    print_frame(frame, limit=args.limit, max_width=args.width)
    shown = f" (the first {args.limit} shown)" if len(frame) > args.limit else ""
    console.print(f"{len(frame)} row{'' if len(frame) == 1 else 's'}{shown}")
    if args.csv:
        frame.to_csv(args.csv, index=False)
        console.print(f"[green]wrote[/] all {len(frame)} rows to {escape(str(args.csv))}")
    return 0


def cmd_results_summary(args: argparse.Namespace) -> int:
    from merflow.training.report import summary_tables

    metrics, runs = _load(args.results, args.run, "metrics", "runs")
    tables = summary_tables(metrics, runs)
    if not tables:
        raise LookupError(f"no test metrics of a plain run or a search's selected result in {args.results}")
    for title, table in tables:
        print_frame(table, title=title, float_format="{:.3f}")
    return 0


def cmd_results_best(args: argparse.Namespace) -> int:
    from merflow.training.report import SCORE_LABELS, SCORES, SPLITS, best_table

    short = {"validation": "val", "test": "test"}
    headers = {"rank": "#", "alpha": "α"} | {f"{split}_{score}": f"{short[split]} {SCORE_LABELS[score]}"
                                              for split in SPLITS for score in SCORES}

    (metrics,) = _load(args.results, args.run, "metrics")
    ranking, selected = best_table(metrics, by=args.by, split=args.split, top=args.top)
    if ranking.empty:
        raise LookupError(f"no hyperparameter search in {args.results}" + (f" for run {args.run}" if args.run else "")
                          + " (plain training runs have nothing to rank; see `merflow results summary`)")
    if args.split == "test":
        console.print("[yellow]warning: this ranks on the test subjects, an oracle: it picks with the labels it then "
                      "scores. Use it to understand the search space, never as a result to report; the honest number "
                      "is the 'selected' row below.[/]")
    for (run, protocol), part in ranking.groupby(["run", "protocol"], sort=False):
        print_frame(part.drop(columns=["run", "protocol"]), float_format="{:.3f}", headers=headers,
                    title=f"{run} · {protocol}: top {len(part)} (configuration, model, α) by pooled "
                          f"{args.split} {SCORE_LABELS[args.by]}")
        honest = None if selected is None else selected[(selected["run"] == run) & (selected["protocol"] == protocol)]
        if honest is None or honest.empty:
            console.print(f"[yellow]{escape(f'{run} · {protocol}')} has no 'selected' result (the search did not finish?): "
                          "no honest number to report yet[/]")
            continue
        print_frame(honest.drop(columns=["run", "protocol"]), float_format="{:.3f}", headers=headers,
                    title=f"{run} · {protocol}: the honest result, 'selected' (configuration and α chosen per fold "
                          "on validation): report its test scores; its validation scores are what it maximised")
    return 0


def cmd_results_plot(args: argparse.Namespace) -> int:
    from merflow.training.report import alpha_shots_heatmaps, confusion_plots

    metrics, runs, trials = _load(args.results, args.run, "metrics", "runs", "trials")
    if metrics.empty:
        raise LookupError(f"no metrics in {args.results} to plot")
    heatmaps = alpha_shots_heatmaps(metrics, args.out, metric=args.metric, trials=trials)
    confusions = confusion_plots(metrics, runs, args.out)
    for path in [*heatmaps, *confusions]:
        console.print(f"[green]wrote[/] {escape(str(path))}")
    if not heatmaps:
        console.print("no hyperparameter search among these runs: no α x shots heatmaps")
    return 0


def cmd_results_runs(args: argparse.Namespace) -> int:
    from merflow.storage import queries

    overview = queries.query(args.results, RUNS_OVERVIEW)
    print_frame(overview, title=f"runs in {args.results}")
    console.print(f"{len(overview)} (run, protocol) pair{'' if len(overview) == 1 else 's'}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_results_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``results`` and its subcommands to the main parser's subcommands; returns the ``results`` parser."""
    location = argparse.ArgumentParser(add_help=False)
    location.add_argument("--results", default="results", metavar="RESULTS",
                          help="the results written by `merflow train --out`: a folder or an fsspec URL "
                               "(default ./results)")
    one_run = argparse.ArgumentParser(add_help=False)
    one_run.add_argument("--run", help="only this run id (default: every run)")

    group = commands.add_parser(
        "results", help="query, summarise, rank and plot result tables (read-only)",
        description="Read the result tables (runs, trials, metrics, predictions) without changing them: SQL queries "
                    "through DuckDB, paper-style summary tables, the ranking of a hyperparameter search, and plots.",
        epilog="Example: merflow results summary --results results && "
               "merflow results query \"SELECT run, count(*) FROM predictions GROUP BY run\"")
    subcommands = group.add_subparsers(dest="results_command", required=True, metavar="SUBCOMMAND")

    query = subcommands.add_parser(
        "query", parents=[location], help="run one SQL SELECT over the result tables",
        description="Run one read-only SQL statement (SELECT, or EXPLAIN of a SELECT) with DuckDB over the views "
                    "runs, trials, metrics and predictions; run and protocol are columns. Writes, settings and "
                    "several statements are refused; files outside RESULTS cannot be read.",
        epilog="Example: merflow results query \"SELECT trial, model, alpha, uf1 FROM metrics WHERE scope = 'pooled' "
               "AND split = 'test' ORDER BY uf1 DESC\"")
    query.add_argument("sql", metavar="SQL", help="one SELECT statement (quote it for the shell)")
    query.add_argument("--csv", type=Path, metavar="FILE", help="also write every row of the result to this CSV file")
    query.add_argument("--limit", type=_positive, default=200, help="rows to print (default 200; --csv gets all)")
    query.add_argument("--width", type=_positive, default=40, help="widest cell to print, in characters (default 40)")
    query.set_defaults(handler=cmd_results_query)

    summary = subcommands.add_parser(
        "summary", parents=[location, one_run], help="paper-style tables of the honest test results",
        description="Per run and protocol: micro, macro and fused (α chosen per fold on validation) on the test "
                    "subjects pooled over folds: per-class accuracy, accuracy, UF1, UAR and n; composite protocols "
                    "(megc2019, cde, fused4, fused9) add one block per dataset. For a search, the 'selected' result.")
    summary.set_defaults(handler=cmd_results_summary)

    best = subcommands.add_parser(
        "best", parents=[location, one_run], help="rank a hyperparameter search's configurations and α",
        description="Rank each search's (configuration, model, α) rows by a pooled score on the validation subjects "
                    "(default) and show their validation and test scores, then the honest 'selected' result. "
                    "Ranking on --split test is an oracle, for understanding only.")
    best.add_argument("--by", choices=["accuracy", "uf1", "uar"], default="uf1", help="score to rank by (default uf1)")
    best.add_argument("--split", choices=["validation", "test"], default="validation",
                      help="split to rank on (default validation; test is an oracle)")
    best.add_argument("--top", type=_positive, default=10, help="rows per run and protocol (default 10)")
    best.set_defaults(handler=cmd_results_best)

    plot = subcommands.add_parser(
        "plot", parents=[location, one_run], help="α x shots heatmaps and confusion matrices as PNG",
        description="For each search: heatmaps of the fused model's pooled score over shots and α, validation next "
                    "to test (one PNG per setting of the other searched settings). For each run: the confusion "
                    "matrix of the honest fused model on the pooled test subjects.")
    plot.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the PNG files into")
    plot.add_argument("--metric", choices=["accuracy", "uf1", "uar"], default="uf1",
                      help="score in the heatmaps (default uf1)")
    plot.set_defaults(handler=cmd_results_plot)

    runs = subcommands.add_parser(
        "runs", parents=[location], help="list runs, with the trials of searches",
        description="One row per (run, protocol): dataset, creation time and, for a search, its configurations and "
                    "trials by status (completed, stopped early, error) and the failed attempts retried.")
    runs.set_defaults(handler=cmd_results_runs)
    return group
