"""Health endpoints for the web role, answered before anything else looks at the request.

Put the middleware first in ``MIDDLEWARE``: probes often arrive without the public
``Host`` header, and ``ALLOWED_HOSTS`` (or an SSL redirect) would turn them away::

    MIDDLEWARE = ["offload.health.HealthMiddleware", ...]

``/healthz``: the process answers (no dependency checks, so a database outage does not
restart every web server). ``/readyz``: the database answers and every migration is
applied (503 with the reason otherwise), so a load balancer sends no traffic to a
server of a release whose migrations have not run.
"""

import json

from django.db import Error, connections
from django.http import HttpResponse


def readiness(db="default"):
    """``(ok, reason)`` for the database alias ``db``."""
    from django.db.migrations.executor import MigrationExecutor

    try:
        with connections[db].cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connections[db])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Error as exc:
        return False, f"database {db!r} unreachable ({exc}); is it up?"
    if pending:
        return False, (f"database {db!r} has {len(pending)} unapplied migration(s) (first: "
                       f"{pending[0][0]}); run 'manage.py offload release'")
    return True, "ok"


class HealthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.ready = False  # once ready, only the database is checked again

    def __call__(self, request):
        if request.path == "/healthz":
            return HttpResponse("ok\n", content_type="text/plain")
        if request.path == "/readyz":
            if self.ready:
                try:
                    with connections["default"].cursor() as cursor:
                        cursor.execute("SELECT 1")
                    ok, reason = True, "ok"
                except Error as exc:
                    ok, reason = False, f"database unreachable: {exc}"
            else:
                ok, reason = readiness()
                self.ready = ok
            body = json.dumps({"ready": ok, "reason": reason})
            return HttpResponse(body, status=200 if ok else 503, content_type="application/json")
        return self.get_response(request)
