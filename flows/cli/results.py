"""The ``merflow results`` commands: query, summarise, rank, plot and list the result tables, read-only.

Each ``cmd_results_<name>`` reads through ``storage.queries``, computes with ``training.report`` and
prints through ``render`` (its parser is ``parser.add_results_parser``). Bad input is a ValueError or
LookupError, which the main CLI prints as one red line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.text import Text

from merflow.flows.cli import render

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


# Result parts that could not be read, left out of what a command shows (storage/results.py read_arrow);
# each command names them once, after its output.
SKIPPED: list[str] = []


def warn_skipped() -> None:
    """One warning line per unreadable part left out, then forget them."""
    for line in dict.fromkeys(SKIPPED):
        render.console.print(Text.assemble(("warning: left out ", "yellow"), line), soft_wrap=True)
    SKIPPED.clear()


def _load(results: Path, run: str | None, *tables: str) -> list[pd.DataFrame]:
    """The named tables (one run's rows, if given); a LookupError naming the known runs if ``run`` is not one."""
    from merflow.storage import queries

    if run is not None:
        known = queries.query(results, "SELECT run FROM runs UNION SELECT run FROM metrics UNION SELECT run FROM trials "
                                       "UNION SELECT run FROM spot_runs ORDER BY run", SKIPPED)["run"]
        if run not in set(known):
            raise LookupError(f"no run {run!r} in {results}; the runs are: {', '.join(known) or 'none'}")
    return [queries.table(results, name, run, SKIPPED) for name in tables]


def cmd_results_query(args: argparse.Namespace) -> int:
    """`merflow results query SQL`: one read-only statement, printed (and all its rows to --csv)."""
    from merflow.storage import queries

    frame = queries.query(args.results, args.sql, SKIPPED)
    render.print_frame(frame, limit=args.limit, max_width=args.width)
    shown = f" (the first {args.limit} shown)" if len(frame) > args.limit else ""
    render.console.print(f"{len(frame)} row{'' if len(frame) == 1 else 's'}{shown}")
    if args.csv:
        frame.to_csv(args.csv, index=False)
        render.console.print(f"[green]wrote[/] all {len(frame)} rows to {escape(str(args.csv))}")
    warn_skipped()
    return 0


def print_results_summary(results, run: str | None = None) -> None:
    """The paper-style tables of the test results in ``results`` (one run's, if given): each says what chose
    the run's epochs, α and settings and each row's honesty (nothing chosen, chosen on validation subjects, or
    uses test labels), from the run's own record, then what `train` warned about the run; then the spotting
    runs' table."""
    from merflow.training.report import summary_blocks
    from merflow.training.spotting.report import summary_table as spotting_summary

    metrics, runs, floor, spot_metrics, spot_runs = _load(results, run, "metrics", "runs", "floor_metrics",
                                                          "spot_metrics", "spot_runs")
    blocks = summary_blocks(metrics, runs, floor=floor)
    if not blocks and spot_runs.empty:
        raise LookupError(f"no test metrics of a plain run, a search's selected result or a spotting run in {results}")
    for title, table, warnings, honesty in blocks:
        render.print_frame(table.assign(honesty=honesty), title=title, float_format="{:.3f}")
        for line in warnings:
            render.console.print(f"[yellow]warning:[/] {escape(line)}" if "--max-folds" in line or "differ" in line
                                 else escape(line))
    if not spot_runs.empty:
        render.print_frame(spotting_summary(spot_metrics, spot_runs), float_format="{:.4f}", title=(
            "spotting (leave-one-subject-out; MEGC F1 pooled over videos; STRS of the micro-expressions; "
            "published figures of the same dataset beside: docs/spotting.md)"))
    warn_skipped()


def cmd_results_summary(args: argparse.Namespace) -> int:
    """`merflow results summary`."""
    print_results_summary(args.results, args.run)
    return 0


def cmd_results_best(args: argparse.Namespace) -> int:
    """`merflow results best`: a search's ranking on validation (or, as an oracle, test), then its selected result."""
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
        render.console.print("[yellow]warning: this ranks on the test subjects, an oracle: it picks with the labels "
                             "it then scores. Use it to understand the search space, never as a result to report; "
                             "the honest number is the 'selected' row below.[/]")
    for (run, protocol), part in ranking.groupby(["run", "protocol"], sort=False):
        render.print_frame(part.drop(columns=["run", "protocol"]), float_format="{:.3f}", headers=headers,
                           title=f"{run} · {protocol}: top {len(part)} (configuration, model, α) by pooled "
                                 f"{args.split} {SCORE_LABELS[args.by]}")
        honest = None if selected is None else selected[(selected["run"] == run) & (selected["protocol"] == protocol)]
        if honest is None or honest.empty:
            render.console.print(f"[yellow]{escape(f'{run} · {protocol}')} has no 'selected' result (the search did "
                                 "not finish?): no honest number to report yet[/]")
            continue
        render.print_frame(honest.drop(columns=["run", "protocol"]), float_format="{:.3f}", headers=headers,
                           title=f"{run} · {protocol}: the honest result, 'selected' (configuration and α chosen per "
                                 "fold on validation): report its test scores; its validation scores are what it "
                                 "maximised")
    warn_skipped()
    return 0


def cmd_results_plot(args: argparse.Namespace) -> int:
    """`merflow results plot`: α × shots heatmaps and confusion matrices as PNG files."""
    from merflow.training.report import alpha_shots_heatmaps, confusion_plots

    metrics, runs, trials = _load(args.results, args.run, "metrics", "runs", "trials")
    if metrics.empty:
        raise LookupError(f"no metrics in {args.results} to plot")
    heatmaps = alpha_shots_heatmaps(metrics, args.out, metric=args.metric, trials=trials)
    confusions = confusion_plots(metrics, runs, args.out)
    for path in [*heatmaps, *confusions]:
        render.console.print(f"[green]wrote[/] {escape(str(path))}")
    if not heatmaps:
        render.console.print("no hyperparameter search among these runs: no α x shots heatmaps")
    warn_skipped()
    return 0


def cmd_results_runs(args: argparse.Namespace) -> int:
    """`merflow results runs`: one row per (run, protocol), with a search's trials by status."""
    from merflow.storage import queries

    overview = queries.query(args.results, RUNS_OVERVIEW, SKIPPED)
    render.print_frame(overview, title=f"runs in {args.results}")
    render.console.print(f"{len(overview)} (run, protocol) pair{'' if len(overview) == 1 else 's'}")
    warn_skipped()
    return 0
