"""The server registry: every server registers its host, pid, role and release and
heartbeats; ``retire`` tells the servers of other releases to drain and exit.

The fence is in the claim itself (``store/sql/*``): a worker whose server is not
``running`` claims nothing, so a retired server that somehow keeps running — frozen,
forgotten on an old host — cannot take work. Example::

    registry.register("host-1-4242", role="async", release="v41", db="default", pid=4242)
    registry.retire(keep_release="v42")   # every v41 server drains and exits

An async server registers in its backend's database (the fence reads it there); a
web server in ``home()``, the database of the default Offload backend. Readers and
``retire`` cover every database that holds Offload tasks (``databases()``).

``dead`` is an observation, not an order: a server marked dead because it was silent
(the database was unreachable for longer than the silence allowed) that heartbeats
again is running again. Only ``retiring`` tells a server to stop.
"""

import logging
import socket
from contextlib import contextmanager
from datetime import timedelta

from django.db import DatabaseError, InterfaceError, connections

from offload.clock import now
from offload.models import Server

logger = logging.getLogger("offload.server")


def databases():
    """Every database alias that holds Offload tasks, the default backend's first
    (``Deployment.databases``)."""
    from offload.deployment import Deployment

    return list(Deployment.current().databases)


def home():
    """Where a server that has no backend of its own (the web role) registers
    (``Deployment.home``)."""
    from offload.deployment import Deployment

    return Deployment.current().home


@contextmanager
def _connection(db):
    """Drop the connection on a database error, so the next call opens a new one
    (a heartbeat thread has no request cycle to do it)."""
    try:
        yield Server.objects.using(db)
    except (DatabaseError, InterfaceError):
        connections[db].close()
        raise


def register(server, *, role, release, db, pid):
    at = now()
    with _connection(db) as servers:
        servers.update_or_create(
            id=server, defaults={"host": socket.gethostname(), "pid": pid, "role": role,
                                 "release": release, "started_at": at, "heartbeat_at": at,
                                 "state": Server.RUNNING})


def beat(server, *, db, draining=False):
    """Record a heartbeat; return the state (None if the row is gone).

    A server marked dead comes back (running; retiring while it drains); a draining
    server is shown as retiring. A retiring server stays retiring."""
    with _connection(db) as servers:
        rows = servers.filter(id=server)
        if not rows.update(heartbeat_at=now()):
            return None
        if rows.filter(state=Server.DEAD).update(
                state=Server.RETIRING if draining else Server.RUNNING):
            logger.warning("this server (%s) had been marked dead after a silence (was the "
                           "database unreachable?); it is heartbeating again and is back",
                           server)
        elif draining:
            rows.filter(state=Server.RUNNING).update(state=Server.RETIRING)
        return rows.values_list("state", flat=True).first()


def set_state(server, state, *, db):
    with _connection(db) as servers:
        servers.filter(id=server).update(state=state, heartbeat_at=now())


def _each(db, visit):
    """``visit(servers)`` for ``db``'s registry, or for every registry database. One
    that cannot be read (unreachable, not migrated) is logged and skipped, so the
    others still are; a named ``db`` raises."""
    for alias in [db] if db else databases():
        try:
            with _connection(alias) as servers:
                visit(servers)
        except (DatabaseError, InterfaceError) as exc:
            if db:
                raise
            logger.warning("server registry in database %r skipped: %s", alias, exc)


def retire(*, keep_release, db=None, role=None):
    """Tell every running server of another release to drain and exit; return their ids.
    ``db``: one registry database; by default every one (``databases()``)."""
    ids = []

    def visit(servers):
        rows = servers.filter(state=Server.RUNNING).exclude(release=keep_release)
        if role:
            rows = rows.filter(role=role)
        found = list(rows.values_list("id", flat=True))
        servers.filter(id__in=found, state=Server.RUNNING).update(state=Server.RETIRING)
        ids.extend(found)

    _each(db, visit)
    return ids


def mark_dead(*, db, silent_for):
    """Servers whose heartbeat stopped more than ``silent_for`` seconds ago are dead.
    Each is marked with its own conditional UPDATE, so one that heartbeats between the
    look and the mark is not marked."""
    cutoff = now() - timedelta(seconds=silent_for)
    with _connection(db) as servers:
        silent = servers.filter(state__in=[Server.RUNNING, Server.RETIRING], heartbeat_at__lt=cutoff)
        return [server for server in silent.values_list("id", flat=True)
                if silent.filter(id=server).update(state=Server.DEAD)]


def listing(*, include_gone=False):
    """Every registered server in every registry database (stopped and dead ones too
    with ``include_gone``)."""
    found = {}

    def visit(servers):
        rows = servers.all() if include_gone else servers.exclude(
            state__in=[Server.STOPPED, Server.DEAD])
        for server in rows.order_by("id"):
            found.setdefault(server.id, server)

    _each(None, visit)
    return list(found.values())


def retire_older_releases(server, *, db):
    """Auto-retire: once this server runs, retire running servers of other releases
    that started before it (same role). Returns their ids."""
    with _connection(db) as servers:
        me = servers.filter(id=server, state=Server.RUNNING).first()
        if me is None:
            return []
        rows = (servers.filter(state=Server.RUNNING, role=me.role, started_at__lt=me.started_at)
                .exclude(release=me.release))
        ids = list(rows.values_list("id", flat=True))
        servers.filter(id__in=ids, state=Server.RUNNING).update(state=Server.RETIRING)
    return ids
