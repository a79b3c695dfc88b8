"""Read-only SQL over the result tables: one DuckDB view per table of ``storage.results``, nothing written.

``connect(results)`` opens an in-memory DuckDB whose views ``runs``, ``trials``, ``metrics`` and
``predictions`` read the hive-partitioned Parquet parts in place (``run`` and ``protocol`` come from
the folder names). ``query(results, sql)`` runs one user statement and refuses anything but a read.

Two guards keep it read-only: the statement type (SELECT, or EXPLAIN of a SELECT: EXPLAIN ANALYZE
runs its statement), and DuckDB's own sandbox, which limits file access to the results folder and
locks the configuration so a statement cannot lift it.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from merflow.storage import results as result_tables

# The exact layout write_part produces. DuckDB's glob, unlike Arrow's dataset discovery, does not skip
# names starting with '.', so '**/*.parquet' would read the '.part-*.parquet' files being written.
PART_GLOB = "run=*/protocol=*/part-*.parquet"

READ_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def results_folder(results: Path) -> Path:
    """The results folder, resolved; a clear ValueError when it does not exist."""
    folder = Path(results).expanduser()
    if not folder.is_dir():
        raise ValueError(f"no results folder at {folder} (write one with `merflow train --out {folder}`)")
    return folder.resolve()


def connect(results: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per result table; a table without parts is an empty view
    with the table's columns, so every query can name every table."""
    folder = results_folder(results)
    con = duckdb.connect(":memory:")
    # allowed_directories must be set before external access is disabled; the lock keeps a later SET out.
    con.execute(f"SET allowed_directories = [{_sql_string(str(folder) + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    for table in result_tables.TABLES:
        root = folder / table
        if not any(root.glob(PART_GLOB)):
            con.register(table, result_tables.SCHEMAS[table].empty_table())
            continue
        # Partition values are names, never numbers or dates: a run called "20240101" stays a string.
        con.execute(
            f"CREATE VIEW {table} AS SELECT run, protocol, * EXCLUDE (run, protocol) FROM read_parquet("
            f"{_sql_string(str(root / PART_GLOB))}, hive_partitioning = true, union_by_name = true, "
            "hive_types = {'run': 'VARCHAR', 'protocol': 'VARCHAR'})")
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


def query(results: Path, sql: str) -> pd.DataFrame:
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


def table(results: Path, name: str, run: str | None = None) -> pd.DataFrame:
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
