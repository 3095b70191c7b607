"""One worker process: a claim loop in the main thread feeding task threads.

The loop claims at most as many tasks as it has idle threads (never more, so a task
claimed here never waits behind another one locally: priority order holds), hands
them to the threads, and records their outcomes in one statement per batch. It wakes
on a finished task, on a NOTIFY (PostgreSQL) or a changed ``data_version`` (SQLite),
and otherwise polls every ``POLL_SECONDS``. Example::

    code = Loop(backend, queues=["default"], threads=4, worker_id="host-1").run()
"""

import json
import logging
import os
import queue
import threading
import time
from collections import Counter

from django.db import DatabaseError, InterfaceError, connections
from django.tasks import TaskResultStatus

from offload.exceptions import TaskTimeout
from offload.stats import observe
from offload.store.base import now
from offload.results import error_entry
from offload.worker.runner import Runner, send_finished

logger = logging.getLogger("offload.worker")

#: Exit status of a process that must be replaced (a task overran its timeout).
EXIT_REPLACE = 75
_FINAL = {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}
_DB_ERRORS = (DatabaseError, InterfaceError)


def limits_for(queues, local, cluster):
    """``{queue: (local_max, cluster_max)}`` for the limited queues among ``queues``."""
    names = (set(local) | set(cluster)) & set(queues) if queues else set(local) | set(cluster)
    return {q: (local.get(q), cluster.get(q)) for q in sorted(names)}


class Loop:
    def __init__(self, backend, *, queues, threads, worker_id, grace=30.0, burst=False,
                 reserve=None, queue_limits=None, server="", parent=None):
        self.backend = backend
        self.store = backend.store
        self.opts = backend.opts
        self.queues = sorted(queues)
        self.threads = threads
        #: (slots, min_priority): slots that only tasks of at least that priority may use.
        self.reserve = reserve or (0, 100)
        if self.reserve[0] >= threads:
            raise ValueError(f"reserve of {self.reserve[0]} slots needs more than {threads} threads")
        #: queue -> (limit on this server or None, limit across the cluster or None)
        self.limited = limits_for(self.queues, queue_limits or {}, self.opts.QUEUE_LIMITS)
        self.slot_of = {}  # task id -> "reserved" | "general"
        #: The registered server this process belongs to: the release fence.
        self.server = server
        self.worker_id = worker_id
        self.grace = grace
        self.burst = burst
        self.runner = Runner(backend, worker_id)
        self.wake = threading.Event()
        self.lock = threading.Lock()  # guards done, deadlines, abandoned
        self.todo = queue.SimpleQueue()
        self.done = []  # (outcome, result) reported by task threads
        self.inflight = {}  # id -> Claimed, until its outcome is recorded
        self.deadlines = {}  # id -> (monotonic deadline, claimed, task, result)
        self.abandoned = set()  # ids whose thread overran its timeout
        self.stop_mode = None  # None | "drain" | "now"
        self.stop_at = None
        self.replace = False
        self.maybe_more = True
        self.notices = 0  # NOTIFYs received (PostgreSQL)
        self.alive = True
        #: The supervisor's pid, as it gave it: a worker started just as its supervisor
        #: died has already been adopted when it looks (os.getppid() would be the adopter).
        self.parent = parent or os.getppid()

    # -- control --------------------------------------------------------------

    def request_stop(self, mode="drain"):
        """Safe to call from a signal handler: only sets fields, wakes via a thread."""
        if mode == "now" or self.stop_mode is None:
            self.stop_mode = mode
        if self.stop_at is None:
            self.stop_at = time.monotonic() + self.grace
        threading.Thread(target=self.wake.set, daemon=True).start()

    def _db(self, what, *args, **kwargs):
        """Call a store method; on a database error log it, drop the connection, return None."""
        try:
            return getattr(self.store, what)(*args, **kwargs)
        except _DB_ERRORS as exc:
            logger.warning("%s: database error in %s: %s", self.worker_id, what, exc)
            connections[self.store.db_alias].close()
            return None

    # -- the loop --------------------------------------------------------------

    def run(self):
        if self.store.engine == "sqlite":
            self.store.prepare()
        for i in range(self.threads):
            threading.Thread(target=self._work, name=f"offload-task-{i}", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="offload-heartbeat", daemon=True).start()
        if self.store.engine == "postgres":
            threading.Thread(target=self._listen, name="offload-listen", daemon=True).start()
        version = None
        idle = 0.002
        last_claim = 0.0
        logger.info("%s: taking queues %s with %d threads", self.worker_id,
                    ",".join(self.queues) or "(every queue)", self.threads)
        while True:
            self.wake.clear()
            if self.stop_mode is None and os.getppid() != self.parent:
                logger.warning("%s: supervisor is gone; stopping", self.worker_id)
                self.request_stop("drain")
            self._check_timeouts()
            with self.lock:
                done, self.done = self.done, []
            mono = time.monotonic()
            stopping = self.stop_mode or self.replace
            claiming = False
            if not stopping and any(self._free(done)):
                if self.store.engine == "sqlite":
                    current = self._db("data_version")
                    if current != version:
                        version, self.maybe_more = current, True
                # Claim when more work is likely (the last claim filled every free
                # slot, a NOTIFY/data_version change, a retry just recorded), when the
                # poll is due, or — in burst mode — to see whether anything is left.
                if (self.maybe_more or mono - last_claim >= self.opts.POLL_SECONDS
                        or (self.burst and not self.inflight)):
                    last_claim, seen, claiming = mono, self.notices, True
            failed = False
            if done or claiming:
                got = self._round(done, claiming)
                if got is None:  # database error: keep the outcomes, retry shortly
                    with self.lock:
                        self.done[:0] = done
                    failed = True
                elif claiming:
                    full, count = got
                    self.maybe_more = full or self.notices != seen
                    if count:
                        idle = 0.002
                    elif (self.burst and not self.inflight and not self.done
                          and self._db("runnable", backend=self.backend.alias,
                                       queues=self.queues, now=now()) is False):
                        break
            # A stop request is honoured whatever the database does: while it fails,
            # stopping retries the outcomes until the grace ends, then exits; what could
            # not be recorded (or handed back) is left for its lease to expire.
            if self.stop_mode == "now":
                break
            if stopping:
                live = [i for i in self.inflight if i not in self.abandoned]
                if not live or mono >= self.stop_at:
                    break
                self.wake.wait(max(0.0, min(0.5, self.stop_at - mono)))
                continue
            if failed:
                self.wake.wait(0.5)
                continue
            if claiming and self.maybe_more and len(self.inflight) < self.threads:
                continue
            self.wake.wait(self._sleep(idle, mono))
            idle = min(idle * 2, 0.01)
        return self._finish()

    def _free(self, done):
        """Free ``(general, reserved)`` slots, counting ``done`` tasks as free."""
        finishing = {o.id for o, _ in done}
        reserved = sum(1 for i, kind in self.slot_of.items()
                       if kind == "reserved" and i not in finishing)
        general = len(self.inflight) - len(finishing) - reserved
        slots, _ = self.reserve
        return max(0, self.threads - slots - general), max(0, slots - reserved)

    def _round(self, done, claiming):
        """Record ``done`` and, if ``claiming``, fill free slots. One round trip when only
        the general claim runs; ``None`` if the database is unreachable.

        Order: limited queues first (up to their limits, so a busy backlog elsewhere
        cannot starve them), then every other queue in priority order together with
        the outcomes, then reserved slots with tasks at or above their priority.
        """
        general, reserved = self._free(done) if claiming else (0, 0)
        full, count = False, 0
        if general and self.limited:
            finishing = {o.id for o, _ in done}
            running = Counter(c.queue_name for i, c in self.inflight.items() if i not in finishing)
            for name, (local, cluster) in self.limited.items():
                room = min(general, local - running[name] if local is not None else general)
                if room <= 0:
                    continue
                if cluster is None:
                    got = self._db("claim", **self._claim_args(queues=[name], limit=room))
                else:
                    got = self._db("claim_limited", queue=name, cluster_max=cluster,
                                   **self._claim_args(limit=room, ageing=False))
                if got is None:
                    return None
                self._dispatch(got, "general")
                general -= len(got)
                count += len(got)
                full |= len(got) == room
        claim = None
        if general:
            claim = self._claim_args(queues=self.queues, exclude=list(self.limited), limit=general)
        cycled = self._db("cycle", [o for o, _ in done], claim, worker=self.worker_id,
                          observed=self._observe(done))
        if cycled is None:
            return None
        accepted, got = cycled
        self._finished(done, accepted)
        self._dispatch(got, "general")
        count += len(got)
        full |= bool(claim) and len(got) == general
        if reserved:
            got = self._db("claim", **self._claim_args(
                queues=self.queues, exclude=list(self.limited), limit=reserved,
                min_priority=self.reserve[1]))
            if got is None:
                return (full, count)  # the outcomes are recorded; claim again next round
            self._dispatch(got, "reserved")
            count += len(got)
            full |= len(got) == reserved
        return full, count

    def _claim_args(self, *, ageing=True, **claim):
        """The store's claim arguments: every claim of this loop is built here, so none
        forgets the lease, the release fence or ageing. ``claim_limited`` does not age
        (``ageing=False``): a cluster-limited queue runs in plain priority order."""
        args = {"backend": self.backend.alias, "worker": self.worker_id,
                "lease": self.opts.LEASE_SECONDS, "server": self.server, "now": now(), **claim}
        if ageing:
            args.update(age_rate=self.opts.AGE_RATE, age_cap=self.opts.AGE_CAP)
        return args

    def _dispatch(self, claimed, slot):
        for c in claimed:
            self.inflight[c.id] = c
            self.slot_of[c.id] = slot
            self.todo.put(c)

    def _sleep(self, idle, mono):
        sleep = idle if self.store.engine == "sqlite" else self.opts.POLL_SECONDS
        if self.burst and not self.inflight:
            sleep = min(sleep, 0.05)  # look again soon: exit, or take what a limit released
        with self.lock:
            if self.deadlines:
                sleep = min(sleep, max(0.0, min(d[0] for d in self.deadlines.values()) - mono))
        return sleep

    def _flush(self):
        """Record every reported outcome now (used when stopping and in-process)."""
        with self.lock:
            done, self.done = self.done, []
        if done:
            accepted = self._db("complete", [o for o, _ in done], worker=self.worker_id,
                                observed=self._observe(done))
            self._finished(done, set() if accepted is None else accepted)

    def _observe(self, done):
        """What offload_stat counts of ``done``, from what this process holds (see
        offload.stats.observe), so the database need not work it out."""
        return observe(self.backend.alias, [(o, self.inflight[o.id]) for o, _ in done])

    def _finished(self, done, accepted):
        """Forget recorded tasks and send ``task_finished`` for final outcomes."""
        for outcome, result in done:
            self.inflight.pop(outcome.id, None)
            self.slot_of.pop(outcome.id, None)
            if outcome.id not in accepted:
                logger.warning(
                    "%s: the outcome %s of task id=%s was not recorded: its lease was lost "
                    "(it expired or the database was unreachable); the task runs again "
                    "elsewhere", self.worker_id, outcome.status, outcome.id)
                continue
            if outcome.status == TaskResultStatus.READY:  # a retry: runnable again, maybe now
                self.maybe_more = True
            if result is not None and outcome.status in _FINAL:
                object.__setattr__(result, "status", outcome.status)
                object.__setattr__(result, "finished_at", outcome.finished_at)
                if outcome.return_value is not None:
                    object.__setattr__(result, "_return_value", json.loads(outcome.return_value))
                send_finished(type(self.backend), result, outcome.exception)
            outcome.exception = None  # let its frames go

    def _check_timeouts(self):
        mono = time.monotonic()
        with self.lock:
            for task_id, (deadline, claimed, task, result) in list(self.deadlines.items()):
                if mono < deadline:
                    continue
                del self.deadlines[task_id]
                self.abandoned.add(task_id)
                seconds = self.runner.timeout_of(task)
                message = (f"{claimed.task_path} ran longer than its timeout of {seconds:g}s; "
                           "its worker process was replaced.")
                entry = error_entry("offload.exceptions.TaskTimeout",
                                    f"offload.exceptions.TaskTimeout: {message}\n")
                outcome = self.runner.failed(claimed, TaskTimeout(message), task=task,
                                             result=result, entry=entry)
                self.done.append((outcome, result))
                logger.error("%s: task id=%s timed out after %gs; replacing this process",
                             self.worker_id, task_id, seconds)
                self.replace = True
                if self.stop_at is None:
                    self.stop_at = mono + self.grace

    def _finish(self):
        self._flush()
        handed = self._db("hand_back", worker=self.worker_id) or []
        if handed:
            logger.warning("%s: handed back %d unfinished task(s): %s", self.worker_id,
                           len(handed), ",".join(map(str, handed)))
        self.alive = False
        for _ in range(self.threads):
            self.todo.put(None)
        return EXIT_REPLACE if self.replace and self.stop_mode is None else 0

    # -- threads ---------------------------------------------------------------

    def _work(self):
        while (claimed := self.todo.get()) is not None:
            try:
                report = self._execute(claimed)
            except BaseException as exc:  # noqa: B036 — nothing a row holds may end this thread
                logger.exception("%s: task id=%s could not be run or failed; recording it as "
                                 "FAILED", self.worker_id, claimed.id)
                report = (self.runner.broken(claimed, exc), None)
            with self.lock:
                self.deadlines.pop(claimed.id, None)
                if claimed.id in self.abandoned:
                    continue
                self.done.append(report)
            self.wake.set()

    def _execute(self, claimed):
        try:
            prepared = self.runner.prepare(claimed)
        except Exception as exc:  # unknown path, corrupt payload: a permanent failure
            return self.runner.failed(claimed, exc, retry=False), None
        timeout = self.runner.timeout_of(prepared[0])
        if timeout:
            with self.lock:
                self.deadlines[claimed.id] = (time.monotonic() + timeout, claimed, *prepared)
        return self.runner.run(claimed, prepared)

    def _heartbeat(self):
        stop = threading.Event()
        while self.alive and not stop.wait(self.opts.heartbeat):
            ids = list(self.inflight)
            if ids:
                try:
                    self._db("heartbeat", worker=self.worker_id, ids=ids,
                             lease=self.opts.LEASE_SECONDS, now=now())
                except Exception:  # a bug must not silently end the leases' renewal
                    logger.exception("%s: heartbeat failed", self.worker_id)

    def _notice(self):
        self.notices += 1
        self.maybe_more = True
        self.wake.set()

    def _listen(self):
        import psycopg

        channel = self.store.channel(self.backend.alias)
        while self.alive:
            try:
                with psycopg.connect(**self.store.listen_params(), autocommit=True) as conn:
                    conn.execute(f'LISTEN "{channel}"')
                    self._notice()  # anything enqueued while we were not listening
                    while self.alive:
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._notice()
            except psycopg.Error as exc:
                logger.warning("%s: LISTEN connection lost (%s); polling until it is back",
                               self.worker_id, exc)
                time.sleep(1.0)
            except Exception:
                logger.exception("%s: LISTEN failed; polling until it is back", self.worker_id)
                time.sleep(1.0)

    # -- in-process use (tests, scripts) ----------------------------------------

    def run_inline(self, max_tasks=None):
        """Run tasks one at a time in this thread until none is runnable; return the count."""
        self.runner.cleanup = False
        count = 0
        while max_tasks is None or count < max_tasks:
            claimed = self.store.claim(**self._claim_args(queues=self.queues, limit=1))
            if not claimed:
                break
            self.inflight[claimed[0].id] = claimed[0]
            self.done.append(self.runner.run(claimed[0]))
            self._flush()
            count += 1
        return count
