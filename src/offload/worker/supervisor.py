"""The async server's supervisor: starts worker processes, replaces the ones that die,
runs maintenance (rescue expired leases, prune old results) and stops gracefully.

Signals: the first SIGTERM or SIGINT asks every worker to stop claiming and finish
its in-flight tasks within ``grace`` seconds, handing back the rest; a second one
makes them hand back at once. Workers ignore SIGINT themselves, so a Ctrl-C on the
terminal (sent to the whole process group) counts once. Example::

    Supervisor("default", queues=["default"], processes=2, threads=4).run()
"""

import logging
import multiprocessing
import os
import secrets
import signal
import time
from datetime import timedelta
from multiprocessing.connection import wait

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connections
from django.tasks import task_backends

from offload.roles import current_release, server_name
from offload.stats import KEEP_MINUTES
from offload.store.base import now

logger = logging.getLogger("offload.server")

_CTX = multiprocessing.get_context("spawn")


def _child(alias, queues, threads, worker_id, grace, burst, reserve, queue_limits, server):
    """Entry point of a worker process (spawned: a fresh interpreter)."""
    import django

    django.setup()
    from offload.worker.loop import Loop

    loop = Loop(task_backends[alias], queues=queues, threads=threads, worker_id=worker_id,
                grace=grace, burst=burst, reserve=reserve, queue_limits=queue_limits,
                server=server)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    signal.signal(signal.SIGTERM, lambda *_: loop.request_stop("drain"))
    signal.signal(signal.SIGUSR1, lambda *_: loop.request_stop("now"))
    code = loop.run()
    logging.shutdown()
    os._exit(code)  # task threads may still be stuck in user code: do not join them


class Supervisor:
    def __init__(self, alias="default", *, queues=None, processes=None, threads=4,
                 grace=30.0, burst=False, reserve=None, queue_limits=None, role="async",
                 release=None, register=True, companions=()):
        self.alias = alias
        self.backend = task_backends[alias]
        self.queues = sorted(queues or self.backend.queues)
        self.processes = processes or os.cpu_count() or 1
        self.threads = threads
        self.grace = grace
        self.burst = burst
        self.reserve = reserve
        self.queue_limits = queue_limits or {}
        self.children = {}  # worker_id -> Process
        self.signals = 0
        self.name = server_name()
        self.role = role
        self.release = release or current_release()
        self.register = register  # False: no registry row, no release fence (tests, tools)
        #: Processes stopped with this server (the web server of role "all"); if one
        #: exits by itself, this server stops too, so the whole role restarts together.
        self.companions = list(companions)
        self._seq = 0
        self._rescued_at = None  # monotonic time of the last rescue / prune
        self._pruned_at = None
        self._folded_at = None
        # Imported here, not at module level: worker processes import this module to
        # find _child before Django is set up, and the scheduler needs the models.
        from offload.worker.scheduler import Scheduler

        self.scheduler = Scheduler(self.backend)
        self._respawn_delay = 0.0  # grows while workers die young (crash loop)
        self._pending_spawns = []  # monotonic times of delayed restarts
        self._started_at = {}

    def _spawn(self):
        self._seq += 1
        worker_id = f"{self.name}-{self._seq}-{secrets.token_hex(2)}"
        proc = _CTX.Process(
            target=_child, name=f"offload-worker-{self._seq}",
            args=(self.alias, self.queues, self.threads, worker_id, self.grace, self.burst,
                  self.reserve, self.queue_limits, self.name if self.register else ""),
        )
        proc.start()
        self.children[worker_id] = proc
        self._started_at[worker_id] = time.monotonic()

    def _on_signal(self, signum, frame):
        self.signals += 1

    def _maintain(self, force=False):
        """Rescue expired leases (every half lease); every tick, enqueue due periodic tasks
        and stop ageing tasks at their cap; fold old statistics minutes into their
        totals (every 10 minutes); prune old results (hourly)."""
        store, opts, mono = self.backend.store, self.backend.opts, time.monotonic()
        try:
            if self.register:
                self._registry_tick(opts)
            if force or self._rescued_at is None or mono - self._rescued_at >= opts.LEASE_SECONDS / 2:
                self._rescued_at = mono
                rows = store.rescue(now=now(), max_rescues=opts.MAX_RESCUES)
                if rows:
                    logger.warning("rescued %d task(s) whose lease expired: %s", len(rows),
                                   ",".join(str(r[0]) for r in rows))
            self.scheduler.tick(now())
            if opts.AGE_RATE:
                store.cap_aged(backend=self.alias, now=now(), age_rate=opts.AGE_RATE,
                               age_cap=opts.AGE_CAP)
            if self._folded_at is None or mono - self._folded_at >= 600:
                self._folded_at = mono
                store.fold_stats(backend=self.alias, before=now() - timedelta(minutes=KEEP_MINUTES))
            if opts.RETAIN and (self._pruned_at is None or mono - self._pruned_at >= 3600):
                self._pruned_at = mono
                deleted = store.prune(before=now() - timedelta(seconds=opts.RETAIN))
                if deleted:
                    logger.info("pruned %d finished task(s)", deleted)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("maintenance skipped, database error: %s", exc)
            connections[store.db_alias].close()

    def _registry_tick(self, opts):
        from offload import registry

        db = opts.DATABASE
        state = registry.beat(self.name, db=db)
        if state in ("retiring", "dead") and not self.signals:
            logger.warning("this server (%s, release %s) was %s: stopping claims, finishing "
                           "in-flight tasks, exiting", self.name, self.release,
                           "retired" if state == "retiring" else "declared dead")
            self.signals = 1  # the same path as a first SIGTERM
        dead = registry.mark_dead(db=db, silent_for=max(30.0, 2 * opts.LEASE_SECONDS))
        if dead:
            logger.warning("servers silent for too long, marked dead: %s", ", ".join(dead))
        if getattr(settings, "OFFLOAD_AUTO_RETIRE", False) and self.role != "web":
            retired = registry.retire_older_releases(self.name, db=db)
            if retired:
                logger.info("release %s is up: retiring %s", self.release, ", ".join(retired))

    def _reap(self, worker_id, proc, stopping):
        code = proc.exitcode
        del self.children[worker_id]
        lived = time.monotonic() - self._started_at.pop(worker_id)
        if code != 0:
            # A dead worker's tasks need not wait for their lease to expire.
            try:
                rows = self.backend.store.rescue(
                    now=now(), max_rescues=self.backend.opts.MAX_RESCUES, worker=worker_id)
            except (DatabaseError, InterfaceError) as exc:
                rows = []
                logger.warning("could not take back tasks of %s now (%s); their leases will "
                               "expire", worker_id, exc)
                connections[self.backend.store.db_alias].close()
            level = logging.INFO if code == 75 else logging.ERROR
            logger.log(level, "worker %s exited with %s; %d task(s) taken back", worker_id,
                       code, len(rows))
        if not stopping and not (self.burst and code == 0):
            # A worker that dies within seconds of starting will likely die again (bad
            # settings, database gone): back off up to 30 s instead of spinning.
            if code not in (0, 75) and lived < 5:
                self._respawn_delay = min(30.0, max(0.5, self._respawn_delay * 2))
                logger.error("worker died %.1fs after start; next start in %.1fs", lived,
                             self._respawn_delay)
                self._pending_spawns.append(time.monotonic() + self._respawn_delay)
            else:
                self._respawn_delay = 0.0
                self._spawn()

    def _check_database(self):
        from offload.health import readiness

        ok, reason = readiness(self.backend.opts.DATABASE)
        if not ok:
            logger.error("cannot start: %s", reason)
        return ok

    def run(self):
        if not self._check_database():
            return 1
        if self.register:
            from offload import registry

            registry.register(self.name, role=self.role, release=self.release,
                              db=self.backend.opts.DATABASE, pid=os.getpid())
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w)
        logger.info("offload server %s (role %s, release %s): %d process(es) x %d threads, "
                    "queues %s", self.name, self.role, self.release, self.processes,
                    self.threads, ",".join(self.queues) or "(every queue)")
        self._maintain(force=True)
        for _ in range(self.processes):
            self._spawn()
        sent = 0
        kill_at = None
        while self.children or (self._pending_spawns and not sent):
            due = [t for t in self._pending_spawns if t <= time.monotonic()]
            if due and not sent:
                self._pending_spawns = [t for t in self._pending_spawns if t > time.monotonic()]
                for _ in due:
                    self._spawn()
            ready = wait([p.sentinel for p in self.children.values()] + [r], timeout=1.0)
            if r in ready:
                os.read(r, 512)
            if not self.signals and any(c.poll() is not None for c in self.companions):
                logger.error("a companion process exited; stopping the async server too")
                self.signals = 1
            if self.signals > sent:
                sent = self.signals
                for companion in self.companions:
                    if companion.poll() is None:
                        companion.send_signal(signal.SIGTERM if sent == 1 else signal.SIGINT)
                how = signal.SIGTERM if sent == 1 else signal.SIGUSR1
                logger.info("stopping (%s): %s", "graceful" if sent == 1 else "now",
                            "finishing in-flight tasks" if sent == 1 else "handing back tasks")
                for proc in self.children.values():
                    if proc.is_alive():
                        os.kill(proc.pid, how)
                kill_at = time.monotonic() + self.grace + 10
            for worker_id, proc in list(self.children.items()):
                if not proc.is_alive():
                    proc.join()
                    self._reap(worker_id, proc, stopping=sent > 0)
            if kill_at and time.monotonic() > kill_at:
                for proc in self.children.values():
                    logger.error("worker pid %s did not stop in time; killing it", proc.pid)
                    proc.kill()
                kill_at = None
            if not sent and self.children:
                self._maintain()
        for companion in self.companions:
            companion.wait()
        signal.set_wakeup_fd(-1)
        os.close(r)
        os.close(w)
        if self.register:
            from offload import registry

            try:
                registry.set_state(self.name, "stopped", db=self.backend.opts.DATABASE)
            except (DatabaseError, InterfaceError) as exc:
                logger.warning("could not record this server as stopped: %s", exc)
        logger.info("offload server %s stopped", self.name)
        return 0
