"""Settings for Offload's own test suite.

``OFFLOAD_TEST_DB=sqlite|postgres`` picks the database; worker subprocesses started
by a test get ``OFFLOAD_DB_NAME`` (and ``OFFLOAD_TASKS_DB_NAME``) so they open the
test databases the suite created.
"""

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
VAR.mkdir(exist_ok=True)
ENGINE = os.environ.get("OFFLOAD_TEST_DB", "sqlite")
# Lets two runs of the suite (two checkouts, or two sessions) go at once without sharing
# test databases, on PostgreSQL and SQLite.
SUFFIX = os.environ.get("OFFLOAD_TEST_DB_SUFFIX", "")

SECRET_KEY = "offload-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.admin",
                  "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
                  "offload", "tests.testapp"]
STATIC_URL = "static/"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}]
DATABASE_ROUTERS = ["offload.routers.OffloadRouter"]


def _db(name, test_name, env):
    if ENGINE == "postgres":
        url = urlsplit(os.environ.get("OFFLOAD_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/offload"))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get(env, name),
            "USER": url.username or "postgres", "PASSWORD": url.password or "",
            "HOST": url.hostname or "127.0.0.1", "PORT": url.port or 5432,
            "TEST": {"NAME": f"test_{name}{SUFFIX}"},
        }
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(env, str(VAR / f"{name}.sqlite3")),
        "TEST": {"NAME": str(VAR / f"test_{name}{SUFFIX}.sqlite3")},
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }


DATABASES = {
    "default": _db("offload", "test_offload", "OFFLOAD_DB_NAME"),
    "tasks": _db("offload_tasks", "test_offload_tasks", "OFFLOAD_TASKS_DB_NAME"),
}
if os.environ.get("OFFLOAD_TEST_CONN_MAX_AGE"):  # a worker started with connections kept
    for _alias in DATABASES.values():
        _alias["CONN_MAX_AGE"] = float(os.environ["OFFLOAD_TEST_CONN_MAX_AGE"])
# A worker started with OFFLOAD_TEST_LISTEN: the default backend's OPTIONS["LISTEN"]:
# "false", or "direct" (LISTEN through a second alias for the same database), or
# "broken" (through an alias on a port where nothing listens).
_LISTEN = os.environ.get("OFFLOAD_TEST_LISTEN")
if _LISTEN in ("direct", "broken"):
    DATABASES["direct"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
    if _LISTEN == "broken":
        DATABASES["direct"]["PORT"] = 1
# A process started with OFFLOAD_TEST_PGBOUNCER_PORT (tests/test_pgbouncer.py) reaches
# the default database through PgBouncer in transaction pooling mode on that port, set
# up as docs/deployment.md says: no prepared statements (OFFLOAD_TEST_PREPARE=1: Offload's
# default, to show what that does there), no server-side cursors. The "direct" alias
# above still reaches PostgreSQL itself.
if ENGINE == "postgres" and os.environ.get("OFFLOAD_TEST_PGBOUNCER_PORT"):
    DATABASES["default"].update(PORT=int(os.environ["OFFLOAD_TEST_PGBOUNCER_PORT"]),
                                DISABLE_SERVER_SIDE_CURSORS=True)
    OFFLOAD_PREPARE = os.environ.get("OFFLOAD_TEST_PREPARE") == "1"

TASKS = {
    "default": {
        "BACKEND": "offload.backend.OffloadBackend",
        "QUEUES": ["default", "emails", "reports"],
        "OPTIONS": {"RETRY_BACKOFF": 0, "LEASE_SECONDS": float(os.environ.get("OFFLOAD_TEST_LEASE", 30)),
                    "MAX_RESCUES": int(os.environ.get("OFFLOAD_TEST_MAX_RESCUES", 5)),
                    "CANCEL_GRACE": float(os.environ.get("OFFLOAD_TEST_CANCEL_GRACE", 5)),
                    **({"LISTEN": False if _LISTEN == "false" else "direct"} if _LISTEN else {})},
    },
    "other": {"BACKEND": "offload.backend.OffloadBackend", "QUEUES": ["default"]},
    "elsewhere": {
        "BACKEND": "offload.backend.OffloadBackend",
        "QUEUES": ["default"],
        "OPTIONS": {"DATABASE": "tasks"},
    },
    "anyqueue": {"BACKEND": "offload.backend.OffloadBackend", "QUEUES": []},
    "aged": {"BACKEND": "offload.backend.OffloadBackend",
             "OPTIONS": {"AGE_RATE": 1.0, "AGE_CAP": 50}},
    "limited": {"BACKEND": "offload.backend.OffloadBackend", "QUEUES": ["default", "crm"],
                "OPTIONS": {"QUEUE_LIMITS": {"crm": 2}, "RETRY_BACKOFF": 0}},
    # Polls so rarely that only the loop's own wake-ups can keep it going.
    "slowpoll": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"POLL_SECONDS": 3600}},
    "periodic": {"BACKEND": "offload.backend.OffloadBackend", "OPTIONS": {"PERIODIC": {
        "tick": {"task": "tests.testapp.tasks.periodic_tick", "cron": "* * * * * */2"},
    }}},
    "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
}

# OFFLOAD_TEST_PERIODIC: a schedule of the default backend's own, every second.
if os.environ.get("OFFLOAD_TEST_PERIODIC"):
    TASKS["default"]["OPTIONS"]["PERIODIC"] = {
        "tick": {"task": "tests.testapp.tasks.periodic_tick", "cron": "* * * * * *"}}

# Fault injection for tests/test_hardening.py: a schedule whose queue is not declared
# (every occurrence fails to enqueue), and settings that fail only inside a worker
# process (offload.worker.child starts workers with ``python -c``).
if os.environ.get("OFFLOAD_TEST_BAD_PERIODIC"):
    TASKS["periodic"]["OPTIONS"]["PERIODIC"]["tick"]["queue_name"] = "nowhere"
if os.environ.get("OFFLOAD_TEST_BROKEN_WORKER") and sys.argv[:1] == ["-c"]:
    raise RuntimeError("these settings fail in worker processes (OFFLOAD_TEST_BROKEN_WORKER)")

MIDDLEWARE = ["offload.health.HealthMiddleware", "django.middleware.common.CommonMiddleware",
              "django.contrib.sessions.middleware.SessionMiddleware",
              "django.middleware.csrf.CsrfViewMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
ROOT_URLCONF = "tests.urls"
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
WSGI_APPLICATION = "tests.wsgi.application"
OFFLOAD_PROFILES = {"async-bulk": {"queues": ["reports"], "threads": 2, "grace": "5s"}}
OFFLOAD_AUTO_RETIRE = os.environ.get("OFFLOAD_AUTO_RETIRE") == "1"
OFFLOAD_METRICS_TOKEN = "scrape-me"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"offload": {"handlers": ["console"], "level": "INFO"}},
}
