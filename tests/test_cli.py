"""The command line: one-line database errors, prune's ages, help without settings, the
generated CLI reference, the metrics token from the environment and the release lock.

The commands run as real subprocesses (``python -m django offload ...``) against real
databases: an empty SQLite file or PostgreSQL database, one that does not exist, a
PostgreSQL port nothing listens on.
"""

import argparse
import fcntl
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from offload.clock import now
from offload.commands.release import MigrationLock
from offload.models import TaskRow
from tests.conftest import ROOT, free_port, wait_until, worker_env
from tests.testapp import tasks

POSTGRES = os.environ.get("OFFLOAD_TEST_DB") == "postgres"
COMMANDS = ["worker", "pause", "resume", "queues", "prune", "run", "servers", "retire",
            "release", "health", "status", "cancel"]


def offload(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "django", "offload", *args],
                          env=worker_env(**(env or {})), capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def one_line(proc):
    """The command failed with exactly one line on stderr, and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def _pg_admin(sql):
    import psycopg

    s = connections["default"].settings_dict
    with psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"],
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def empty_database(tmp_path):
    """A database that exists and holds no table (what a new project has before migrate)."""
    if not POSTGRES:
        path = tmp_path / "empty.sqlite3"
        path.touch()
        yield str(path)
        return
    name = f"offload_empty{os.environ.get('OFFLOAD_TEST_DB_SUFFIX', '')}_{os.getpid()}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}"')
    _pg_admin(f'CREATE DATABASE "{name}"')
    yield name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def missing_database(tmp_path):
    """A database name that does not exist: no such PostgreSQL database or SQLite file."""
    return str(tmp_path / "missing.sqlite3") if not POSTGRES else "offload_no_such_database_h1"


# -- item 5: one line that names the problem and the fix -----------------------------------

@pytest.mark.parametrize("command", [["status"], ["queues"], ["health"], ["servers"],
                                     ["prune", "--older-than", "7d"], ["pause", "default"]])
def test_commands_before_migrate_say_so_in_one_line(empty_database, command):
    proc = offload(*command, env={"OFFLOAD_DB_NAME": empty_database,
                                  "OFFLOAD_TASKS_DB_NAME": empty_database})
    line = one_line(proc)
    assert line.startswith("CommandError: database 'default'") and "unapplied Offload migration" in line
    assert "run 'python manage.py migrate'" in line


@pytest.mark.parametrize("command", [["health"], ["status"], ["release"]])
def test_commands_on_a_database_that_does_not_answer(tmp_path, command):
    if POSTGRES:
        port = free_port()
        env = {"OFFLOAD_TEST_PG_URL": f"postgres://postgres@127.0.0.1:{port}/offload"}
        expected = f"is PostgreSQL running on 127.0.0.1:{port}? Check DATABASES['default']['HOST']"
    else:  # the nearest thing: a file in a folder that does not exist
        path = tmp_path / "no-folder" / "db.sqlite3"
        env = {"OFFLOAD_DB_NAME": path, "OFFLOAD_TASKS_DB_NAME": path}
        expected = (f"{path} does not exist" if command != ["release"]
                    else "does its folder exist and may this user write it?")
    line = one_line(offload(*command, env=env))
    assert expected in line and "DATABASES['default']" in line


def test_commands_on_a_database_that_does_not_exist(missing_database):
    proc = offload("status", env={"OFFLOAD_DB_NAME": missing_database})
    line = one_line(proc)
    if POSTGRES:
        assert f"has no database {missing_database!r}: create it (createdb {missing_database})" in line
    else:
        assert f"the SQLite file {missing_database} does not exist" in line
        assert not Path(missing_database).exists()  # the check did not create it


def test_the_worker_on_a_database_that_does_not_exist(missing_database):
    proc = offload("worker", "--burst", "--processes", "1",
                   env={"OFFLOAD_DB_NAME": missing_database})
    line = one_line(proc)
    assert proc.returncode == 1 and "cannot start: database 'default'" in line
    assert ("createdb" if POSTGRES else "python manage.py migrate") in line


@pytest.mark.process
def test_the_web_role_that_cannot_register_exits_with_one_error_line(empty_database):
    """gunicorn's when_ready hook: a traceback of some 80 lines, now one ERROR line."""
    proc = offload("run", env={"OFFLOAD_ROLE": "web", "OFFLOAD_DB_NAME": empty_database,
                               "OFFLOAD_WEB_BIND": f"127.0.0.1:{free_port()}",
                               "WEB_CONCURRENCY": 1})
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1, proc.stderr
    assert "offload: the web server cannot start: database 'default'" in errors[0]
    assert "run 'python manage.py migrate'" in errors[0]


# -- item 6: prune needs a unit -------------------------------------------------------------

@pytest.mark.django_db
def test_prune_refuses_a_bare_number_and_shows_the_forms(missing_database):
    with pytest.raises(CommandError) as raised:
        call_command("offload", "prune", "--older-than", "7")
    message = str(raised.value)
    assert message.startswith("--older-than 7 has no unit")
    assert all(form in message for form in ("7d", "12h", "30m", "90s"))
    # the flag is checked first: the same line without a database
    proc = offload("prune", "--older-than", "7", env={"OFFLOAD_DB_NAME": missing_database})
    assert one_line(proc) == f"CommandError: {message}"


@pytest.mark.django_db
def test_prune_older_than_7d_deletes_only_tasks_finished_more_than_7_days_ago():
    from io import StringIO

    ids = {name: int(tasks.noop.enqueue().id) for name in ("8 days", "6 days", "queued")}
    for name, days in (("8 days", 8), ("6 days", 6)):
        TaskRow.objects.filter(pk=ids[name]).update(status="SUCCESSFUL",
                                                    finished_at=now() - timedelta(days=days))
    TaskRow.objects.filter(pk=ids["queued"]).update(enqueued_at=now() - timedelta(days=30))
    out = StringIO()
    call_command("offload", "prune", "--older-than", "7d", stdout=out)
    assert set(TaskRow.objects.values_list("pk", flat=True)) == {ids["6 days"], ids["queued"]}
    assert out.getvalue().startswith("Deleted 1 finished task(s) older than 7d (finished before ")


# -- item 7: help -------------------------------------------------------------------------

def _console(*args):
    """The console script ``offload`` (``offload.cli:main``) without any settings."""
    env = {k: v for k, v in worker_env().items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run([sys.executable, "-c", "import sys; from offload.cli import main; "
                           "raise SystemExit(main(sys.argv[1:]))", *args],
                          env=env, capture_output=True, text=True, cwd=ROOT)


def test_help_needs_no_settings_and_lists_every_command():
    for args in (["--help"], []):
        proc = _console(*args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: offload [-h]") and "offload offload" not in proc.stdout
        listed = proc.stdout.split("commands:", 1)[1]
        assert all(f"\n    {name} " in listed for name in COMMANDS), listed
    proc = _console("worker", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: offload worker [-h]")


def test_usage_names_the_program_that_ran_it():
    proc = offload("prune", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m django offload prune")
    proc = subprocess.run([sys.executable, "manage.py", "offload", "status", "--help"],
                          env=worker_env(DJANGO_SETTINGS_MODULE="backoffice.settings",
                                         PYTHONPATH=f"{ROOT}:{ROOT / 'backoffice'}"),
                          capture_output=True, text=True, cwd=ROOT / "backoffice")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: manage.py offload status"), proc.stderr


def test_every_command_and_flag_has_help():
    from offload.cli import parser

    top = parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(commands.choices) == sorted(COMMANDS)
    for name, sub in commands.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if action.help is not argparse.SUPPRESS:  # SUPPRESS: Django's options again
                assert action.help and action.help.strip(), f"offload {name} {action.dest}"


def test_every_command_dispatches_to_its_module():
    from offload.management.commands.offload import HANDLERS

    assert sorted(HANDLERS) == sorted(COMMANDS)
    assert all(f.__module__.startswith("offload.commands.") for f in HANDLERS.values())


def test_django_options_may_follow_the_command():
    proc = offload("status", "--settings", "tests.settings", "--skip-checks")
    assert proc.returncode == 0, proc.stderr


def test_the_cli_reference_is_current():
    from offload import clidoc

    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == clidoc.render(), (
        f"docs/cli.md is not what the parser says: run '{clidoc.COMMAND}' and commit it")


# -- item 8: the metrics token ------------------------------------------------------------

@pytest.mark.django_db(databases=["default", "tasks"])  # the metrics read every backend
def test_metrics_token_from_the_environment_wins_over_the_setting(client, monkeypatch):
    def status(token):
        return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code

    assert status("scrape-me") == 200  # the setting, with no environment variable
    monkeypatch.setenv("OFFLOAD_METRICS_TOKEN", "from-the-environment")
    assert status("from-the-environment") == 200
    assert status("scrape-me") == 403  # the environment wins
    monkeypatch.setenv("OFFLOAD_METRICS_TOKEN", "")
    assert status("scrape-me") == 200  # empty is unset


@pytest.mark.django_db(databases=["default", "tasks"])
def test_metrics_token_from_the_environment_alone(client, monkeypatch, settings):
    del settings.OFFLOAD_METRICS_TOKEN
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 403
    monkeypatch.setenv("OFFLOAD_METRICS_TOKEN", "only-here")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer only-here").status_code == 200


# -- item 12 (part): the release step waits only for a lock that is held ----------------------

class _held:
    """The migration lock, held by this test process (as another release step would)."""

    def __enter__(self):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [MigrationLock.KEY])
        else:
            self.file = open(f"{connection.settings_dict['NAME']}.release-lock", "w")
            fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MigrationLock.KEY])
        else:
            self.file.close()


@pytest.mark.django_db(transaction=True)
def test_a_lone_release_step_does_not_wait(tmp_path):
    proc = offload("release")
    assert proc.returncode == 0, proc.stderr
    assert "waiting" not in proc.stdout and "every migration is applied" in proc.stdout


@pytest.mark.django_db(transaction=True)
def test_a_release_step_behind_a_held_lock_says_it_waits(tmp_path):
    log = tmp_path / "release.log"
    with open(log, "w") as out, _held():
        proc = subprocess.Popen([sys.executable, "-m", "django", "offload", "release"],
                                env=worker_env(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_until(lambda: "waiting for the migration lock" in log.read_text(),
                       message="the release step waiting")
            assert proc.poll() is None  # blocked behind the lock this test holds
        except BaseException:
            proc.kill()
            raise
    assert proc.wait(60) == 0, log.read_text()
    assert "every migration is applied" in log.read_text()
