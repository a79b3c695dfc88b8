"""The ``merflow`` command line: one subcommand per job, each a thin call into a flow or a task.

``parser`` builds the argument parser (choices and defaults from the registries and configuration
classes), ``options`` turns options into typed configurations, ``commands`` holds one handler per
command, ``render`` prints (tables, one ``error:`` line per error), ``results`` the read-only
``merflow results`` commands, ``demo`` the embedded default. ``main`` is the console script.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import traceback

# Commands that run Prefect flows; without a configured PREFECT_API_URL they report to the local Prefect
# server of PREFECT_HOME, started by the first such command and shared by the next (flows/local_server.py).
FLOW_COMMANDS = ("ingest", "import-features", "features", "train", "tune", "spot", "demo")


def flow_api(args: argparse.Namespace):
    """The Prefect API a flow command reports to: the local server (found or started) where none is configured."""
    from contextlib import nullcontext

    if args.command not in FLOW_COMMANDS or getattr(args, "verify", False):  # features --verify runs no flow
        return nullcontext()
    from merflow.flows.local_server import local_api

    return local_api()


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


def main(argv: list[str] | None = None) -> int:
    """The ``merflow`` console script: parse, run the command's handler, print an error as one line."""
    from merflow.flows.cli.options import check_names
    from merflow.flows.cli.parser import build_parser
    from merflow.flows.cli.render import error_line, is_user_error, print_error

    args = build_parser().parse_args(argv)
    # Who holds a lock, as another user reads it (storage/locks.py); Dask workers started later inherit it.
    os.environ["MERFLOW_COMMAND"] = shlex.join(["merflow", *map(str, sys.argv[1:] if argv is None else argv)])
    verbose = bool(getattr(args, "verbose", False))
    if args.command in FLOW_COMMANDS and not verbose:
        quiet_run_errors()
    try:
        check_names(args)
        with flow_api(args):
            return args.handler(args)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - every error ends as one line (the traceback under --verbose)
        if verbose:
            traceback.print_exc()
        print_error(error_line(error))
        return 2 if is_user_error(error) else 1
    finally:
        if argv is None:  # the console script: the process ends next
            ending_process()


def ending_process() -> None:
    """Let the interpreter's exit skip collecting the objects the command leaves alive (``gc.freeze``): with
    Prefect, pandas and pyarrow loaded that collection cost ~0.45 s of CPU of the ~0.55 s exit
    (benchmarks/startup.py). Files are still closed and flushed as their objects go; only unreachable cycles
    stay uncollected, which Python never promises to finalise at exit anyway. Not for a caller that goes on
    (a test, a notebook: ``main(argv)``)."""
    import gc

    gc.freeze()
