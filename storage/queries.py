"""Read-only SQL over the result tables: one DuckDB view per table of ``storage.results``, nothing written.

``connect(results)`` opens an in-memory DuckDB whose views ``runs``, ``trials``, ``metrics``,
``predictions`` (and the floor's ``floor_metrics``, ``floor_predictions``: empty for results written before
the floor) read the hive-partitioned Parquet parts in place (``run`` and ``protocol`` come from
the folder names). ``query(results, sql)`` runs one user statement and refuses anything but a read.

Two guards keep it read-only: the statement type (SELECT, or EXPLAIN of a SELECT: EXPLAIN ANALYZE
runs its statement), and DuckDB's own sandbox, which limits file access to the results folder and
locks the configuration so a statement cannot lift it.

Results on an object store (``s3://...``) are read through fsspec and pyarrow into Arrow tables that
are registered as the views, not through DuckDB's httpfs extension (which DuckDB downloads at run
time); external access is then disabled with no directory allowed at all, so a statement can read
nothing but those tables. The tables are read whole into memory (result tables are small).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pandas as pd

from merflow.storage import locations
from merflow.storage import results as result_tables

# The exact layout write_part produces. DuckDB's glob, unlike Arrow's dataset discovery, does not skip
# names starting with '.', so '**/*.parquet' would read the '.part-*.parquet' files being written.
PART_GLOB = "run=*/protocol=*/part-*.parquet"

READ_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


def _lock_down(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    # allowed_directories must be set before external access is disabled; the lock keeps a later SET out.
    con.execute(f"SET allowed_directories = [{', '.join(_sql_string(d) for d in allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(results: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per result table; a table without parts is an empty view
    with the table's columns, so every query can name every table."""
    folder = results_folder(results)
    con = duckdb.connect(":memory:")
    if locations.is_remote(folder):
        _lock_down(con, [])
        for table in result_tables.TABLES:
            arrow = result_tables.read_arrow(folder, table)
            if arrow is None or arrow.num_rows == 0:
                con.register(table, result_tables.SCHEMAS[table].empty_table())
                continue
            # Partition columns first, as the local views have them.
            names = list(result_tables.PARTITIONS) + [n for n in arrow.schema.names if n not in result_tables.PARTITIONS]
            con.register(table, arrow.select(names))
        return con
    _lock_down(con, [folder + "/"])
    for table in result_tables.TABLES:
        root = Path(folder) / table
        if not any(root.glob(PART_GLOB)):
            con.register(table, result_tables.SCHEMAS[table].empty_table())
            continue
        # Partition values are names, never numbers or dates: a run called "20240101" stays a string.
        source = (f"read_parquet({_sql_string(str(root / PART_GLOB))}, hive_partitioning = true, union_by_name = true, "
                  "hive_types = {'run': 'VARCHAR', 'protocol': 'VARCHAR'})")
        excluded, added = _method_columns(con, table, source)
        con.execute(f"CREATE VIEW {table} AS SELECT run, protocol, * EXCLUDE (run, protocol{excluded}){added} "
                    f"FROM {source}")
    return con


def _method_columns(con: duckdb.DuckDBPyConnection, table: str, source: str) -> tuple[str, str]:
    """Schema version 3's method and recipe columns over parts of any version: version-2 parts have
    neither (their rows are Meta-MMFNet's, storage/results.py DEFAULT_METHOD; their recipe is null)."""
    if "method" not in result_tables.SCHEMAS[table].names:
        return "", ""
    names = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    default = _sql_string(result_tables.DEFAULT_METHOD)
    excluded = ", method" if "method" in names else ""
    added = f", coalesce(method, {default}) AS method" if "method" in names else f", {default} AS method"
    if "recipe" not in names:
        added += ", CAST(NULL AS VARCHAR) AS recipe"
    return excluded, added


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


def query(results: str | os.PathLike, sql: str) -> pd.DataFrame:
    """The result of one read-only statement over the result tables' views."""
    con = connect(results)
    try:
        check_read_only(con, sql)
        try:
            return con.execute(sql).df()
        except duckdb.Error as error:  # a typo or a file outside the results folder: the user's to fix
            raise ValueError(f"the query failed: {error}") from error
    finally:
        con.close()


def table(results: str | os.PathLike, name: str, run: str | None = None) -> pd.DataFrame:
    """A whole result table, or one run's rows, through the views (partition columns first)."""
    if name not in result_tables.TABLES:
        raise ValueError(f"unknown result table {name!r}; the tables are {', '.join(result_tables.TABLES)}")
    con = connect(results)
    try:
        if run is None:
            return con.execute(f"SELECT * FROM {name}").df()
        return con.execute(f"SELECT * FROM {name} WHERE run = ?", [run]).df()
    finally:
        con.close()
