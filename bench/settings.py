"""Settings for Offload's benchmarks: ``BENCH_DB=sqlite|postgres``, a throw-away database.

PostgreSQL: ``BENCH_PG_HOST`` (127.0.0.1), ``BENCH_PG_PORT`` (5432; bench/netdelay.py's
port when a benchmark runs with ``--delay-ms``), ``BENCH_PG_USER``, ``BENCH_PG_DB``.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
VAR.mkdir(parents=True, exist_ok=True)
SECRET_KEY = "bench"
USE_TZ = True
DEBUG = False
INSTALLED_APPS = ["offload", "bench"]
if os.environ.get("BENCH_DASHBOARD"):  # bench/dashboard_cost.py renders the dashboard
    INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.admin",
                      "django.contrib.sessions", "django.contrib.messages", *INSTALLED_APPS]
    MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                  "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "django.contrib.messages.middleware.MessageMiddleware"]
    ROOT_URLCONF = "bench.urls"
    ALLOWED_HOSTS = ["testserver"]
    TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                  "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                     "django.contrib.auth.context_processors.auth",
                                                     "django.contrib.messages.context_processors.messages"]}}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if os.environ.get("BENCH_DB", "sqlite") == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": os.environ.get("BENCH_PG_DB", "offload_bench"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"), "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        "PORT": int(os.environ.get("BENCH_PG_PORT", 5432)),
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": VAR / "bench.sqlite3",
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }}

# BENCH_CONN_MAX_AGE: Django's CONN_MAX_AGE (default 0: a task's connection closes at its
# end, as in a Django project that does not set it).
DATABASES["default"]["CONN_MAX_AGE"] = float(os.environ.get("BENCH_CONN_MAX_AGE", 0))

TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                     "QUEUES": ["default", "emails", "reports"],
                     "OPTIONS": {"POLL_SECONDS": 0.25,
                                 # bench/ageing.py turns ageing on through these
                                 "AGE_RATE": float(os.environ.get("BENCH_AGE_RATE", 0)),
                                 "AGE_CAP": int(os.environ.get("BENCH_AGE_CAP", 100))}}}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"django.tasks": {"level": "WARNING"}, "offload": {"level": "WARNING"}}}
