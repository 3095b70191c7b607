"""The Back Office: one settings module for every role.

Configuration comes from the environment. With nothing set it runs on an SQLite file
in ``var/`` (the embedded default); ``DATABASE_URL=postgres://user@host:5432/name``
switches to PostgreSQL.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("OFFLOAD_VAR_DIR", BASE_DIR / "var"))
VAR.mkdir(exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "offload",
    "loans",
]
MIDDLEWARE = [
    # First: load balancer and orchestrator probes must not meet ALLOWED_HOSTS.
    "offload.health.HealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Accept, approve and decline are one click: no framing by other sites.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "backoffice.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
WSGI_APPLICATION = "backoffice.wsgi.application"
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("OFFLOAD_STATIC_ROOT", BASE_DIR / "static-collected"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


def _database(url):
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR / "backoffice.sqlite3",
            # WAL lets the web role read while the async server writes; IMMEDIATE
            # transactions take the write lock up front instead of failing later.
            # Tests (and worker processes they start) need a file, not ":memory:".
            "TEST": {"NAME": VAR / "test_backoffice.sqlite3"},
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    u = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": u.path.lstrip("/"), "USER": u.username or "", "PASSWORD": u.password or "",
        "HOST": u.hostname or "", "PORT": u.port or 5432,
        "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True,
    }


DATABASES = {"default": _database(os.environ.get("DATABASE_URL"))}

TASKS = {
    "default": {
        "BACKEND": "offload.backend.OffloadBackend",
        "QUEUES": ["default", "notifications", "analysis", "crm", "reports"],
        "OPTIONS": {
            "RETAIN": "7d",
            # The CRM's API allows two concurrent calls: across every async server.
            "QUEUE_LIMITS": {"crm": 2},
            "PERIODIC": {"portfolio-report": {"task": "loans.tasks.portfolio_report", "cron": "0 2 * * *"}},
        },
    }
}

# Roles: one settings module for every process; OFFLOAD_ROLE picks web, async, all
# (the local default) or one of these async profiles.
OFFLOAD_ROLE = os.environ.get("OFFLOAD_ROLE", "all")
OFFLOAD_PROFILES = {
    "async": {"processes": 2, "threads": 8, "reserve": "2:50", "grace": "30s"},
    "async-bulk": {"queues": ["reports"], "processes": 1, "threads": 2, "grace": "10m"},
}
OFFLOAD_AUTO_RETIRE = os.environ.get("OFFLOAD_AUTO_RETIRE", "0") == "1"
# Prometheus scrapes /metrics with "Authorization: Bearer <token>" (staff may too).
OFFLOAD_METRICS_TOKEN = os.environ.get("OFFLOAD_METRICS_TOKEN")
# The web role's drain budget (gunicorn's graceful timeout), in seconds.
OFFLOAD_WEB_GRACE = 20

# Emails to applicants land as files in var/mail (set EMAIL_BACKEND for SMTP).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR / "mail"
DEFAULT_FROM_EMAIL = "Lending Back Office <loans@example.com>"
# Links in emails point here.
LOANS_PUBLIC_URL = os.environ.get("LOANS_PUBLIC_URL", "http://127.0.0.1:8000")
LOGIN_REDIRECT_URL = "/staff/"
# The simulated credit bureau (loans/bureau.py): share of calls that fail, latency range.
LOANS_BUREAU_FAILURE_RATE = float(os.environ.get("LOANS_BUREAU_FAILURE_RATE", "0.15"))
LOANS_BUREAU_LATENCY = (0.15, 0.9)
# Uploads up to the statement limit stay in memory; nothing touches the disk.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024 + 1024
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"offload": {"handlers": ["console"], "level": "INFO"},
                # Django logs every task's state change at INFO, failures (with their
                # traceback) at ERROR: keep those, in the same format.
                "django.tasks": {"handlers": ["console"], "level": "WARNING", "propagate": False}},
}
