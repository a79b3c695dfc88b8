"""Reading the result tables: storage.results.read_table and storage.queries (query, table), which read every
part through the one reader (schema versions checked, older parts upgraded), on a results folder and on
``--copies`` copies of its runs side by side (a folder of many searches).

    .venv/bin/python benchmarks/results.py --results RESULTS [--copies 10] [--repeat 5]

RESULTS: any results folder, e.g. the one `merflow demo` writes (its search: 53 predictions parts).
Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from merflow.storage import queries
from merflow.storage import results as result_tables


def best_ms(read, folder: Path, repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``read(folder)`` (after one warm-up), in milliseconds."""
    read(folder)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read(folder)
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def copied(results: Path, copies: int, into: Path) -> Path:
    """``results``' tables with each run copied ``copies`` times under new run ids (``<run>-<i>``)."""
    for table in result_tables.TABLES:
        for run in sorted((results / table).glob("run=*")):
            for index in range(copies):
                shutil.copytree(run, into / table / f"{run.name}-{index}")
    return into


def main() -> None:
    """Print each read's best time on the folder, and on its copies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reads = {
        "query: count(*) FROM metrics": lambda f: queries.query(f, "SELECT count(*) FROM metrics"),
        "query: count(*) FROM predictions": lambda f: queries.query(f, "SELECT count(*) FROM predictions"),
        "queries.table metrics": lambda f: queries.table(f, "metrics"),
        "queries.table predictions": lambda f: queries.table(f, "predictions"),
        "results.read_table predictions": lambda f: result_tables.read_table(f, "predictions"),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folders = {"as is": args.results, f"{args.copies} copies": copied(args.results, args.copies, Path(scratch))}
        for label, folder in folders.items():
            parts = len(list(Path(folder).glob("*/run=*/protocol=*/part-*.parquet")))
            print(f"{label} ({parts} parts):")
            for name, read in reads.items():
                print(f"  {name}: {best_ms(read, folder, args.repeat):.0f} ms")


if __name__ == "__main__":
    main()
