"""The async server's supervisor: starts worker processes, replaces the ones that die,
runs maintenance (rescue expired leases, prune old results) and stops gracefully.

Signals: the first SIGTERM or SIGINT asks every worker to stop claiming and finish
its in-flight tasks within ``grace`` seconds, handing back the rest; a second one
makes them hand back at once. Workers ignore SIGINT themselves, so a Ctrl-C on the
terminal (sent to the whole process group) counts once. Example::

    Supervisor("default", queues=["default"], processes=2, threads=4).run()

Workers are started by ``offload.worker.child`` (never by re-running the user's main
module) and say when they are ready. One that exits before that failed to start: it
is restarted with a growing delay, and after ``START_ATTEMPTS`` such exits in a row
the server stops with status 1 instead of restarting it forever. One that exits after
it was ready (killed, crashed, replaced after a timeout) is replaced at once.
"""

import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import wait

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connections
from django.tasks import task_backends

from offload.clock import now
from offload.exceptions import WorkerLost
from offload.roles import current_release, server_name
from offload.spec import ASYNC_CONCURRENCY
from offload.stats import KEEP_MINUTES
from offload.worker import child, signals
from offload.worker.loop import EXIT_REPLACE
from offload.worker.runner import send_finished

logger = logging.getLogger("offload.server")

_DB_ERRORS = (DatabaseError, InterfaceError)
#: Worker exits before ready, in a row, after which the server gives up (status 1).
START_ATTEMPTS = 5


def _warn_short_connections():
    """Django's default ``CONN_MAX_AGE = 0`` closes a task's connections at its end, as
    a request's: every task that touches the database then opens a new one, which sets
    the pace of short database tasks (docs/deployment.md). Say so once, at start."""
    short = sorted(alias for alias in settings.DATABASES
                   if not settings.DATABASES[alias].get("CONN_MAX_AGE"))
    if short:
        logger.warning(
            "DATABASES %s: CONN_MAX_AGE is 0, so every task that uses the database opens a new "
            "connection (tasks that write one row drained 4x slower on PostgreSQL in "
            "bench/atomic.py); set CONN_MAX_AGE = 60 and CONN_HEALTH_CHECKS = True for the "
            "async role (docs/deployment.md)", ", ".join(short))


@dataclass(eq=False)
class _Worker:
    """A worker process as the supervisor sees it."""

    id: str
    popen: subprocess.Popen
    fd: int  # reads b"1" once ready, then end-of-file at exit
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    eof: bool = False

    def read(self):
        try:
            data = os.read(self.fd, 16)
        except BlockingIOError:
            return
        if data:
            self.ready = True
        else:
            self.eof = True

    def alive(self):
        if self.eof and self.popen.returncode is None:
            try:
                self.popen.wait(5)  # it closed its end: it is exiting
            except subprocess.TimeoutExpired:
                pass
        return self.popen.poll() is None


class Supervisor:
    def __init__(self, alias="default", *, queues=None, processes=None, threads=4,
                 grace=30.0, burst=False, reserve=None, queue_limits=None, role="async",
                 release=None, register=True, companions=(), async_concurrency=ASYNC_CONCURRENCY):
        self.alias = alias
        self.backend = task_backends[alias]
        self.queues = sorted(queues or self.backend.queues)
        self.processes = processes or os.cpu_count() or 1
        self.threads = threads
        self.async_concurrency = async_concurrency
        self.grace = grace
        self.burst = burst
        self.reserve = reserve
        self.queue_limits = queue_limits or {}
        self.children = {}  # worker_id -> _Worker
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
        self._settled_at = None  # the last look for workflow steps left BLOCKED
        # Imported here, not at module level: the scheduler needs the models.
        from offload.worker.scheduler import Scheduler

        self.scheduler = Scheduler(self.backend)
        self._start_failures = 0  # workers in a row that exited before they were ready
        self._pending_spawns = []  # monotonic times of delayed restarts
        self.gave_up = False  # workers kept failing to start: stop, exit 1

    def _spawn(self):
        self._seq += 1
        worker_id = f"{self.name}-{self._seq}-{secrets.token_hex(2)}"
        popen, fd = child.spawn({
            "alias": self.alias, "queues": self.queues, "threads": self.threads,
            "async_concurrency": self.async_concurrency,
            "worker_id": worker_id, "grace": self.grace, "burst": self.burst,
            "reserve": list(self.reserve) if self.reserve else None,
            "queue_limits": self.queue_limits, "server": self.name if self.register else "",
            "parent": os.getpid(),
        })
        self.children[worker_id] = _Worker(worker_id, popen, fd)

    def _on_signal(self, signum, frame):
        self.signals += 1

    # -- maintenance -------------------------------------------------------------

    def _maintain(self, force=False, draining=False):
        """Every tick: heartbeat the registry, enqueue due periodic tasks, stop ageing
        tasks at their cap, fail tasks asked to stop that are READY again, bring back
        tasks set aside for concurrency keys that have room; every 30 s: release workflow
        steps whose dependencies finished without the bookkeeping; every half
        lease: rescue expired leases; every 10 minutes: fold old statistics minutes into
        their totals and delete idle concurrency-key lock rows; hourly: prune old results.
        While ``draining``, only the heartbeat (a server with a long grace is alive).

        Each step stands alone: a database error skips the rest of the round (the
        connection is dropped and reopened next time); any other error is logged with
        its traceback and the other steps still run. Nothing here stops the server."""
        steps = (self._registry_tick,) if draining else (
            self._registry_tick, self._rescue_expired, self._tick_schedules, self._cap_aged,
            self._fold, self._prune, self._cancel_stopped, self._unpark_waiting,
            self._settle_blocked)
        for step in steps:
            try:
                step(force)
            except _DB_ERRORS as exc:
                logger.warning("maintenance skipped, database error: %s", exc)
                connections[self.backend.store.db_alias].close()
                return
            except Exception:
                logger.exception("maintenance step %s failed; the server keeps running",
                                 step.__name__.strip("_"))

    def _registry_tick(self, force):
        if not self.register:
            return
        from offload import registry

        db = self._registry_db()
        state = registry.beat(self.name, db=db, draining=self.signals > 0)
        if state is None:  # the row is gone (deleted by hand, database restored)
            self._register()
        elif state == "retiring" and not self.signals:
            logger.warning("this server (%s, release %s) was retired: stopping claims, "
                           "finishing in-flight tasks, exiting", self.name, self.release)
            self.signals = 1  # the same path as a first SIGTERM
        if self.signals:
            return  # draining: only heartbeats, so nobody takes this server for dead
        dead = registry.mark_dead(db=db, silent_for=max(30.0, 2 * self.backend.opts.LEASE_SECONDS))
        if dead:
            logger.warning("servers silent for too long, marked dead: %s", ", ".join(dead))
        if getattr(settings, "OFFLOAD_AUTO_RETIRE", False) and self.role != "web":
            retired = registry.retire_older_releases(self.name, db=db)
            if retired:
                logger.info("release %s is up: retiring %s", self.release, ", ".join(retired))

    def _rescue_expired(self, force):
        mono, opts = time.monotonic(), self.backend.opts
        if force or self._rescued_at is None or mono - self._rescued_at >= opts.LEASE_SECONDS / 2:
            self._rescued_at = mono
            rows = self.backend.store.rescue(backend=self.alias, now=now(),
                                             max_rescues=opts.MAX_RESCUES)
            if rows:
                logger.warning("rescued %d task(s) whose lease expired: %s", len(rows),
                               ",".join(str(r[0]) for r in rows))
                self._lost(rows)

    def _settle_blocked(self, force):
        """Every 30 s: the net under the workflow bookkeeping (store.settle_blocked)."""
        mono = time.monotonic()
        if force or self._settled_at is None or mono - self._settled_at >= 30:
            self._settled_at = mono
            released, failed = self.backend.store.settle_blocked(backend=self.alias, now=now())
            if released or failed:
                logger.warning("workflows: %d step(s) released and %d failed whose dependencies "
                               "finished without the bookkeeping (a worker of an older release?)",
                               released, failed)

    def _tick_schedules(self, force):
        self.scheduler.tick(now())
        signals.emit("schedules-ticked")

    def _cap_aged(self, force):
        opts = self.backend.opts
        if opts.AGE_RATE:
            self.backend.store.cap_aged(backend=self.alias, now=now(), age_rate=opts.AGE_RATE,
                                        age_cap=opts.AGE_CAP)

    def _fold(self, force):
        if self._folded_at is None or time.monotonic() - self._folded_at >= 600:
            self._folded_at = time.monotonic()
            self.backend.store.fold_stats(backend=self.alias,
                                          before=now() - timedelta(minutes=KEEP_MINUTES))
            self.backend.store.forget_keys(backend=self.alias)
            self.backend.store.forget_buckets(backend=self.alias, now=now())

    def _prune(self, force):
        retain = self.backend.opts.RETAIN
        if retain and (self._pruned_at is None or time.monotonic() - self._pruned_at >= 3600):
            self._pruned_at = time.monotonic()
            deleted = self.backend.store.prune(backend=self.alias,
                                               before=now() - timedelta(seconds=retain))
            if deleted:
                logger.info("pruned %d finished task(s)", deleted)

    def _cancel_stopped(self, force):
        cancelled = self.backend.store.cancel_stopped(backend=self.alias, now=now())
        if cancelled:
            logger.info("cancelled %d task(s) asked to stop that were ready to run again: %s",
                        len(cancelled), ",".join(map(str, cancelled)))

    def _unpark_waiting(self, force):
        """The net under a worker that died between recording a keyed task's outcome and
        unparking its key: tasks set aside for keys that have room go back."""
        self.backend.store.unpark_waiting(backend=self.alias)

    def _lost(self, rows):
        """``task_finished`` for the rescued tasks that were FAILED (MAX_RESCUES), sent
        while a WorkerLost is being handled, as the worker does for its failures."""
        for task_id, status in rows:
            if status != "FAILED":
                continue
            try:
                result = self.backend.get_result(task_id)
            except Exception:  # a row no Task can be built for: nothing to send
                logger.exception("task id=%s failed with WorkerLost; no task_finished sent", task_id)
                continue
            send_finished(type(self.backend), result, WorkerLost(
                f"the worker running task id={task_id} died or froze more than "
                f"{self.backend.opts.MAX_RESCUES} times (MAX_RESCUES)"))

    # -- workers -------------------------------------------------------------------

    def _take_back(self, worker_id):
        """A dead worker's tasks need not wait for their lease to expire: end what it
        left running in the database, then rescue its tasks."""
        store = self.backend.store
        try:
            store.end_sessions(worker_id)
        except _DB_ERRORS as exc:  # e.g. no right to end another role's sessions
            logger.warning("could not end the sessions of %s (%s); a claim it had in flight "
                           "waits for its lease", worker_id, exc)
            connections[store.db_alias].close()
        try:
            rows = store.rescue(backend=self.alias, now=now(),
                                max_rescues=self.backend.opts.MAX_RESCUES, worker=worker_id)
        except _DB_ERRORS as exc:
            logger.warning("could not take back tasks of %s now (%s); their leases will "
                           "expire", worker_id, exc)
            connections[store.db_alias].close()
            return []
        try:
            self._lost(rows)
        except _DB_ERRORS as exc:
            logger.warning("could not send task_finished for lost tasks: %s", exc)
            connections[store.db_alias].close()
        return rows

    def _reap(self, worker, stopping):
        worker.read()  # a ready byte it wrote just before dying may be unread
        os.close(worker.fd)
        del self.children[worker.id]
        code = worker.popen.returncode
        if code != 0:
            rows = self._take_back(worker.id)
            logger.log(logging.INFO if code == EXIT_REPLACE else logging.ERROR,
                       "worker %s exited with %s; %d task(s) taken back", worker.id, code,
                       len(rows))
        if stopping or (self.burst and code == 0):
            return
        if worker.ready or code <= 0 or code == EXIT_REPLACE:
            # It was running (or was killed by a signal: not a fault of its start).
            if worker.ready:
                self._start_failures = 0
            self._spawn()
            return
        self._start_failures += 1
        if self._start_failures >= START_ATTEMPTS:
            logger.error(
                "worker processes exited before they were ready %d times in a row (last "
                "status %s): giving up. The cause is in the output above: settings or code "
                "that fail to import in a fresh interpreter, or a flag or profile the worker "
                "rejects. Stopping this server (exit status 1).", self._start_failures, code)
            self.gave_up = True
            self.signals = max(self.signals, 1)
            return
        delay = min(30.0, 0.5 * 2 ** (self._start_failures - 1))
        logger.error("worker %s exited with %s %.1fs after start, before it was ready; next "
                     "start in %.1fs", worker.id, code, time.monotonic() - worker.started, delay)
        self._pending_spawns.append(time.monotonic() + delay)

    # -- the server ------------------------------------------------------------------

    def _check_database(self):
        """The database answers and every migration is applied; else one line, naming
        the problem and the fix (``offload.dbcheck``), and False."""
        from offload import dbcheck

        problem = dbcheck.problem(self.backend.opts.DATABASE, migrations=dbcheck.ALL)
        if problem:
            logger.error("cannot start: %s", problem)
        return problem is None

    def _registry_db(self):
        """Where this server registers: its backend's database (``Deployment.registry``)."""
        from offload.deployment import Deployment

        return Deployment.current().registry(self.alias)

    def _register(self):
        from offload import registry

        registry.register(self.name, role=self.role, release=self.release,
                          db=self._registry_db(), pid=os.getpid())

    def run(self):
        """Serve until stopped; 0 after a stop, 1 if the server could not start or its
        workers kept failing to start. Whatever happens, no worker outlives it."""
        try:
            return self._run()
        finally:
            self._kill_leftovers()

    def _run(self):
        if not self._check_database():
            return 1
        if self.register:
            self._register()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w)
        try:
            logger.info("offload server %s (role %s, release %s): %d process(es) x %d threads, "
                        "queues %s", self.name, self.role, self.release, self.processes,
                        self.threads, ",".join(self.queues) or "(every queue)")
            _warn_short_connections()
            self._maintain(force=True)
            for _ in range(self.processes):
                self._spawn()
            self._serve(r)
            for companion in self.companions:
                companion.wait()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(r)
            os.close(w)
        if self.register:
            from offload import registry

            try:
                registry.set_state(self.name, "stopped", db=self._registry_db())
            except _DB_ERRORS as exc:
                logger.warning("could not record this server as stopped: %s", exc)
        logger.info("offload server %s stopped", self.name)
        return 1 if self.gave_up else 0

    def _serve(self, wakeup):
        sent = 0
        kill_at = None
        while self.children or (self._pending_spawns and not sent):
            due = [t for t in self._pending_spawns if t <= time.monotonic()]
            if due and not sent:
                self._pending_spawns = [t for t in self._pending_spawns if t > time.monotonic()]
                for _ in due:
                    self._spawn()
            fds = [c.fd for c in self.children.values() if not c.eof]
            ready = wait(fds + [wakeup], timeout=1.0)
            if wakeup in ready:
                os.read(wakeup, 512)
            for worker in self.children.values():
                if worker.fd in ready:
                    worker.read()
            if not self.signals and any(c.poll() is not None for c in self.companions):
                logger.error("a companion process exited; stopping the async server too")
                self.signals = 1
            if self.signals > sent:
                sent = self.signals
                self._stop_children(now=sent > 1)
                kill_at = time.monotonic() + self.grace + 10
            for worker in list(self.children.values()):
                if not worker.alive():
                    self._reap(worker, stopping=sent > 0)
            if kill_at and time.monotonic() > kill_at:
                for worker in self.children.values():
                    logger.error("worker pid %s did not stop in time; killing it", worker.popen.pid)
                    worker.popen.kill()
                kill_at = None
            self._maintain(draining=sent > 0)

    def _stop_children(self, now):
        for companion in self.companions:
            if companion.poll() is None:
                companion.send_signal(signal.SIGINT if now else signal.SIGTERM)
        logger.info("stopping (%s): %s", "now" if now else "graceful",
                    "handing back tasks" if now else "finishing in-flight tasks")
        signals.emit("stopping-now" if now else "stopping")
        for worker in self.children.values():
            if worker.popen.poll() is None:
                worker.popen.send_signal(signal.SIGUSR1 if now else signal.SIGTERM)

    def _kill_leftovers(self):
        """If ``run`` is left by an error, stop what it started: workers (SIGTERM, then
        SIGKILL after the grace) and companions."""
        if not self.children and all(c.poll() is not None for c in self.companions):
            return
        logger.error("the server is stopping before its processes did; stopping them")
        for worker in self.children.values():
            if worker.popen.poll() is None:
                worker.popen.terminate()
        for companion in self.companions:
            if companion.poll() is None:
                companion.terminate()
        deadline = time.monotonic() + self.grace + 10
        for proc in [w.popen for w in self.children.values()] + self.companions:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for worker in self.children.values():
            os.close(worker.fd)
        self.children.clear()
