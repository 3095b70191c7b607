"""System checks for Offload backends: catch bad settings at start-up.

    offload.E001  a backend's DATABASE alias is not in DATABASES
    offload.E002  a backend's database is neither PostgreSQL nor SQLite
    offload.E003  'offload' is missing from INSTALLED_APPS
    offload.E004  a periodic schedule names a task that does not import
    offload.E005  OFFLOAD_ROLE / OFFLOAD_PROFILES is not a valid role set-up
    offload.E006  an async profile takes a queue its backend does not declare
    offload.E007  a periodic schedule enqueues into a queue its backend does not declare
    offload.W001  an SQLite task database is in memory (workers cannot share it)
"""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


def _offload_backends():
    from django.tasks import task_backends

    from offload.backend import OffloadBackend

    for alias in task_backends.settings:
        backend = task_backends[alias]
        if isinstance(backend, OffloadBackend):
            yield alias, backend


# Not tagged "database": Django skips such checks unless an alias is named, and these
# read only settings, so they run with every management command (and the worker's).
@register(Tags.compatibility)
def check_backends(app_configs=None, **kwargs):
    errors = []
    backends = list(_offload_backends())
    if backends and not apps.is_installed("offload"):
        errors.append(Error("'offload' is not in INSTALLED_APPS.",
                            hint="Add 'offload' to INSTALLED_APPS so its task table is created.",
                            id="offload.E003"))
    for alias, backend in backends:
        errors += _check_periodic(alias, backend)
        db = backend.opts.DATABASE
        if db not in settings.DATABASES:
            errors.append(Error(
                f"TASKS[{alias!r}] stores tasks in database {db!r}, which DATABASES does not define.",
                hint=f"Set TASKS[{alias!r}]['OPTIONS']['DATABASE'] to one of: {', '.join(settings.DATABASES)}.",
                id="offload.E001"))
            continue
        engine = settings.DATABASES[db]["ENGINE"]
        if not engine.endswith(("postgresql", "sqlite3")):
            errors.append(Error(
                f"TASKS[{alias!r}] stores tasks in {db!r} ({engine}); Offload supports PostgreSQL and SQLite.",
                hint="Point OPTIONS['DATABASE'] at a PostgreSQL or SQLite database alias.",
                id="offload.E002"))
        elif engine.endswith("sqlite3") and str(settings.DATABASES[db].get("NAME", "")) in ("", ":memory:"):
            errors.append(Warning(
                f"TASKS[{alias!r}] stores tasks in an in-memory SQLite database; worker processes cannot see it.",
                hint="Use an SQLite file (NAME = BASE_DIR / 'db.sqlite3') or PostgreSQL.",
                id="offload.W001"))
    return errors


def _check_periodic(alias, backend):
    from offload.results import import_task
    from offload.scheduling.periodic import parse_schedules

    errors = []
    for schedule in parse_schedules(backend.opts.PERIODIC):
        where = f"TASKS[{alias!r}]['OPTIONS']['PERIODIC'][{schedule.name!r}]"
        try:
            task = import_task(schedule.task)
        except ImportError as exc:
            errors.append(Error(
                f"{where}: {exc}",
                hint="Point 'task' at a function decorated with @task, as 'package.module.name'.",
                id="offload.E004"))
            continue
        queue = schedule.queue_name or task.queue_name
        if backend.queues and queue not in backend.queues:
            errors.append(Error(
                f"{where} enqueues into queue {queue!r}, which TASKS[{alias!r}]['QUEUES'] does "
                "not declare: every occurrence would fail.",
                hint=f"Declared queues: {', '.join(sorted(backend.queues))}; set the schedule's "
                     "'queue_name' to one of them or declare the queue.", id="offload.E007"))
    return errors


@register(Tags.compatibility)
def check_roles(app_configs=None, **kwargs):
    from django.tasks import task_backends

    from offload import roles

    try:
        roles.resolve()
        profiles = roles.profiles()
    except ValueError as exc:
        return [Error(str(exc), hint="Fix OFFLOAD_ROLE (environment or settings) or "
                      "OFFLOAD_PROFILES; a profile is an async server set-up.", id="offload.E005")]
    errors = []
    for profile in profiles.values():
        if profile.backend not in task_backends.settings:
            errors.append(Error(
                f"OFFLOAD_PROFILES[{profile.name!r}] uses backend {profile.backend!r}, which TASKS "
                "does not define.", hint=f"Use one of: {', '.join(task_backends.settings)}.",
                id="offload.E006"))
            continue
        declared = task_backends[profile.backend].queues
        unknown = sorted(set(profile.queues) - declared) if declared else []
        if unknown:
            errors.append(Error(
                f"OFFLOAD_PROFILES[{profile.name!r}] takes queue(s) {', '.join(unknown)}, which "
                f"TASKS[{profile.backend!r}]['QUEUES'] does not declare.",
                hint=f"Declared queues: {', '.join(sorted(declared))}; add the queue there or "
                     "remove it from the profile.", id="offload.E006"))
    return errors
