"""``offload health``: the async role's liveness probe. Exit 0 if an async server on this
host heartbeats (running, or draining: a draining server with a long grace is still
doing its work), else 1. The web role's probes are HTTP (``offload.health``). Example::

    manage.py offload health
    # healthy: async1-812 (async, release 4f2a9c1e07b3)
"""

import sys

#: A server whose last heartbeat is older than this is not healthy.
FRESH_SECONDS = 30


def handle(command, **_):
    import socket
    from datetime import timedelta

    from offload import registry
    from offload.clock import now

    fresh, host = now() - timedelta(seconds=FRESH_SECONDS), socket.gethostname()
    server = next((s for s in registry.listing() if s.host == host and s.role != "web"
                   and s.state in ("running", "retiring") and s.heartbeat_at >= fresh), None)
    if server is None:
        command.stderr.write(f"unhealthy: no running async server on {host} "
                             f"has sent a heartbeat in the last {FRESH_SECONDS} s")
        sys.exit(1)
    state = "" if server.state == "running" else ", draining"
    command.stdout.write(f"healthy: {server.id} ({server.role}, release {server.release}{state})")
