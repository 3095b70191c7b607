"""Minimal Django settings for benchmarking django-tasks-db.

PEER_DB selects the database: "sqlite" (a real file in WAL mode, path from
PEER_SQLITE_PATH) or "postgres" (127.0.0.1:5432, user postgres, database
PEER_PG_NAME, default "bench_peer_dtdb").
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False  # DEBUG would turn on query logging and the worker's autoreloader
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

_db = os.environ.get("PEER_DB", "sqlite")
if _db == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("PEER_SQLITE_PATH", "/tmp/bench_peer_dtdb.sqlite3"),
            "OPTIONS": {
                # The production settings Django's docs suggest for SQLite.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
elif _db == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PEER_PG_NAME", "bench_peer_dtdb"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "CONN_MAX_AGE": None,  # persistent connection per process
        }
    }
else:
    raise RuntimeError(f"PEER_DB must be sqlite or postgres, not {_db!r}")
