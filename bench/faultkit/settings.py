"""Settings of the fault suite (bench/faults.py), independent of tests/.

Environment: ``FAULTS_DB=sqlite|postgres``; ``FAULTS_SQLITE`` (the SQLite file) or
``FAULTS_PG_PORT`` / ``FAULTS_PG_DB`` (the suite's private cluster on 127.0.0.1);
``FAULTS_LEASE`` (LEASE_SECONDS); ``FAULTS_RAISING_RECEIVERS=1`` connects
``task_started`` / ``task_finished`` receivers that raise (see apps.py);
``FAULTS_LEDGER`` is the directory of the verification ledger (see tasks.py).
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET_KEY = "offload-faults-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["offload", "bench.faultkit"]
MIDDLEWARE = ["offload.health.HealthMiddleware"]
ROOT_URLCONF = "bench.faultkit.urls"
WSGI_APPLICATION = "bench.faultkit.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
BASE_DIR = ROOT

if os.environ.get("FAULTS_DB", "sqlite") == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("FAULTS_PG_DB", "offload_faults"),
        "USER": "postgres", "HOST": "127.0.0.1", "PORT": int(os.environ.get("FAULTS_PG_PORT", 5432)),
        # The harness names its own connections, so it can leave them out when it
        # counts the servers' connections.
        "OPTIONS": {"application_name": os.environ.get("FAULTS_APPNAME", "offload"),
                    "connect_timeout": 5},
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("FAULTS_SQLITE", str(ROOT / "var" / "faults.sqlite3")),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }}

TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                     "QUEUES": ["default"],
                     "OPTIONS": {"LEASE_SECONDS": float(os.environ.get("FAULTS_LEASE", 10)),
                                 "RETRY_BACKOFF": 0}}}
# The fleet scenarios run `offload run` with OFFLOAD_ROLE=async: one process, four threads.
OFFLOAD_PROFILES = {"async": {"processes": 1, "threads": 4, "grace": "10s"}}
OFFLOAD_WEB_GRACE = 5

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"offload": {"handlers": ["console"], "level": "INFO"},
                "django.tasks": {"handlers": ["console"], "level": "WARNING"}},
}
