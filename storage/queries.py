"""Read-only SQL over the result tables: one DuckDB table per table of ``storage.results``, nothing written.

``connect(results)`` opens an in-memory DuckDB with one table per result table ``runs``, ``trials``,
``metrics``, ``predictions`` (and the floor's ``floor_metrics``, ``floor_predictions``: empty for results
written before the floor): the Arrow tables of ``storage.results.read_arrow``, the one reader, which checks
each part's schema version and upgrades older parts (``run`` and ``protocol`` come from the folder names,
first). ``query(results, sql)`` runs one user statement, reading only the tables it names (the others
are there, empty: ``SHOW TABLES`` lists every one), and refuses anything but a read. A part that cannot
be read is left out and named in ``skipped`` where the caller gives a list (``merflow results`` prints
them), so one broken part does not block the other runs' queries; without a list it is an error.

Two guards keep it read-only: the statement type (SELECT, or EXPLAIN of a SELECT: EXPLAIN ANALYZE
runs its statement), and DuckDB's own sandbox: external access disabled with no directory allowed at
all (a statement reads nothing but the registered tables) and the configuration locked so a statement
cannot lift it. Local folders and object stores (``s3://...``, read through fsspec and pyarrow, not
DuckDB's httpfs extension, which DuckDB downloads at run time) alike. The tables are read whole into
memory (result tables are small; the figures are in benchmarks/README.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pandas as pd

from merflow.storage import locations
from merflow.storage import results as result_tables

READ_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


def results_folder(results: str | os.PathLike) -> str:
    """The results folder (a local one resolved); a clear ValueError when it does not exist."""
    if locations.is_remote(results):
        folder = locations.normalise(results)
        if not locations.isdir(folder):
            raise ValueError(f"no results at {folder} (write them with `merflow train --out {folder}`)")
        return folder
    folder = Path(results).expanduser()
    if not folder.is_dir():
        raise ValueError(f"no results folder at {folder} (write one with `merflow train --out {folder}`)")
    return str(folder.resolve())


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    # allowed_directories (none) must be set before external access is disabled; the lock keeps a later SET out.
    con.execute("SET allowed_directories = []")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(results: str | os.PathLike, tables: tuple[str, ...] = result_tables.TABLES,
            run: str | None = None, skipped: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every result table: those of ``tables`` (every one by default) hold their rows
    (only ``run``'s if given), the others and a table without parts are empty with the table's columns, so
    every query can name every table. Unreadable parts: ``storage.results.read_arrow``'s ``skipped``."""
    unknown = sorted(set(tables) - set(result_tables.TABLES))
    if unknown:
        raise ValueError(f"unknown result table {unknown[0]!r}; the tables are {', '.join(result_tables.TABLES)}")
    folder = results_folder(results)
    con = duckdb.connect(":memory:")
    _lock_down(con)
    for table in result_tables.TABLES:
        arrow = result_tables.read_arrow(folder, table, run, skipped) if table in tables else None
        if arrow is None or arrow.num_rows == 0:
            con.register(table, result_tables.SCHEMAS[table].empty_table())
            continue
        # Partition columns first.
        names = list(result_tables.PARTITIONS) + [n for n in arrow.schema.names if n not in result_tables.PARTITIONS]
        con.register(table, arrow.select(names))
    return con


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise ValueError unless ``sql`` is exactly one SELECT, or an EXPLAIN of one."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as error:
        raise ValueError(f"the query does not parse: {error}") from error
    if len(statements) != 1:
        raise ValueError(f"give exactly one statement, got {len(statements)}")
    statement = statements[0]
    if statement.type not in READ_STATEMENTS:
        raise ValueError(f"only reads are allowed (SELECT or EXPLAIN), not {statement.type.name}")
    if statement.type == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE executes what it explains, so the explained statement must be a read too. A prefix
        # the pattern does not strip (a comment first, say) leaves an EXPLAIN, which is refused: safe either way.
        explained = con.extract_statements(_EXPLAIN_PREFIX.sub("", sql, count=1))
        if len(explained) != 1 or explained[0].type != duckdb.StatementType.SELECT:
            kind = explained[0].type.name if len(explained) == 1 else f"{len(explained)} statements"
            raise ValueError(f"only reads are allowed: EXPLAIN may explain a SELECT, not {kind}")


def named_tables(sql: str) -> tuple[str, ...]:
    """The result tables whose names appear in ``sql`` as words (a statement reads no table it does not name)."""
    return tuple(name for name in result_tables.TABLES if re.search(rf"\b{name}\b", sql, re.IGNORECASE))


def query(results: str | os.PathLike, sql: str, skipped: list[str] | None = None) -> pd.DataFrame:
    """The result of one read-only statement over the result tables (only those it names are read)."""
    with duckdb.connect(":memory:") as parser:  # refused before any table is read
        check_read_only(parser, sql)
    con = connect(results, named_tables(sql), skipped=skipped)
    try:
        try:
            return con.execute(sql).df()
        except duckdb.Error as error:  # a typo or a file outside the results folder: the user's to fix
            raise ValueError(f"the query failed: {error}") from error
    finally:
        con.close()


def table(results: str | os.PathLike, name: str, run: str | None = None,
          skipped: list[str] | None = None) -> pd.DataFrame:
    """A whole result table, or one run's rows, through DuckDB as ``query`` reads it (partition columns first)."""
    con = connect(results, (name,), run, skipped)  # only the run's parts are read
    try:
        return con.execute(f"SELECT * FROM {name}").df()
    finally:
        con.close()
