"""One line that says what is wrong with a database and how to fix it.

Used where a person reads the answer: ``manage.py offload`` (every subcommand), the
async server's start (``offload worker``, ``offload run``) and the web role's start
(``offload.gunicorn_conf``). ``/readyz`` says less on purpose (``offload.health``).
The problems told apart: the database does not answer (PostgreSQL not running, wrong
host or port), it does not exist, the login is refused, the SQLite file cannot be
opened or does not exist, and migrations are not applied. Example::

    message = problem("default")   # None: it answers and Offload's migrations are applied
    # "database 'default' (PostgreSQL 'shop' on 127.0.0.1:5433) does not answer (Connection
    #  refused): is PostgreSQL running on 127.0.0.1:5433? Check DATABASES['default']['HOST']
    #  and ['PORT']."
"""

import re
from pathlib import Path

from django.db import Error, connections

#: ``migrations=`` values: only Offload's own migrations (what the commands need), every
#: app's (what a server running the project's tasks needs), or none (connect only).
OFFLOAD, ALL = "offload", "all"


def where(alias):
    """``SQLite file /srv/app/db.sqlite3`` or ``PostgreSQL 'shop' on db:5432``."""
    connection = connections[alias]
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"SQLite file {s['NAME']}"
    name = "PostgreSQL" if connection.vendor == "postgresql" else connection.display_name
    return f"{name} {s['NAME']!r} on {_address(alias)}"


def _address(alias):
    s = connections[alias].settings_dict
    host = s.get("HOST") or "localhost"
    port = s.get("PORT") or (5432 if connections[alias].vendor == "postgresql" else "")
    return f"{host}:{port}" if port else host


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _sqlite_file(alias):
    """The file of an SQLite database, or None (in memory, or a ``file:`` URI)."""
    name = str(connections[alias].settings_dict["NAME"] or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def describe(alias, exc):
    """One line for ``exc``, an error raised while connecting to ``alias``."""
    text, at = _first_line(exc), where(alias)
    fix = f"DATABASES[{alias!r}]"
    if connections[alias].vendor == "sqlite":
        if "unable to open" in text:
            return (f"database {alias!r}: cannot open the {at} ({text}): does its folder exist "
                    f"and may this user write it? Check {fix}['NAME'].")
        return f"database {alias!r} ({at}) cannot be used: {text}. Check {fix}['NAME']."
    if (missing := re.search(r'database "([^"]+)" does not exist', text)):
        return (f"database {alias!r}: PostgreSQL on {_address(alias)} has no database "
                f"{missing[1]!r}: create it (createdb {missing[1]}) or fix {fix}['NAME'].")
    if re.search(r'role "[^"]+" does not exist|authentication failed|pg_hba\.conf', text):
        detail = text.rsplit("FATAL:", 1)[-1].strip()
        return (f"database {alias!r} ({at}) refused the login ({detail}): check {fix}['USER'] "
                f"and ['PASSWORD'].")
    detail = text.rsplit("failed: ", 1)[-1].strip()
    address = _address(alias)
    return (f"database {alias!r} ({at}) does not answer ({detail}): is PostgreSQL running on "
            f"{address}? Check {fix}['HOST'] and ['PORT'].")


def _pending(alias, scope):
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    targets = [node for node in executor.loader.graph.leaf_nodes()
               if scope == ALL or node[0] == "offload"]
    return executor.migration_plan(targets)


def migrate_fix(alias):
    """How to apply the migrations of ``alias`` (the release step migrates "default")."""
    if alias == "default":
        return "run 'python manage.py migrate' (a deploy's release step: 'manage.py offload release')"
    return f"run 'python manage.py migrate --database {alias}'"


def _close(connection):
    if not connection.in_atomic_block:  # a caller's transaction (call_command in a test) stays
        connection.close()


def problem(alias, *, migrations=OFFLOAD):
    """None if ``alias`` answers (and its ``migrations`` are applied), else one line
    naming the problem and the fix. Never raises a database error."""
    connection = connections[alias]
    which = "Offload " if migrations == OFFLOAD else ""
    if migrations and connection.vendor == "sqlite":
        file = _sqlite_file(alias)
        if file is not None and not file.exists():  # connecting would create an empty one
            return (f"database {alias!r}: the SQLite file {file} does not exist: fix "
                    f"DATABASES[{alias!r}]['NAME'], or create it: {migrate_fix(alias)}.")
    _close(connection)  # a connection broken by the error being explained is not reused
    try:
        connection.ensure_connection()
    except Error as exc:
        _close(connection)
        return describe(alias, exc)
    if not migrations:
        return None
    try:
        plan = _pending(alias, migrations)
    except Error as exc:
        _close(connection)
        return f"database {alias!r} ({where(alias)}): cannot read its migrations: {_first_line(exc)}."
    if plan:
        first = plan[0][0]
        return (f"database {alias!r} ({where(alias)}) has {len(plan)} unapplied {which}migration(s), "
                f"the first {first.app_label}.{first.name}: {migrate_fix(alias)}.")
    return None


def explain(alias, exc, *, migrations=OFFLOAD):
    """One line for a database error ``exc`` met while using ``alias``: what a fresh
    look at the database finds, or the error's first line if it finds nothing wrong."""
    return problem(alias, migrations=migrations) or f"database {alias!r} ({where(alias)}): {_first_line(exc)}"
