"""Health endpoints for the web role, answered before anything else looks at the request.

``offload run`` (the web role) answers them itself, before the project's application
(see ``offload.web``). Under another WSGI/ASGI server, put the middleware first in
``MIDDLEWARE``: probes often arrive without the public ``Host`` header, and
``ALLOWED_HOSTS`` (or an SSL redirect) would turn them away::

    MIDDLEWARE = ["offload.health.HealthMiddleware", ...]

``/healthz``: the process answers (no dependency checks, so a database outage does not
restart every web server). ``/readyz``: the database answers and every migration is
applied (503 with the reason otherwise), so a load balancer sends no traffic to a
server of a release whose migrations have not run.
"""

import json
import logging

from django.db import Error, connections
from django.http import HttpResponse

__all__ = ["HealthMiddleware", "Probe", "UNAVAILABLE", "readiness"]

logger = logging.getLogger("offload.health")

#: What an unauthenticated probe is told when the database does not answer; the
#: driver's error (host, port, user) goes to the "offload.health" logger only.
UNAVAILABLE = "database unavailable"


def _database_answers(db):
    try:
        with connections[db].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Error as exc:
        logger.warning("database %r does not answer: %s", db, exc)
        return False
    return True


def _probe_database():
    from offload.deployment import Deployment

    return Deployment.current().probe


def readiness(db=None):
    """``(ok, reason)`` for the database alias ``db`` (by default ``Deployment.probe``);
    the reason gives no connection details (they are logged)."""
    db = db or _probe_database()
    from django.db.migrations.executor import MigrationExecutor

    if not _database_answers(db):
        return False, UNAVAILABLE
    try:
        executor = MigrationExecutor(connections[db])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Error as exc:
        logger.warning("cannot read the migrations of database %r: %s", db, exc)
        return False, UNAVAILABLE
    if pending:
        logger.warning("database %r has %d unapplied migration(s), the first %s", db,
                       len(pending), pending[0][0])
        return False, f"{len(pending)} unapplied migration(s); run 'manage.py offload release'"
    return True, "ok"


class Probe:
    """The answers to /healthz and /readyz, for the middleware and for the web role's
    WSGI wrapper (``offload.web``); ``db`` is the database alias /readyz checks (by
    default ``Deployment.probe``)."""

    PATHS = ("/healthz", "/readyz")

    def __init__(self, db=None):
        self.db = db or _probe_database()
        self.ready = False  # once ready, only the database is checked again

    def answer(self, path):
        """``(status, content_type, body)`` for a probe path, else None."""
        if path == "/healthz":
            return 200, "text/plain", "ok\n"
        if path != "/readyz":
            return None
        if self.ready:
            ok = _database_answers(self.db)
            reason = "ok" if ok else UNAVAILABLE
        else:
            ok, reason = readiness(self.db)
            self.ready = ok
        return 200 if ok else 503, "application/json", json.dumps({"ready": ok, "reason": reason})


class HealthMiddleware:
    """Answers /healthz and /readyz before the rest of the middleware; ``db`` is the
    database alias /readyz checks."""

    def __init__(self, get_response, db=None):
        self.get_response = get_response
        self.probe = Probe(db)

    def __call__(self, request):
        if request.path in Probe.PATHS:
            status, content_type, body = self.probe.answer(request.path)
            return HttpResponse(body, status=status, content_type=content_type)
        return self.get_response(request)
