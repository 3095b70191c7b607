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
        "OPTIONS": {"RETAIN": "7d"},
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

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"offload": {"handlers": ["console"], "level": "INFO"}},
}
