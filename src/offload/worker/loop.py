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

from django.db import DatabaseError, InterfaceError, connections
from django.tasks import TaskResultStatus
from django.tasks.signals import task_finished

from offload.exceptions import TaskTimeout
from offload.store.base import now
from offload.worker.runner import Runner, error_entry

logger = logging.getLogger("offload.worker")

#: Exit status of a process that must be replaced (a task overran its timeout).
EXIT_REPLACE = 75
_FINAL = {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}
_DB_ERRORS = (DatabaseError, InterfaceError)


class Loop:
    def __init__(self, backend, *, queues, threads, worker_id, grace=30.0, burst=False):
        self.backend = backend
        self.store = backend.store
        self.opts = backend.opts
        self.queues = sorted(queues)
        self.threads = threads
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
        self.parent = os.getppid()

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
            claim = None
            free = self.threads - len(self.inflight) + len(done)
            if not stopping and free > 0:
                if self.store.engine == "sqlite":
                    current = self._db("data_version")
                    if current != version:
                        version, self.maybe_more = current, True
                if self.maybe_more or mono - last_claim >= self.opts.POLL_SECONDS:
                    last_claim, seen = mono, self.notices
                    claim = {"backend": self.backend.alias, "queues": self.queues, "limit": free,
                             "worker": self.worker_id, "lease": self.opts.LEASE_SECONDS,
                             "now": now()}
            if done or claim:
                cycled = self._db("cycle", [o for o, _ in done], claim)
                if cycled is None:  # database unreachable: keep the outcomes, retry shortly
                    with self.lock:
                        self.done[:0] = done
                    self.wake.wait(0.5)
                    continue
                accepted, claimed = cycled
                self._finished(done, accepted)
                for c in claimed:
                    self.inflight[c.id] = c
                    self.todo.put(c)
                if claim:
                    self.maybe_more = len(claimed) == free or self.notices != seen
                    if claimed:
                        idle = 0.002
                    elif self.burst and not self.inflight and not self.done:
                        break
            if self.stop_mode == "now":
                break
            if stopping:
                live = [i for i in self.inflight if i not in self.abandoned]
                if not live or mono >= self.stop_at:
                    break
                self.wake.wait(max(0.0, min(0.5, self.stop_at - mono)))
                continue
            if claim and self.maybe_more and len(self.inflight) < self.threads:
                continue
            self.wake.wait(self._sleep(idle, mono))
            idle = min(idle * 2, 0.01)
        return self._finish()

    def _sleep(self, idle, mono):
        sleep = idle if self.store.engine == "sqlite" else self.opts.POLL_SECONDS
        with self.lock:
            if self.deadlines:
                sleep = min(sleep, max(0.0, min(d[0] for d in self.deadlines.values()) - mono))
        return sleep

    def _flush(self):
        """Record every reported outcome now (used when stopping and in-process)."""
        with self.lock:
            done, self.done = self.done, []
        if done:
            accepted = self._db("complete", [o for o, _ in done])
            self._finished(done, set() if accepted is None else accepted)

    def _finished(self, done, accepted):
        """Forget recorded tasks and send ``task_finished`` for final outcomes."""
        for outcome, result in done:
            self.inflight.pop(outcome.id, None)
            if outcome.id not in accepted:
                logger.warning(
                    "%s: the outcome %s of task id=%s was not recorded: its lease was lost "
                    "(it expired or the database was unreachable); the task runs again "
                    "elsewhere", self.worker_id, outcome.status, outcome.id)
                continue
            if result is not None and outcome.status in _FINAL:
                object.__setattr__(result, "status", outcome.status)
                object.__setattr__(result, "finished_at", outcome.finished_at)
                if outcome.return_value is not None:
                    object.__setattr__(result, "_return_value", json.loads(outcome.return_value))
                task_finished.send(type(self.backend), task_result=result)

    def _check_timeouts(self):
        mono = time.monotonic()
        with self.lock:
            for task_id, (deadline, claimed, task, result) in list(self.deadlines.items()):
                if mono < deadline:
                    continue
                del self.deadlines[task_id]
                self.abandoned.add(task_id)
                seconds = self.runner.timeout_of(task)
                message = (f"offload.exceptions.TaskTimeout: {claimed.task_path} ran longer "
                           f"than its timeout of {seconds:g}s; its worker process was replaced.\n")
                entry = error_entry("offload.exceptions.TaskTimeout", message)
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
                prepared = self.runner.prepare(claimed)
            except Exception as exc:
                report = (self.runner.failed(claimed, exc, retry=False), None)
            else:
                timeout = self.runner.timeout_of(prepared[0])
                if timeout:
                    with self.lock:
                        self.deadlines[claimed.id] = (
                            time.monotonic() + timeout, claimed, *prepared)
                report = self.runner.run(claimed, prepared)
            with self.lock:
                if claimed.id in self.abandoned:
                    continue
                self.deadlines.pop(claimed.id, None)
                self.done.append(report)
            self.wake.set()

    def _heartbeat(self):
        stop = threading.Event()
        while self.alive and not stop.wait(self.opts.heartbeat):
            ids = list(self.inflight)
            if ids:
                self._db("heartbeat", worker=self.worker_id, ids=ids,
                         lease=self.opts.LEASE_SECONDS, now=now())

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

    # -- in-process use (tests, scripts) ----------------------------------------

    def run_inline(self, max_tasks=None):
        """Run tasks one at a time in this thread until none is runnable; return the count."""
        self.runner.cleanup = False
        count = 0
        while max_tasks is None or count < max_tasks:
            claimed = self.store.claim(backend=self.backend.alias, queues=self.queues, limit=1,
                                       worker=self.worker_id, lease=self.opts.LEASE_SECONDS,
                                       now=now())
            if not claimed:
                break
            self.inflight[claimed[0].id] = claimed[0]
            self.done.append(self.runner.run(claimed[0]))
            self._flush()
            count += 1
        return count
