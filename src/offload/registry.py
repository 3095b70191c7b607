"""The server registry: every server registers its host, pid, role and release and
heartbeats; ``retire`` tells the servers of other releases to drain and exit.

The fence is in the claim itself (``store/sql/*``): a worker whose server is not
``running`` claims nothing, so a retired server that somehow keeps running — frozen,
forgotten on an old host — cannot take work. Example::

    registry.register("host-1-4242", role="async", release="v41")
    registry.retire(keep_release="v42")   # every v41 server drains and exits
"""

import socket
from datetime import timedelta

from offload.models import Server
from offload.store.base import now


def register(server, *, role, release, db, pid):
    at = now()
    Server.objects.using(db).update_or_create(
        id=server, defaults={"host": socket.gethostname(), "pid": pid, "role": role,
                             "release": release, "started_at": at, "heartbeat_at": at,
                             "state": Server.RUNNING})


def beat(server, *, db):
    """Record a heartbeat; return the state others may have set (retiring, dead)."""
    rows = Server.objects.using(db).filter(id=server)
    rows.update(heartbeat_at=now())
    return rows.values_list("state", flat=True).first()


def set_state(server, state, *, db):
    Server.objects.using(db).filter(id=server).update(state=state, heartbeat_at=now())


def retire(*, keep_release, db, role=None):
    """Tell every running server of another release to drain and exit; return their ids."""
    rows = Server.objects.using(db).filter(state=Server.RUNNING).exclude(release=keep_release)
    if role:
        rows = rows.filter(role=role)
    ids = list(rows.values_list("id", flat=True))
    Server.objects.using(db).filter(id__in=ids, state=Server.RUNNING).update(state=Server.RETIRING)
    return ids


def mark_dead(*, db, silent_for):
    """Servers whose heartbeat stopped more than ``silent_for`` seconds ago are dead."""
    cutoff = now() - timedelta(seconds=silent_for)
    rows = Server.objects.using(db).filter(state__in=[Server.RUNNING, Server.RETIRING],
                                           heartbeat_at__lt=cutoff)
    ids = list(rows.values_list("id", flat=True))
    Server.objects.using(db).filter(id__in=ids).update(state=Server.DEAD)
    return ids


def retire_older_releases(server, *, db):
    """Auto-retire: once this server runs, retire running servers of other releases
    that started before it (same role). Returns their ids."""
    me = Server.objects.using(db).filter(id=server, state=Server.RUNNING).first()
    if me is None:
        return []
    rows = (Server.objects.using(db).filter(state=Server.RUNNING, role=me.role,
                                            started_at__lt=me.started_at)
            .exclude(release=me.release))
    ids = list(rows.values_list("id", flat=True))
    Server.objects.using(db).filter(id__in=ids, state=Server.RUNNING).update(state=Server.RETIRING)
    return ids
