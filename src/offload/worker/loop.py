"""One worker process: a claim loop in the main thread feeding an executor.

Each round is *plan → claim → dispatch → record*: the planner (``worker/planner.py``)
says which claims the free slots allow, the loop makes them (recording the outcomes
reported since the last round in the same statement), hands what it got to an
executor (``worker/executor.py``: coroutine tasks to the asyncio executor, the others
to the threads), and returns how long to wait before the next round. It claims what its
free slots can start, plus a small window of short tasks that wait for a thread
(``planner.window``) highest priority first, so a task claimed later with a higher
priority still starts first. It wakes on
a finished task, on news from the store's wake-up source (NOTIFY on PostgreSQL, a
changed ``data_version`` on SQLite: ``store/wakeups.py``), and otherwise polls every
``POLL_SECONDS``. Example::

    code = Loop(backend, queues=["default"], threads=4, worker_id="host-1").run()
"""

import asyncio
import enum
import inspect
import json
import logging
import os
import threading
import time
from collections import Counter

from django.db import DatabaseError, InterfaceError, connections
from django.tasks import TaskResultStatus

from offload import cancellation
from offload.clock import now
from offload.exceptions import Cancelled, TaskTimeout
from offload.results import error_entry, import_task
from offload.spec import ASYNC_CONCURRENCY
from offload.worker import planner, signals
from offload.worker.executor import AsyncExecutor, ThreadExecutor
from offload.worker.planner import ASYNC, GENERAL, RESERVED, limits_for
from offload.worker.runner import Runner, send_finished, tidy_connections

logger = logging.getLogger("offload.worker")

#: Exit status of a process that must be replaced (a task overran its timeout).
EXIT_REPLACE = 75
#: While it runs tasks, a process looks every this many seconds for ones asked to stop
#: (``offload.cancel``); a PostgreSQL NOTIFY makes it look at once.
STOP_POLL = 1.0
#: How often the sums of outcomes atomic tasks wrote are added to offload_series.
SUMS_EVERY = 1.0
#: Rate limits: how long after claiming a rate-limited task the loop wakes for the next
#: turn given to one (an idle loop otherwise claims only when told or at its poll).
RATED_FOR = 60.0
_FINAL = {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}
_DB_ERRORS = (DatabaseError, InterfaceError)

__all__ = ["EXIT_REPLACE", "Lifecycle", "Loop"]


def _to_write(done):
    """The outcomes of ``done`` the store must write: all but those an atomic task's
    own transaction wrote (``Outcome.recorded``)."""
    return [o for o, _ in done if not o.recorded]


def _timeout_entry(message):
    return error_entry("offload.exceptions.TaskTimeout", f"offload.exceptions.TaskTimeout: {message}\n")


class Lifecycle(enum.Enum):
    """Where a worker process is in its life. Only RUNNING claims; the others finish
    (DRAINING, REPLACING: until nothing runs or the grace ends) or stop at once."""

    RUNNING = "running"
    #: Asked to stop (SIGTERM, the supervisor gone): finish in-flight tasks, exit 0.
    DRAINING = "draining"
    #: A task overran its timeout: finish the others, exit EXIT_REPLACE.
    REPLACING = "replacing"
    #: Asked to stop now (the grace is over): record what is done, hand back the rest.
    STOPPING_NOW = "stopping now"

    def next(self, event):
        """The state after ``event`` ("drain", "now" or "replace"): stopping now wins,
        a requested drain outranks a replacement (the process is not replaced, it stops)."""
        if event == "now" or self is Lifecycle.STOPPING_NOW:
            return Lifecycle.STOPPING_NOW
        if event == "drain":
            return Lifecycle.DRAINING
        return Lifecycle.REPLACING if self is Lifecycle.RUNNING else self


class _Pace:
    """When the loop claims: when more work is likely (the last claim filled every free
    slot, news from the wake-up source, a retry just recorded), when the poll is due, or
    in burst mode to see whether anything is left."""

    def __init__(self):
        self.maybe_more = True
        self.last_claim = 0.0
        self.idle = 0.002  # SQLite's idle poll: 2 ms, doubling up to 10 ms
        self.async_share = 0.0  # moving share of coroutine tasks among those claimed

    def due(self, mono, poll, burst_idle):
        return self.maybe_more or mono - self.last_claim >= poll or burst_idle

    def claimed(self, count):
        if count:
            self.idle = 0.002

    def slept(self):
        self.idle = min(self.idle * 2, 0.01)

    def dispatched(self, coroutines, count):
        if count:
            self.async_share += 0.5 * (coroutines / count - self.async_share)


class Loop:
    def __init__(self, backend, *, queues, threads, worker_id, grace=30.0, burst=False,
                 reserve=None, queue_limits=None, server="", parent=None,
                 async_concurrency=ASYNC_CONCURRENCY):
        self.backend = backend
        self.store = backend.store
        self.opts = backend.opts
        self.queues = sorted(queues)
        self.threads = threads
        reserve = reserve or (0, 100)
        if reserve[0] >= threads:
            raise ValueError(f"reserve of {reserve[0]} slots needs more than {threads} threads")
        self.rules = planner.Rules(queues=tuple(self.queues), reserve=reserve,
                                   limited=limits_for(self.queues, queue_limits or {},
                                                      self.opts.QUEUE_LIMITS))
        #: The registered server this process belongs to: the release fence.
        self.server = server
        self.worker_id = worker_id
        self.grace = grace
        self.burst = burst
        self.runner = Runner(backend, worker_id)
        # Reserved slots have threads of their own: a task waiting for a general thread
        # (the claim window) must never take one.
        self.executor = ThreadExecutor(threads - reserve[0], execute=self._execute,
                                       finished=self._report)
        self.reserved = reserve[0] and ThreadExecutor(
            reserve[0], execute=self._execute, finished=self._report, name="offload-reserved")
        #: Coroutine tasks' executor; None (``async_concurrency=0``): they run on the
        #: threads, each on its own event loop (Django's ``Task.call``).
        self.coroutines = async_concurrency and AsyncExecutor(
            async_concurrency, execute=self._aexecute, finished=self._report,
            tidy=tidy_connections)
        self._is_coroutine = {}  # task path -> whether it is an async def (learned)
        self._prepared = {}  # id -> (task, result) of a coroutine task the loop announced
        self.wakeups = self.store.wakeups(backend.alias, worker_id, listen=self.opts.LISTEN)
        self.pace = _Pace()
        self.wake = threading.Event()
        # Shared with the executor's threads, under the lock: done, deadlines, abandoned.
        # The loop's own (main thread only): inflight, slot_of, pace, lifecycle's deadline.
        self.lock = threading.Lock()
        self.done = []  # (outcome, result) reported by task threads
        self.deadlines = {}  # id -> (monotonic deadline, claimed, task, result)
        self.prepared_of = {}  # id -> (task, result) of a task that started, until reported
        self.abandoned = set()  # ids whose thread overran its timeout
        self.inflight = {}  # id -> Claimed, until its outcome is recorded
        self.slot_of = {}  # id -> GENERAL | RESERVED | ASYNC
        self.busy = Counter()  # slot kind -> how many of inflight
        self.cancelling = set()  # ids of coroutines cancelled (their timeout, a stop request)
        self.stopping = {}  # id -> (Cancelled, entry): tasks asked to stop (offload.cancel)
        self.freed_keys = set()  # concurrency keys of tasks just recorded: unpark them
        self.unsummed = []  # outcomes atomic tasks wrote, whose sums are still to add
        self.summed_at = 0.0
        self._stops_looked = 0.0  # monotonic time of the last look for stop requests
        #: Rate limits: until when (monotonic) to look for the next turn before every
        #: sleep (this process lately claimed a rate-limited task or saw a turn), and that
        #: turn.
        self.rated_until = 0.0
        self.turn_at = None
        self.claimed_now = None  # the time of the last claim (its ``now``)
        self.turns_looked = 0.0
        self.lifecycle = Lifecycle.RUNNING
        self.stop_at = None  # monotonic end of the grace, once not RUNNING
        self.alive = True
        #: The supervisor's pid, as it gave it: a worker started just as its supervisor
        #: died has already been adopted when it looks (os.getppid() would be the adopter).
        self.parent = parent or os.getppid()

    # -- control --------------------------------------------------------------

    def request_stop(self, mode="drain"):
        """Safe to call from a signal handler: only sets fields, wakes via a thread."""
        self._become(mode, time.monotonic())
        threading.Thread(target=self.wake.set, daemon=True).start()

    def _become(self, event, mono):
        self.lifecycle = self.lifecycle.next(event)
        if self.stop_at is None:
            self.stop_at = mono + self.grace

    def _db(self, what, *args, **kwargs):
        """Call a store method; on a database error log it, drop the connection, return None."""
        try:
            return getattr(self.store, what)(*args, **kwargs)
        except _DB_ERRORS as exc:
            logger.warning("%s: database error in %s: %s", self.worker_id, what, exc)
            signals.emit("db-error")
            connections[self.store.db_alias].close()
            return None

    # -- the loop --------------------------------------------------------------

    def run(self):
        self.wakeups.start(news=self._news, beat=self._beat, interval=self.opts.heartbeat)
        for executor in self._executors():
            executor.start()
        if not self.wakeups.HEARTBEAT:  # else the wake-up source's thread beats, on its connection
            threading.Thread(target=self._heartbeat, name="offload-heartbeat", daemon=True).start()
        logger.info("%s: taking queues %s with %d threads and %s", self.worker_id,
                    ",".join(self.queues) or "(every queue)", self.threads,
                    f"up to {self.coroutines.slots} coroutines at once" if self.coroutines
                    else "coroutines on the threads")
        signals.emit("loop-started")
        while (delay := self.step()) is not None:
            if delay:
                self.wake.wait(delay)
        return self._finish()

    def step(self):
        """One round: record what finished, claim what the free slots allow, and say how
        long to wait for the next round (0: at once) or None to exit."""
        self.wake.clear()
        if self.lifecycle is Lifecycle.RUNNING and os.getppid() != self.parent:
            logger.warning("%s: supervisor is gone; stopping", self.worker_id)
            self.request_stop("drain")
        self._check_timeouts()
        self._check_stops()
        with self.lock:
            done, self.done = self.done, []
        mono = time.monotonic()
        running = self.lifecycle is Lifecycle.RUNNING
        free = self._free(done) if running else (0, 0)
        claiming = any(free) and self._claim_due(mono)
        failed = False
        if done or claiming:
            got = self._round(done, free if claiming else (0, 0))
            self._unpark()
            self._flush_sums(mono)
            if got is None:  # database error: keep the outcomes, retry shortly
                with self.lock:
                    self.done[:0] = done
                failed = True
            elif claiming:
                full, count = got
                self.pace.maybe_more = full or self.wakeups.news_since_claim()
                self.pace.claimed(count)
                if (not count and self.burst and not self.inflight and not self.done
                        and self._db("runnable", backend=self.backend.alias,
                                     queues=self.queues, now=now()) is False):
                    return None
        # A stop request is honoured whatever the database does: while it fails,
        # stopping retries the outcomes until the grace ends, then exits; what could
        # not be recorded (or handed back) is left for its lease to expire.
        if self.lifecycle is Lifecycle.STOPPING_NOW:
            return None
        if not running:
            live = [i for i in self.inflight if i not in self.abandoned]
            if not live or mono >= self.stop_at:
                return None
            return max(0.0, min(0.5, self.stop_at - mono))
        if failed:
            return 0.5
        if claiming and self.pace.maybe_more and any(self._free([])):
            return 0
        delay = self._sleep(mono)
        self.pace.slept()
        return delay

    def _unpark(self):
        """Tasks set aside while their concurrency key was full go back for the keys
        this process just freed, in a transaction of their own (a database error leaves
        them to maintenance's net, ``unpark_waiting``)."""
        if self.freed_keys:
            keys, self.freed_keys = sorted(self.freed_keys), set()
            self._db("unpark", backend=self.backend.alias, keys=keys)

    def _claim_due(self, mono):
        if self.wakeups.look(self._db):
            self.pace.maybe_more = True
        if self.turn_at is not None and mono >= self.turn_at:
            self.pace.maybe_more = True  # a rate-limited task's turn came
        if self.pace.due(mono, self.opts.POLL_SECONDS, self.burst and not self.inflight):
            self.pace.last_claim = mono
            self.turn_at = None
            self.wakeups.claiming()
            return True
        return False

    def _news(self):
        """The wake-up source's news (from its thread): claim in the next round."""
        self.pace.maybe_more = True
        self.wake.set()

    def _free(self, done):
        """Free ``(general, reserved)`` slots, counting ``done`` tasks as free; the
        general claim's size includes the claim window and, when coroutine tasks are
        claimed lately, free coroutine slots (see the planner)."""
        busy = self.busy.copy()
        for outcome, _ in done:
            if (kind := self.slot_of.get(outcome.id)) is not None:
                busy[kind] -= 1
        general_threads = self.threads - self.rules.reserve[0]
        general, reserved = planner.free_slots(
            self.threads, self.rules.reserve, busy_general=busy[GENERAL],
            busy_reserved=busy[RESERVED],
            window=planner.window(general_threads, self.executor.mean_seconds))
        if self.coroutines:
            general = planner.with_coroutines(
                general, free_async=self.coroutines.slots - busy[ASYNC],
                async_share=self.pace.async_share)
        return general, reserved

    def _round(self, done, free):
        """Record ``done`` and make the planner's claims for the ``free`` ``(general,
        reserved)`` slots, in order (``(0, 0)``: only record);
        ``(filled a claim, tasks claimed)``, or None if the database is unreachable
        before the outcomes were recorded. One round trip when only the general claim
        (the ``cycle`` request) runs."""
        general, reserved = free
        running = None
        if general and self.rules.limited:  # only limited queues need the count
            finishing = {o.id for o, _ in done}
            running = Counter(c.queue_name for i, c in self.inflight.items() if i not in finishing)
        left = {GENERAL: general, RESERVED: reserved}
        full, count, recorded = False, 0, False
        for request in planner.plan(self.rules, general=general, reserved=reserved, running=running):
            limit = min(request.limit, left[request.pool])
            if request.kind == "cycle":
                claim = self._claim_args(**request.store_args(limit)) if limit else None
                cycled = self._db("cycle", _to_write(done), claim, worker=self.worker_id)
                if cycled is None:
                    return None
                accepted, got = cycled
                self._finished(done, accepted | self._add_sums(done))
                recorded = True
            elif limit <= 0:
                continue
            else:
                got = self._db(request.kind, **self._claim_args(
                    ageing=request.kind == "claim", **request.store_args(limit)))
                if got is None:  # after the cycle the outcomes are recorded: claim next round
                    return (full, count) if recorded else None
            self._dispatch(got, request.pool)
            left[request.pool] -= len(got)
            count += len(got)
            full |= bool(limit) and len(got) == limit
        return full, count

    def _claim_args(self, *, ageing=True, **claim):
        """The store's claim arguments: every claim of this loop is built here, so none
        forgets the lease, the release fence or ageing. ``claim_limited`` does not age
        (``ageing=False``): a cluster-limited queue runs in plain priority order."""
        self.claimed_now = now()
        args = {"backend": self.backend.alias, "worker": self.worker_id,
                "lease": self.opts.LEASE_SECONDS, "server": self.server, "now": self.claimed_now,
                **claim}
        if ageing:
            args.update(age_rate=self.opts.AGE_RATE, age_cap=self.opts.AGE_CAP)
        return args

    def _dispatch(self, claimed, slot):
        """Hand claimed tasks to their executor: coroutine tasks to the asyncio one
        (when there is one), the others to the threads."""
        coroutines = 0
        for c in claimed:
            self.inflight[c.id] = c
            if c.rate_key is not None:
                self.rated_until = time.monotonic() + RATED_FOR
            if self.coroutines and self._coroutine(c.task_path):
                kind, executor = ASYNC, self.coroutines
                coroutines += 1
            else:
                kind, executor = slot, self.reserved if slot == RESERVED else self.executor
            self.slot_of[c.id] = kind
            self.busy[kind] += 1
            if kind != ASYNC:
                executor.submit(c)
                continue
            # A coroutine task is prepared and announced (task_started) here, in the
            # loop's thread: its sync receivers must not run on the event loop, and a
            # thread hop per task would cost more than the work.
            try:
                prepared, report = self._begin(c)
                if report is None:
                    self.runner.started(prepared[1])
            except Exception as exc:  # as in _execute: nothing a row holds may stop the loop
                prepared, report = None, self._broken(c, exc)
            if report is not None:
                self._report(c, report)
                continue
            self._prepared[c.id] = prepared
            executor.submit(c)
        if slot == GENERAL:
            self.pace.dispatched(coroutines, len(claimed))

    def _executors(self):
        return [e for e in (self.executor, self.reserved, self.coroutines) if e]

    def _coroutine(self, path):
        """Whether the task at ``path`` is an ``async def`` (learned once per path; a
        path that does not import is left to the threads, whose runner fails it)."""
        known = self._is_coroutine.get(path)
        if known is None:
            try:
                known = inspect.iscoroutinefunction(import_task(path).func)
            except Exception:
                known = False
            self._is_coroutine[path] = known
        return known

    def _sleep(self, mono):
        sleep = self.wakeups.idle_sleep(self.pace.idle, self.opts.POLL_SECONDS)
        if self.burst and not self.inflight:
            sleep = min(sleep, 0.05)  # look again soon: exit, or take what a limit released
        if self.inflight:
            sleep = min(sleep, STOP_POLL)  # look for stop requests
        with self.lock:
            if self.deadlines:
                sleep = min(sleep, max(0.0, min(d[0] for d in self.deadlines.values()) - mono))
        if self.turn_at is None and self.claimed_now is not None and (
                mono < self.rated_until or mono - self.turns_looked >= self.opts.POLL_SECONDS):
            # Turns after the last claim's time, not now: a turn that came between that
            # claim and now was not due for it. Looked for before every sleep while
            # rate-limited tasks are about, else once per poll.
            self.turns_looked = mono
            turn = self._db("next_turn", backend=self.backend.alias, now=self.claimed_now)
            if turn is not None:
                self.rated_until = mono + RATED_FOR
                self.turn_at = mono + max(0.0, (turn - now()).total_seconds())
        if self.turn_at is not None:
            sleep = min(sleep, max(0.0, self.turn_at - mono))
        return sleep

    def _flush(self):
        """Record every reported outcome now (used when stopping and in-process)."""
        with self.lock:
            done, self.done = self.done, []
        if done:
            accepted = self._db("complete", _to_write(done), worker=self.worker_id)
            self._finished(done, (set() if accepted is None else accepted) | self._add_sums(done))

    def _add_sums(self, done):
        """The ids of ``done`` their atomic task's transaction wrote; their sums are
        added to offload_series later (``_flush_sums``)."""
        written = [o for o, _ in done if o.recorded]
        self.unsummed += written
        return {o.id for o in written}

    def _flush_sums(self, mono, force=False):
        """Add the sums of outcomes atomic tasks wrote to offload_series, at most once a
        second (each is a commit of its own; the statistics lag by up to a second),
        and before exiting. On a database error they go uncounted: the outcomes
        themselves are written."""
        if self.unsummed and (force or mono - self.summed_at >= SUMS_EVERY):
            outcomes, self.unsummed, self.summed_at = self.unsummed, [], mono
            self._db("add_sums", outcomes, worker=self.worker_id)

    def _finished(self, done, accepted):
        """Forget recorded tasks and send ``task_finished`` for final outcomes."""
        for outcome, result in done:
            self.inflight.pop(outcome.id, None)
            if (kind := self.slot_of.pop(outcome.id, None)) is not None:
                self.busy[kind] -= 1
            self.cancelling.discard(outcome.id)
            if self.stopping.pop(outcome.id, None) is not None:
                cancellation.forget(outcome.id)
            if outcome.id not in accepted:
                logger.warning(
                    "%s: the outcome %s of task id=%s was not recorded: its lease was lost "
                    "(it expired or the database was unreachable); the task runs again "
                    "elsewhere", self.worker_id, outcome.status, outcome.id)
                signals.emit("outcome-refused")
                continue
            if outcome.status == TaskResultStatus.READY:  # a retry: runnable again, maybe now
                self.pace.maybe_more = True
            if outcome.claim is not None and outcome.claim.concurrency_key is not None:
                # Its key has room again, which the claim that rode with this outcome
                # could not see yet (it read the task as running): bring back a task
                # set aside for the key (_unpark), and claim once more.
                self.freed_keys.add(outcome.claim.concurrency_key)
                self.pace.maybe_more = True
            if result is not None and outcome.status in _FINAL:
                object.__setattr__(result, "status", outcome.status)
                object.__setattr__(result, "finished_at", outcome.finished_at)
                if outcome.return_value is not None:
                    object.__setattr__(result, "_return_value", json.loads(outcome.return_value))
                send_finished(type(self.backend), result, outcome.exception)
            outcome.exception = None  # let its frames go

    def _check_timeouts(self):
        """A task past its timeout: a coroutine is cancelled and has its timeout again,
        at most ``OPTIONS["CANCEL_GRACE"]``, to stop (its runner records the TaskTimeout);
        a thread cannot be stopped, nor a coroutine that ignored its cancellation, so its
        outcome is recorded here and the process is replaced."""
        mono = time.monotonic()
        with self.lock:
            for task_id, (deadline, claimed, task, result) in list(self.deadlines.items()):
                if mono < deadline:
                    continue
                stop = self.stopping.get(task_id)
                if stop is not None:  # asked to stop, and the grace is over
                    del self.deadlines[task_id]
                    self.abandoned.add(task_id)
                    self.done.append((self.runner.failed(claimed, stop[0], task=task, result=result),
                                      result))
                    logger.error("%s: task id=%s was asked to stop and did not within %gs; "
                                 "replacing this process", self.worker_id, task_id,
                                 self.opts.CANCEL_GRACE)
                    self._become("replace", mono)
                    continue
                seconds = self.runner.timeout_of(task)
                if self.slot_of.get(task_id) == ASYNC and task_id not in self.cancelling:
                    self.cancelling.add(task_id)
                    stop_by = mono + min(self.opts.CANCEL_GRACE, seconds)
                    self.deadlines[task_id] = (stop_by, claimed, task, result)
                    message = (f"{claimed.task_path} ran longer than its timeout of "
                               f"{seconds:g}s; it was cancelled.")
                    self.coroutines.cancel(task_id, TaskTimeout(message))
                    logger.error("%s: task id=%s timed out after %gs; cancelling it",
                                 self.worker_id, task_id, seconds)
                    continue
                del self.deadlines[task_id]
                self.abandoned.add(task_id)
                message = (f"{claimed.task_path} ran longer than its timeout of {seconds:g}s; "
                           "its worker process was replaced.")
                outcome = self.runner.failed(claimed, TaskTimeout(message), task=task,
                                             result=result, entry=_timeout_entry(message))
                self.done.append((outcome, result))
                logger.error("%s: task id=%s timed out after %gs; replacing this process",
                             self.worker_id, task_id, seconds)
                self._become("replace", mono)

    def _check_stops(self):
        """Look for this process's tasks asked to stop (``offload.cancel``): at once when
        the wake-up source says so, else every ``STOP_POLL`` seconds while tasks run.
        Each is told (``offload.cancellation``; a coroutine is cancelled) and has
        ``OPTIONS["CANCEL_GRACE"]`` seconds to stop before its outcome is recorded here and
        the process replaced, as for a timeout; one still waiting for a thread never
        starts."""
        mono = time.monotonic()
        told = self.wakeups.stops_since_look()
        if not self.inflight or not (told or mono - self._stops_looked >= STOP_POLL):
            return
        self._stops_looked = mono
        ids = [i for i in self.inflight if i not in self.stopping and i not in self.abandoned]
        for task_id, entry in self._db("stopping", worker=self.worker_id, ids=ids) or []:
            claimed = self.inflight[task_id]
            message = entry["traceback"].strip().split(": ", 1)[-1]
            error = Cancelled(f"{claimed.task_path} (id={task_id}): {message}")
            cancellation.request(task_id, error, entry)
            with self.lock:
                self.stopping[task_id] = (error, entry)
                # A task still waiting for a thread never starts (_begin); one that
                # runs has the grace to stop.
                if (prepared := self.prepared_of.get(task_id)) is not None:
                    self.deadlines[task_id] = (mono + self.opts.CANCEL_GRACE, claimed, *prepared)
            if self.slot_of.get(task_id) == ASYNC:
                self.cancelling.add(task_id)
                self.coroutines.cancel(task_id, error)
            logger.warning("%s: task id=%s was asked to stop (%s)", self.worker_id, task_id, message)

    def _finish(self):
        # Start nothing more before handing back: a task waiting for a thread, or a
        # coroutine, must not start once another server may have claimed it.
        for executor in self._executors():
            executor.shutdown()
        self._flush()
        self._flush_sums(time.monotonic(), force=True)
        handed = self._db("hand_back", worker=self.worker_id) or []
        if handed:
            logger.warning("%s: handed back %d unfinished task(s): %s", self.worker_id,
                           len(handed), ",".join(map(str, handed)))
        self.alive = False
        self.wakeups.stop()
        return EXIT_REPLACE if self.lifecycle is Lifecycle.REPLACING else 0

    # -- the executor's side (task threads) -------------------------------------

    def _execute(self, claimed):
        """Run one claimed task; whatever happens, a report ``(outcome, result)``."""
        try:
            prepared, report = self._begin(claimed)
            return report or self.runner.run(claimed, prepared)
        except BaseException as exc:  # noqa: B036 — nothing a row holds may end a thread
            return self._broken(claimed, exc)

    async def _aexecute(self, claimed):
        """``_execute`` for a coroutine task the loop prepared and announced
        (``_dispatch``), on the asyncio executor's event loop. A cancellation with a
        reason (its timeout) fails the task with that reason; the shutdown's propagates
        (the task is handed back)."""
        try:
            prepared = self._prepared.pop(claimed.id)
            try:
                return await self.runner.arun(claimed, prepared)
            except asyncio.CancelledError:
                reason = self.coroutines.reason_for(claimed.id)
                if reason is None:
                    raise
                task, result = prepared
                return self.runner.failed(claimed, reason, task=task, result=result,
                                          entry=_timeout_entry(str(reason))), result
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: B036 — nothing a row holds may end the loop
            return self._broken(claimed, exc)

    def _begin(self, claimed):
        """``(prepared, None)`` with the task's deadline set, or ``(None, report)`` for a
        task that cannot start (``Runner.unprepared``) or must not (asked to stop while
        it waited for a thread)."""
        if (stop := cancellation.stopped(claimed.id)) is not None:
            return None, (self.runner.failed(claimed, stop[0], retry=False), None)
        try:
            prepared = self.runner.prepare(claimed)
        except Exception as exc:
            return None, (self.runner.unprepared(claimed, exc), None)
        timeout = self.runner.timeout_of(prepared[0])
        with self.lock:
            self.prepared_of[claimed.id] = prepared
            if timeout:
                self.deadlines[claimed.id] = (time.monotonic() + timeout, claimed, *prepared)
            if claimed.id in self.stopping:  # asked to stop just as it started
                self.deadlines[claimed.id] = (time.monotonic() + self.opts.CANCEL_GRACE, claimed,
                                              *prepared)
        return prepared, None

    def _broken(self, claimed, exc):
        logger.exception("%s: task id=%s could not be run or failed; recording it as "
                         "FAILED", self.worker_id, claimed.id)
        return self.runner.broken(claimed, exc), None

    def _report(self, claimed, report):
        with self.lock:
            self.deadlines.pop(claimed.id, None)
            self.prepared_of.pop(claimed.id, None)
            if claimed.id in self.abandoned:
                return
            self.done.append(report)
        self.wake.set()

    def _heartbeat(self):
        stop = threading.Event()
        while self.alive and not stop.wait(self.opts.heartbeat):
            try:
                self._beat()
            except Exception:  # a bug must not silently end the leases' renewal
                logger.exception("%s: heartbeat failed", self.worker_id)

    def _beat(self, execute=None):
        """Renew the leases of every task this process holds: from the heartbeat thread
        (a database error is logged), or from the wake-up source's with ``execute`` on
        its connection (which handles that connection's errors)."""
        ids = list(self.inflight)
        if not ids or not self.alive:
            return
        if execute is None:
            self._db("heartbeat", worker=self.worker_id, ids=ids, lease=self.opts.LEASE_SECONDS,
                     now=now())
        else:
            self.store.heartbeat(worker=self.worker_id, ids=ids, lease=self.opts.LEASE_SECONDS,
                                 now=now(), execute=execute)

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
        self._flush_sums(time.monotonic(), force=True)
        return count
