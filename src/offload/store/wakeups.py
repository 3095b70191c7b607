"""Wake-up sources: how a worker's loop learns that new work may be there, per engine.

Each store gives one (``store.wakeups(backend, name, listen=OPTIONS["LISTEN"])``), so
the loop never asks which engine it runs on. PostgreSQL: a thread LISTENs on the
backend's channel (over the task database's connection settings, or another alias's)
and every NOTIFY (sent by enqueue) is news (one with the payload "stop": a running
task was asked to stop, ``stops_since_look``); the loop may sleep a whole
``POLL_SECONDS`` between polls; with ``LISTEN = False``, ``Poll``: no news, only the
poll. SQLite: no notifications, but ``PRAGMA data_version`` changes when another
connection commits, and reading it is cheap, so the loop looks before each claim and
polls every few milliseconds while idle.

A source with ``HEARTBEAT = True`` (``Listen``) also renews the worker's leases, on
its own connection, so a worker process needs no heartbeat thread with a connection of
its own: ``beat(execute)`` is called every ``interval`` seconds from the source's
thread, with ``execute(sql, params)`` running a statement on that connection, or
``execute=None`` (the loop's way, through Django) while that connection is down.
Example::

    source = store.wakeups("default", "host-1-w0")
    source.start(news=on_news, beat=on_beat, interval=10)  # both called from its thread
    if source.look(call):             # before a claim, with free slots
        ...
"""

import logging
import threading
import time

logger = logging.getLogger("offload.worker")


class Poll:
    """No news: the loop polls every ``POLL_SECONDS`` and runs its own heartbeat thread
    (PostgreSQL with ``OPTIONS["LISTEN"] = False``); the base of the other sources,
    which override what they do differently."""

    HEARTBEAT = False

    def start(self, news, beat=None, interval=None):
        pass

    def look(self, call):
        return False

    def claiming(self):
        pass

    def news_since_claim(self):
        return False

    def stops_since_look(self):
        """Whether a running task was asked to stop since the last call (the loop
        also looks every ``STOP_POLL`` seconds while it runs tasks)."""
        return False

    def idle_sleep(self, idle, poll):
        return poll

    def stop(self):
        pass


class DataVersion(Poll):
    """SQLite: news is a changed ``PRAGMA data_version`` (another connection committed);
    the loop runs its own heartbeat thread."""

    def __init__(self, store):
        self.store = store
        self.version = None

    def start(self, news, beat=None, interval=None):
        self.store.prepare()

    def look(self, call):
        """Whether there is news since the last look; ``call`` runs a store method the
        loop's way (a database error is logged and gives None)."""
        current = call("data_version")
        if current != self.version:
            self.version = current
            return True
        return False

    # news_since_claim: False, as Poll's (another look would be a query: the next round looks)

    def idle_sleep(self, idle, poll):
        return idle


class Listen(Poll):
    """PostgreSQL: news is a NOTIFY on the backend's channel, received by a thread, which
    also runs the heartbeat on the same connection (one connection for both). ``alias``:
    the DATABASES alias whose connection settings it uses (None: the store's)."""

    HEARTBEAT = True

    def __init__(self, store, backend, name, alias=None):
        self.store = store
        self.backend = backend
        self.name = name
        self.alias = alias
        self.notices = 0
        self.seen = 0
        self.stops = 0
        self.stops_seen = 0
        self.alive = True

    def start(self, news, beat=None, interval=None):
        threading.Thread(target=self._listen, args=(news, beat, interval), name="offload-listen",
                         daemon=True).start()

    # look: False, as Poll's (news arrives through the thread)

    def claiming(self):
        self.seen = self.notices

    def news_since_claim(self):
        return self.notices != self.seen

    def stops_since_look(self):
        stops = self.stops
        news, self.stops_seen = stops != self.stops_seen, stops
        return news

    # idle_sleep: the poll, as Poll's (a NOTIFY wakes the loop sooner)

    def stop(self):
        self.alive = False

    def _beat(self, beat, execute):
        """A psycopg error on this connection (``execute``) propagates (reconnect);
        anything else is logged (the loop's own way, ``execute=None``, logs database
        errors itself), and the leases are renewed again next time."""
        import psycopg

        try:
            beat(execute)
        except psycopg.Error:
            if execute is not None:
                raise
            logger.exception("%s: heartbeat failed", self.name)
        except Exception:
            logger.exception("%s: heartbeat failed", self.name)

    def _notice(self, news, payload=""):
        """A NOTIFY: new work (payload ""), or a running task asked to stop ("stop")."""
        if payload == "stop":
            self.stops += 1
        else:
            self.notices += 1
        news()

    def _listen(self, news, beat, interval):
        import psycopg

        channel = self.store.channel(self.backend)
        self._next_beat = time.monotonic() + (interval or 0)
        while self.alive:
            try:
                params = self.store.listen_params(self.name, alias=self.alias)
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{channel}"')
                    self._notice(news)  # anything enqueued while we were not listening

                    def execute(sql, params, conn=conn):
                        return conn.execute(sql, params).rowcount

                    while self.alive:
                        wait = 1.0 if beat is None else max(0.0, min(1.0, self._next_beat - time.monotonic()))
                        for notice in conn.notifies(timeout=wait, stop_after=1):
                            self._notice(news, notice.payload)
                        self._beat_if_due(beat, interval, execute)
            except psycopg.Error as exc:
                logger.warning("%s: LISTEN connection lost (%s); polling until it is back",
                               self.name, exc)
                self._wait_offline(beat, interval)
            except Exception:
                logger.exception("%s: LISTEN failed; polling until it is back", self.name)
                self._wait_offline(beat, interval)

    def _beat_if_due(self, beat, interval, execute):
        if beat is not None and time.monotonic() >= self._next_beat:
            self._next_beat = time.monotonic() + interval
            self._beat(beat, execute)

    def _wait_offline(self, beat, interval):
        """A second before reconnecting; the leases are renewed meanwhile as the loop
        would (``execute=None``: through Django's connection, whose route the claims
        take), so a LISTEN connection that cannot be made never costs a lease."""
        deadline = time.monotonic() + 1.0
        while self.alive and time.monotonic() < deadline:
            self._beat_if_due(beat, interval, None)
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
