"""Gunicorn configuration used by ``offload run`` for the web role.

Registers the web server (the gunicorn master) in the server registry with its role
and release, heartbeats it, and records it as stopped on exit. If it cannot register
(the database does not answer, does not exist, is not migrated), the master logs one
line naming the fix and exits 1. Bind address and worker count come from
``OFFLOAD_WEB_BIND`` and ``WEB_CONCURRENCY``. Example::

    gunicorn -c python:offload.gunicorn_conf mysite.wsgi:application
"""

import os
import signal
import sys
import threading

bind = os.environ.get("OFFLOAD_WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = int(float(os.environ.get("OFFLOAD_WEB_GRACE", "20")))
accesslog = "-"
# Gunicorn's default line plus the time the request took inside the server (µs).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus'
_stop = threading.Event()


def _name():
    from offload.roles import server_name

    return server_name()


def when_ready(server):
    import django

    django.setup()
    from django.db import Error, connections

    from offload import registry
    from offload.deployment import Deployment
    from offload.roles import current_release

    db, release = Deployment.current().home, current_release()

    def register():
        registry.register(_name(), role="web", release=release, db=db, pid=os.getpid())

    try:
        register()
    except Error as exc:
        # Gunicorn would print the traceback (some 80 lines) and exit 1; one line says it
        # all. No worker is started yet, so leaving here leaves nothing behind.
        from offload import dbcheck

        server.log.error("offload: the web server cannot start: %s", dbcheck.explain(db, exc))
        sys.exit(1)
    connections.close_all()  # the workers are forked after this: no shared connection

    def beat():
        while not _stop.wait(2):
            try:
                # registry drops a broken connection, so the next beat reconnects
                state = registry.beat(_name(), db=db)
                if state is None:  # the row is gone (database restored): register again
                    register()
            except Exception as exc:  # noqa: BLE001 — a missed heartbeat must not kill the master
                server.log.warning("offload heartbeat failed: %s", exc)
                continue
            if state == "retiring":
                # Retired: stop gracefully (finish in-flight requests, then exit), as on SIGTERM.
                server.log.info("offload: this web server's release was retired; shutting down")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=beat, daemon=True, name="offload-heartbeat").start()


def on_exit(server):
    _stop.set()
    try:
        from offload import registry
        from offload.deployment import Deployment

        registry.set_state(_name(), "stopped", db=Deployment.current().home)
    except Exception as exc:  # noqa: BLE001
        server.log.warning("offload: could not record the web server as stopped: %s", exc)
