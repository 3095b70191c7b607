"""System checks: a mistake in Offload's settings is reported by ``manage.py check`` and
by every command that runs the checks (``migrate``, ``runserver``, ``offload worker``),
with an id, the offending name and the fix.

The per-backend checks run from ``OffloadBackend.check()``, which Django calls for every
task backend, so they do not depend on this app being installed; the role checks are
registered when the app loads. Example::

    $ python manage.py check
    ?: (offload.E003) TASKS['default'] uses offload.backend.OffloadBackend, but 'offload' is not in INSTALLED_APPS.
        HINT: Add "offload" to INSTALLED_APPS ...

    offload.E001  a backend's DATABASE alias is not in DATABASES
    offload.E002  a backend's database is neither PostgreSQL nor SQLite
    offload.E003  'offload' is missing from INSTALLED_APPS
    offload.E004  a periodic schedule names a task that does not import
    offload.E005  OFFLOAD_ROLE / OFFLOAD_PROFILES is not a valid role set-up
    offload.E006  an async profile takes a queue its backend does not declare
    offload.E007  a periodic schedule enqueues into a queue its backend does not declare
    offload.E008  TASKS[alias] has an unknown key, or QUEUES is not a list of names
    offload.E009  TASKS[alias]['OPTIONS'] is invalid (unknown key, bad value, bad schedule)
    offload.W001  an SQLite task database is in memory (workers cannot share it)
    offload.W002  an SQLite task database without transaction_mode IMMEDIATE
"""

import django.tasks  # noqa: F401  (registers Django's task checks, which call OffloadBackend.check)
from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.tasks import Task
from django.utils.module_loading import import_string

from offload.suggest import did_you_mean

#: The keys Django reads from ``TASKS[alias]``.
BACKEND_KEYS = ("BACKEND", "QUEUES", "OPTIONS")

#: What an SQLite database shared by web and async servers needs (offload.W002).
SQLITE_OPTIONS = ('"OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, '
                  '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}')

MISSING_APP_HINT = ('Add "offload" to INSTALLED_APPS in your settings '
                    '(INSTALLED_APPS = [..., "offload"]), then run "manage.py migrate".')


def missing_app(alias):
    return Error(f"TASKS[{alias!r}] uses offload.backend.OffloadBackend, but 'offload' is not "
                 "in INSTALLED_APPS: its task table is never created and 'manage.py offload' "
                 "does not exist.", hint=MISSING_APP_HINT, id="offload.E003")


def backend_errors(backend, params, config_error):
    """Every check message for one ``OffloadBackend`` (``OffloadBackend.check``)."""
    alias = backend.alias
    errors = []
    if not apps.is_installed("offload") and alias == _first_offload_alias():
        errors.append(missing_app(alias))
    for key in params:
        if key not in BACKEND_KEYS:
            errors.append(Error(
                f"TASKS[{alias!r}] has an unknown key {key!r}.{did_you_mean(key, BACKEND_KEYS)}",
                hint=f"A task backend takes {', '.join(BACKEND_KEYS)}; Offload's own settings "
                     "go in OPTIONS (see docs/configuration.md).", id="offload.E008"))
    queues = params.get("QUEUES", [])
    if isinstance(queues, str) or not all(isinstance(q, str) and q for q in queues):
        errors.append(Error(
            f"TASKS[{alias!r}]['QUEUES'] = {queues!r} is not a list of queue names.",
            hint='Use a list such as ["default", "emails"] ([] accepts any queue name).',
            id="offload.E008"))
    if config_error is not None:
        errors.append(Error(str(config_error), hint="See the OPTIONS table in docs/configuration.md.",
                            id="offload.E009"))
        return errors
    errors += _check_periodic(alias, backend)
    db = backend.opts.DATABASE
    if db not in settings.DATABASES:
        errors.append(Error(
            f"TASKS[{alias!r}] stores tasks in database {db!r}, which DATABASES does not define."
            f"{did_you_mean(db, settings.DATABASES)}",
            hint=f"Set TASKS[{alias!r}]['OPTIONS']['DATABASE'] to one of: {', '.join(settings.DATABASES)}.",
            id="offload.E001"))
        return errors
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
    elif engine.endswith("sqlite3") and (settings.DATABASES[db].get("OPTIONS") or {}).get(
            "transaction_mode") != "IMMEDIATE":
        errors.append(Warning(
            f"TASKS[{alias!r}] stores tasks in SQLite database {db!r} without "
            "transaction_mode 'IMMEDIATE': when web requests and async servers write at once, "
            "a transaction that starts by reading fails at once with 'database is locked'.",
            hint=f"Add to DATABASES[{db!r}]: " + SQLITE_OPTIONS, id="offload.W002"))
    return errors


def _first_offload_alias():
    """E003 is reported once, by the first Offload backend in TASKS."""
    from django.tasks import task_backends

    from offload.backend import OffloadBackend

    return next(alias for alias in task_backends.settings
                if isinstance(task_backends[alias], OffloadBackend))


def _check_periodic(alias, backend):
    from offload.scheduling.periodic import parse_schedules

    errors = []
    for schedule in parse_schedules(backend.opts.PERIODIC):
        where = f"TASKS[{alias!r}]['OPTIONS']['PERIODIC'][{schedule.name!r}]"
        try:
            task = import_string(schedule.task)
        except ImportError as exc:
            task, problem = None, f"does not import ({exc})"
        else:
            problem = None if isinstance(task, Task) else f"is a {type(task).__name__}, not a task"
        if problem:
            errors.append(Error(
                f"{where}: task {schedule.task!r} {problem}.{_near_task(schedule.task)}",
                hint="Point 'task' at a function decorated with @task, as 'package.module.name'.",
                id="offload.E004"))
            continue
        queue = schedule.queue_name or task.queue_name
        if backend.queues and queue not in backend.queues:
            errors.append(Error(
                f"{where} enqueues into queue {queue!r}, which TASKS[{alias!r}]['QUEUES'] does "
                f"not declare: every occurrence would fail.{did_you_mean(queue, backend.queues)}",
                hint=f"Declared queues: {', '.join(sorted(backend.queues))}; set the schedule's "
                     "'queue_name' to one of them or declare the queue.", id="offload.E007"))
    return errors


def _near_task(path):
    """A suggestion for a mistyped task path: the closest task in its module."""
    from importlib import import_module

    module, _, name = path.rpartition(".")
    try:
        found = vars(import_module(module))
    except Exception:  # noqa: BLE001 — the module itself is what is wrong; the error says so
        return ""
    return did_you_mean(path, [f"{module}.{n}" for n, v in found.items() if isinstance(v, Task)])


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
                f"does not define.{did_you_mean(profile.backend, task_backends.settings)}",
                hint=f"Use one of: {', '.join(task_backends.settings)}.", id="offload.E006"))
            continue
        declared = task_backends[profile.backend].queues
        for queue in sorted(set(profile.queues) - declared) if declared else []:
            errors.append(Error(
                f"OFFLOAD_PROFILES[{profile.name!r}] takes queue {queue!r}, which "
                f"TASKS[{profile.backend!r}]['QUEUES'] does not declare.{did_you_mean(queue, declared)}",
                hint=f"Declared queues: {', '.join(sorted(declared))}; add the queue there or "
                     "remove it from the profile.", id="offload.E006"))
    return errors
