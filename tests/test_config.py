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

from offload.checks import check_backends
from offload.conf import Options, parse_duration
from offload.scheduling.backoff import retry_delay
from tests.conftest import ROOT, worker_env


def test_durations():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("250ms") == 0.25
    assert parse_duration(30) == 30.0
    assert parse_duration(timedelta(minutes=2)) == 120
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


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
    assert check_backends() == []


def test_check_names_a_missing_database():
    tasks = {"default": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"DATABASE": "nope"}}}
    with override_settings(TASKS=tasks):
        [error] = check_backends()
    assert error.id == "offload.E001" and "nope" in error.msg and "default" in error.hint


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_check_warns_about_in_memory_sqlite():
    dbs = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    tasks = {"default": {"BACKEND": "offload.backend.OffloadBackend"}}
    with override_settings(DATABASES=dbs, TASKS=tasks):
        [warning] = check_backends()
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


def test_console_script_needs_settings():
    env = {k: v for k, v in worker_env().items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run([sys.executable, "-c", "from offload.cli import main; raise SystemExit(main(['prune', '--older-than', '1d']))"],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "DJANGO_SETTINGS_MODULE" in proc.stderr


@pytest.mark.django_db(transaction=True)
def test_console_script_runs_commands():
    proc = subprocess.run([sys.executable, "-c", "from offload.cli import main; raise SystemExit(main(['prune', '--older-than', '1d']))"],
                          env=worker_env(), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Deleted 0" in proc.stdout


def test_check_names_a_periodic_task_that_does_not_import():
    tasks = {"default": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"PERIODIC": {
        "nightly": {"task": "tests.testapp.tasks.nope", "cron": "0 2 * * *"}}}}}
    with override_settings(TASKS=tasks):
        [error] = check_backends()
    assert error.id == "offload.E004" and "nightly" in error.msg


def test_bad_periodic_settings_fail_at_start_up():
    with pytest.raises(ImproperlyConfigured, match="cron expression"):
        Options.from_params("default", {"PERIODIC": {"x": {"task": "a.b", "cron": "soon"}}})
    with pytest.raises(ImproperlyConfigured, match="QUEUE_LIMITS"):
        Options.from_params("default", {"QUEUE_LIMITS": {"crm": 0}})
