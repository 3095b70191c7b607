"""Named queries: every statement a store runs is a file, loaded once by its name.

``query(engine, name)`` is the text of ``sql/<engine>/<name>.sql``, or of
``sql/common/<name>.sql`` when both engines share it, with comments removed and
includes done; it is cached, so each query is read and assembled once per process.
Example::

    query("sqlite", "heartbeat")
    # "UPDATE offload_task SET lease_expires_at = %(lease_until)s WHERE claimed_by = ...
    #  AND id IN (SELECT value FROM json_each(%(ids)s))"

**One placeholder style**, pyformat ``%(name)s``, in every file and on both engines:
psycopg takes it natively (also through its own cursor, for prepared statements) and
Django's SQLite cursor turns it into sqlite3's ``:name``. ``native("sqlite", name)``
converts once to sqlite3's positional ``?`` (with the names in order), for the upsert
the worker runs on the sqlite3 connection itself for every batch. Positional ``%s`` and
``?`` in a file are refused at load.

**Nothing that varies per call is SQL text.** A list is one parameter: a PostgreSQL
array (``id = ANY(%(ids)s)``) or, on SQLite, a JSON array (``id IN (SELECT value FROM
json_each(%(ids)s))``), which the store makes with ``SqlStore.array``; a batch of rows
is arrays ``unnest``-ed together (PostgreSQL) or a JSON array of arrays read with
``json_each`` (SQLite).

**Includes** are the only text assembly, static and done once at load: ``{name}`` in a
file is replaced by the fragment file ``name`` (same lookup, itself loaded the same
way) or by a column list of offload_series generated from ``offload.stats`` at import
(``GENERATED``). A name that is neither is an error at load. Shared predicates live in
one fragment each (``claimable``: the queue is not paused and the claimer's server
still runs; ``in_queues``, ``in_ids``).
"""

import re
from functools import cache
from pathlib import Path

from offload.stats import stat_columns

SQL_DIR = Path(__file__).parent / "sql"
ENGINES = ("postgres", "sqlite")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_INCLUDE = re.compile(r"\{(\w+)\}")
_OTHER_STYLES = re.compile(r"(?<!%)%s|\?")


def _generated():
    """offload_series's column lists, which depend only on the histogram buckets."""
    columns = stat_columns()
    return {
        "stat_columns": ", ".join(columns),
        "stat_sums": ", ".join(f"sum({c})" for c in columns),
        "stat_adds": ", ".join(f"{c} = offload_series.{c} + excluded.{c}" for c in columns),
        # sqlite/record.sql: one series' values, as parameters named like the columns
        "stat_params": ", ".join(f"%({c})s" for c in columns),
    }


#: Generated includes (``{stat_columns}`` ...), made once at import.
GENERATED = _generated()


def path(engine, name):
    """The file of query ``name``: the engine's own, else the shared one."""
    own = SQL_DIR / engine / f"{name}.sql"
    return own if own.exists() else SQL_DIR / "common" / f"{name}.sql"


@cache
def query(engine, name):
    """The text of query ``name`` for ``engine``, includes done (see the module doc)."""
    file = path(engine, name)
    if not file.exists():
        raise LookupError(f"no query {name!r} for {engine} (looked for {file.name} in "
                          f"sql/{engine}/ and sql/common/)")
    text = "\n".join(line for line in file.read_text().splitlines()
                     if not line.lstrip().startswith("--"))
    if _OTHER_STYLES.search(text):
        raise ValueError(f"{file}: use %(name)s placeholders only (no %s or ?)")
    return _INCLUDE.sub(lambda m: GENERATED.get(m[1]) or query(engine, m[1]).strip(), text)


@cache
def native(engine, name):
    """``(text, names)``: query ``name`` in sqlite3's own qmark style, with the parameter
    names in placeholder order, for a statement run on the sqlite3 connection itself
    with a tuple of values per row (``executemany``), the cheapest form it takes."""
    if engine != "sqlite":
        raise ValueError("native() is for the sqlite3 connection; psycopg takes %(name)s")
    text = query(engine, name)
    return PLACEHOLDER.sub("?", text).replace("%%", "%"), tuple(PLACEHOLDER.findall(text))
