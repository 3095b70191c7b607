"""Settings validation, system checks, migrations and the command-line entry points."""

import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from offload.conf import Options, parse_duration
from offload.scheduling.backoff import retry_delay
from tests.conftest import ROOT, offload_checks, worker_env


def test_durations():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("250ms") == 0.25
    assert parse_duration(30) == 30.0
    assert parse_duration(timedelta(minutes=2)) == 120
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_listen_is_true_false_or_a_database_alias():
    assert Options.from_params("default", {}).LISTEN is True
    assert Options.from_params("default", {"LISTEN": False}).LISTEN is False
    assert Options.from_params("default", {"LISTEN": "tasks"}).LISTEN == "tasks"
    with pytest.raises(ImproperlyConfigured, match=r"\['LISTEN'\]='task' is not a DATABASES alias\. "
                                                   r"Did you mean 'tasks'\?"):
        Options.from_params("default", {"LISTEN": "task"})
    with pytest.raises(ImproperlyConfigured, match=r"\['LISTEN'\]=1: use True, False, or the DATABASES"):
        Options.from_params("default", {"LISTEN": 1})


def test_options_reject_unknown_keys_with_a_suggestion():
    with pytest.raises(ImproperlyConfigured, match="Did you mean 'LEASE_SECONDS'"):
        Options.from_params("default", {"LEASE_SECOND": 10})
    with pytest.raises(ImproperlyConfigured, match="at least 1 second"):
        Options.from_params("default", {"LEASE_SECONDS": 0.5})
    assert Options.from_params("default", {"RETAIN": "7d"}).RETAIN == 604800


def test_backoff_is_exponential_capped_and_jittered():
    assert [retry_delay(attempt=a, base=1, cap=10, jitter=False) for a in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert retry_delay(attempt=3, base=1, cap=10, jitter=True, rand=lambda: 0.0) == 2
    assert retry_delay(attempt=3, base=1, cap=10, jitter=True, rand=lambda: 1.0) == 4


def test_checks_pass_for_the_test_settings():
    assert offload_checks() == []


def test_check_names_a_missing_database():
    tasks = {"default": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"DATABASE": "nope"}}}
    with override_settings(TASKS=tasks):
        [error] = offload_checks("offload.E001")
    assert error.id == "offload.E001" and "nope" in error.msg and "default" in error.hint


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_check_warns_about_in_memory_sqlite():
    dbs = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    tasks = {"default": {"BACKEND": "offload.backend.OffloadBackend"}}
    with override_settings(DATABASES=dbs, TASKS=tasks):
        [warning] = offload_checks("offload.W001")
    assert warning.id == "offload.W001"


@pytest.mark.django_db(databases="__all__")
def test_migrations_are_complete():
    call_command("makemigrations", "offload", "--check", "--dry-run", stdout=StringIO())


@pytest.mark.django_db
def test_prune_command():
    out = StringIO()
    call_command("offload", "prune", "--older-than", "7d", stdout=out)
    assert "Deleted 0 finished task(s)" in out.getvalue()
    with pytest.raises(CommandError, match="not a duration"):
        call_command("offload", "prune", "--older-than", "a while")


def test_worker_refuses_a_backend_that_is_not_offload():
    with pytest.raises(CommandError, match="OffloadBackend"):
        call_command("offload", "worker", "--backend", "immediate")


PRUNE_BY_CONSOLE_SCRIPT = "from offload.cli import main; raise SystemExit(main(['prune', '--older-than', '1d']))"


def test_console_script_needs_settings():
    env = {k: v for k, v in worker_env().items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run([sys.executable, "-c", PRUNE_BY_CONSOLE_SCRIPT],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "DJANGO_SETTINGS_MODULE" in proc.stderr


@pytest.mark.django_db(transaction=True)
def test_console_script_runs_commands():
    proc = subprocess.run([sys.executable, "-c", PRUNE_BY_CONSOLE_SCRIPT],
                          env=worker_env(), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Deleted 0" in proc.stdout


def test_check_names_a_periodic_task_that_does_not_import():
    tasks = {"default": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"PERIODIC": {
        "nightly": {"task": "tests.testapp.tasks.nope", "cron": "0 2 * * *"}}}}}
    with override_settings(TASKS=tasks):
        [error] = offload_checks("offload.E004")
    assert error.id == "offload.E004" and "nightly" in error.msg


def test_bad_periodic_settings_fail_at_start_up():
    with pytest.raises(ImproperlyConfigured, match="cron expression"):
        Options.from_params("default", {"PERIODIC": {"x": {"task": "a.b", "cron": "soon"}}})
    with pytest.raises(ImproperlyConfigured, match="QUEUE_LIMITS"):
        Options.from_params("default", {"QUEUE_LIMITS": {"crm": 0}})


# -- misconfiguration a newcomer meets: each a system check with an id and the fix ----


NO_APP_SETTINGS = """
from tests.settings import *  # noqa: F401,F403
INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "offload"]
"""


def _manage(tmp_path, *args, settings_text=None, **env):
    """``python -m django ARGS`` in a subprocess, optionally with a settings module
    written into ``tmp_path``; returns the CompletedProcess."""
    extra = {}
    if settings_text is not None:
        (tmp_path / "case_settings.py").write_text(settings_text)
        extra = {"DJANGO_SETTINGS_MODULE": "case_settings", "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    return subprocess.run([sys.executable, "-m", "django", *args], env=worker_env(**extra, **env),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_check_fails_when_offload_is_not_installed(tmp_path):
    """Nothing of Offload is imported before the checks run: the backend's check (once
    django.tasks is imported) and the dashboard's URLs both say what to add."""
    done = _manage(tmp_path, "check", settings_text=NO_APP_SETTINGS)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if "offload.E003" in line]
    assert lines and all("INSTALLED_APPS" in line for line in lines), done.stderr
    assert 'Add "offload" to INSTALLED_APPS' in done.stderr and "Traceback" not in done.stderr


def test_the_backend_check_names_the_missing_app(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "offload"]
    [error] = offload_checks("offload.E003")
    assert "TASKS['default']" in error.msg and "INSTALLED_APPS" in error.hint


def test_enqueue_without_the_app_says_what_to_add(settings):
    from tests.testapp import tasks

    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "offload"]
    settings.TASKS = dict(settings.TASKS)  # new backend objects (none has its store yet)
    with pytest.raises(ImproperlyConfigured, match="'offload' is not in INSTALLED_APPS"):
        tasks.noop.using(backend="other").enqueue()


def test_typos_in_top_level_tasks_keys_are_check_errors(settings):
    settings.TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                                  "QUEUE": ["default"], "OPTION": {}}}
    errors = offload_checks("offload.E008")
    assert {e.msg for e in errors} == {
        "TASKS['default'] has an unknown key 'QUEUE'. Did you mean 'QUEUES'?",
        "TASKS['default'] has an unknown key 'OPTION'. Did you mean 'OPTIONS'?"}


def test_queues_given_as_a_string_is_a_check_error(settings):
    settings.TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend", "QUEUES": "emails"}}
    [error] = offload_checks("offload.E008")
    assert "'emails' is not a list of queue names" in error.msg


def test_bad_options_are_a_check_error_not_a_crash(settings):
    """The backend is built by the checks themselves: a bad OPTIONS used to raise out of
    every command with a traceback; now it is offload.E009, and using it raises."""
    from django.tasks import task_backends

    settings.TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                                  "OPTIONS": {"LEASE_SECOND": 10}}}
    [error] = offload_checks("offload.E009")
    assert "unknown key 'LEASE_SECOND'. Did you mean 'LEASE_SECONDS'?" in error.msg
    with pytest.raises(ImproperlyConfigured, match="LEASE_SECOND"):
        task_backends["default"].store  # noqa: B018


@pytest.mark.parametrize(("schedule", "words"), [
    ({"priority": 500}, "PERIODIC['nightly']: priority 500 is not a whole number from -100 to 100"),
    ({"priority": "high"}, "priority 'high' is not a whole number"),
    ({"queue_name": ""}, "queue_name '' is not a queue name"),
    ({"args": 42}, "args must be a list"),
    ({"kwargs": {1: 2}}, "kwargs must be a dict with str keys"),
    ({"cronn": "x"}, "unknown key 'cronn'. Did you mean 'cron'?"),
])
def test_bad_periodic_fields_are_check_errors(settings, schedule, words):
    settings.TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {
        "PERIODIC": {"nightly": {"task": "tests.testapp.tasks.periodic_tick",
                                 "cron": "0 2 * * *", **schedule}}}}}
    [error] = offload_checks("offload.E009")
    assert words in error.msg, error.msg


def test_a_mistyped_periodic_task_or_queue_gets_a_suggestion(settings):
    settings.TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                                  "QUEUES": ["default", "emails"], "OPTIONS": {"PERIODIC": {
        "nightly": {"task": "tests.testapp.tasks.periodic_tik", "cron": "0 2 * * *"},
        "hourly": {"task": "tests.testapp.tasks.periodic_tick", "cron": "0 * * * *",
                   "queue_name": "email"}}}}}
    [missing] = offload_checks("offload.E004")
    assert missing.msg == (
        "TASKS['default']['OPTIONS']['PERIODIC']['nightly']: task 'tests.testapp.tasks.periodic_tik' "
        "does not import (Module \"tests.testapp.tasks\" does not define a \"periodic_tik\" "
        "attribute/class). Did you mean 'tests.testapp.tasks.periodic_tick'?")
    [queue] = offload_checks("offload.E007")
    assert "'email'" in queue.msg and "Did you mean 'emails'?" in queue.msg


def test_profile_fields_are_validated_with_suggestions(settings):
    from offload.checks import check_roles

    for profile, words in (({"thread": 2}, "unknown key 'thread'. Did you mean 'threads'?"),
                           ({"queues": "reports"}, "['queues'] = 'reports': use a list"),
                           ({"queues": ["report"]}, "Did you mean 'reports'?"),
                           ({"grace": "soon"}, "not a duration")):
        settings.OFFLOAD_PROFILES = {"async-x": profile}
        [error] = check_roles()
        assert words in error.msg, error.msg


def test_the_worker_refuses_a_bad_periodic_priority_in_one_message(tmp_path):
    """It used to die with a 47-line traceback that did not name the schedule."""
    done = _manage(tmp_path, "offload", "worker", "--burst", settings_text="""
from tests.settings import *  # noqa: F401,F403
TASKS["periodic"]["OPTIONS"]["PERIODIC"]["tick"]["priority"] = 500
""")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "offload.E009" in done.stderr and "PERIODIC['tick']: priority 500" in done.stderr


def test_the_console_script_without_the_app_names_the_missing_line(tmp_path):
    """manage.py would say "Unknown command: 'offload'"; the console script says why."""
    (tmp_path / "case_settings.py").write_text(NO_APP_SETTINGS)
    done = subprocess.run([sys.executable, "-c", "from offload.cli import main; raise SystemExit(main(['status']))"],
                          env=worker_env(DJANGO_SETTINGS_MODULE="case_settings", PYTHONPATH=f"{tmp_path}:{ROOT}"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "'offload' is not in INSTALLED_APPS of case_settings" in done.stderr


def test_did_you_mean():
    from offload.suggest import did_you_mean

    assert did_you_mean("QUEUE", ["BACKEND", "QUEUES", "OPTIONS"]) == " Did you mean 'QUEUES'?"
    assert did_you_mean("LEASE", ["LEASE_SECONDS", "RETAIN"]) == " Did you mean 'LEASE_SECONDS'?"
    assert did_you_mean("zzz", ["LEASE_SECONDS", "RETAIN"]) == ""


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_sqlite_without_immediate_transactions_is_a_warning_with_the_options(settings):
    settings.DATABASES = {**settings.DATABASES, "default": {
        **settings.DATABASES["default"], "OPTIONS": {}}}
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("SQLite only")
    settings.TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend"}}
    [warning] = offload_checks("offload.W002")
    assert "database is locked" in warning.msg and '"transaction_mode": "IMMEDIATE"' in warning.hint


def test_the_histogram_buckets_are_the_ones_migration_0006_created():
    """The statistics' bucket columns are generated from STAT_BUCKETS in models.py but
    frozen in migrations 0006 (offload_stat) and 0015 (offload_series): changing the
    bounds would relabel counted rows. A new bound needs a migration that adds (and
    fills) its columns, and this test updated with it."""
    from importlib import import_module

    from offload.stats import bucket_columns

    for name in ("0006_stats", "0015_series"):  # offload_stat, offload_series
        migration = import_module(f"offload.migrations.{name}").Migration
        [create] = [op for op in migration.operations
                    if getattr(op, "name", "") == "TaskStat" and hasattr(op, "fields")]
        frozen = [field for field, _ in create.fields if "_le_" in field]
        assert frozen == [column for kind in ("wait", "run") for column, _ in bucket_columns(kind)]
