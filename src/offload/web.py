"""The web role's WSGI application: the project's own, with what the role promises.

``offload run`` (roles web and all) serves ``offload.web:application`` under gunicorn:
the project's ``WSGI_APPLICATION``, wrapped so that

- ``/healthz`` and ``/readyz`` answer before the project sees the request (no
  ``ALLOWED_HOSTS``, no redirects, no middleware to add), and
- static files are served (WhiteNoise): from ``STATIC_ROOT`` once ``collectstatic``
  has filled it, else straight from the apps' and ``STATICFILES_DIRS``' folders, as
  ``runserver`` does. A project whose ``MIDDLEWARE`` already has WhiteNoise keeps its
  own, and an absolute ``STATIC_URL`` (a CDN) is left alone.

Example (what ``offload run`` starts)::

    gunicorn -c python:offload.gunicorn_conf offload.web:application
"""

import logging
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import close_old_connections

from offload.health import Probe

__all__ = ["Probes", "application", "build", "static_files"]

logger = logging.getLogger("offload.web")

_WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"


class Probes:
    """WSGI middleware answering /healthz and /readyz (``offload.health.Probe``)."""

    def __init__(self, app, db=None):
        self.app = app
        self.probe = Probe(db)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path not in Probe.PATHS:
            return self.app(environ, start_response)
        close_old_connections()  # what Django does around a request
        try:
            status, content_type, body = self.probe.answer(path)
        finally:
            close_old_connections()
        phrase = "OK" if status == 200 else "Service Unavailable"
        data = body.encode()
        start_response(f"{status} {phrase}", [("Content-Type", content_type),
                                              ("Content-Length", str(len(data)))])
        return [data]


def static_files(app):
    """``app`` serving static files with WhiteNoise, unless the project does already."""
    from django.apps import apps

    url = settings.STATIC_URL or ""
    if _WHITENOISE in settings.MIDDLEWARE or not url or urlsplit(url).netloc:
        return app
    from whitenoise import WhiteNoise

    prefix = urlsplit(url).path
    root = settings.STATIC_ROOT
    if root and Path(root).is_dir() and any(Path(root).iterdir()):
        return WhiteNoise(app, root=root, prefix=prefix)
    if not apps.is_installed("django.contrib.staticfiles"):
        return app
    from django.contrib.staticfiles import finders

    logger.info("static files: serving from the apps' folders (%s); run 'manage.py "
                "collectstatic' with STATIC_ROOT set to serve collected files",
                "STATIC_ROOT is not set" if not root else f"{root} is empty or missing")
    served = WhiteNoise(app)
    # Later folders override earlier ones in WhiteNoise; the first finder wins in Django.
    for finder in reversed(list(finders.get_finders())):
        for storage in reversed(list(getattr(finder, "storages", {}).values())):
            sub = (getattr(storage, "prefix", None) or "").strip("/")
            if Path(storage.location).is_dir():
                served.add_files(storage.location, prefix=f"{prefix.rstrip('/')}/{sub}".rstrip("/") + "/")
    return served


def build():
    from django.core.servers.basehttp import get_internal_wsgi_application

    return Probes(static_files(get_internal_wsgi_application()))


application = build()
