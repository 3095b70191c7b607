"""Executors: where a worker process runs the tasks its loop claimed.

An executor has a number of slots; the loop never submits more tasks than the claim
planner allowed for it (``worker/planner.py``). It calls ``execute(claimed)`` for each
task and hands what that returns to ``finished(claimed, report)``; ``execute`` must not
raise (the loop's own catches everything a task or a row can do).

- ``ThreadExecutor``: each task on one of ``slots`` threads; tasks submitted while every
  thread is busy wait in priority order (highest first, then by id), so a task claimed
  later with a higher priority starts before them.
- ``AsyncExecutor``: coroutine tasks (``async def``) on one asyncio event loop in its own
  thread, up to ``slots`` at once; a running coroutine can be cancelled (a timeout),
  which raises ``CancelledError`` at its next ``await``.

Example::

    executor = ThreadExecutor(4, execute=run_one, finished=record)
    executor.start()
    executor.submit(claimed)     # runs on a free thread, or waits for one by priority
    executor.shutdown()          # starts nothing more; running tasks finish

    coroutines = AsyncExecutor(500, execute=arun_one, finished=record)
    coroutines.start()
    coroutines.submit(claimed)   # starts at once on the event loop
    coroutines.cancel(claimed.id, TaskTimeout("..."))
"""

import asyncio
import itertools
import logging
import queue
import threading
import time
from typing import Protocol

logger = logging.getLogger("offload.worker")


class Executor(Protocol):
    slots: int

    def start(self) -> None:
        """Start taking tasks."""

    def submit(self, claimed) -> None:
        """Run ``claimed`` (the planner allowed it)."""

    def shutdown(self) -> None:
        """Start nothing more: tasks that have not started are dropped (the loop hands
        them back with the rest); those running finish on their own."""


class ThreadExecutor:
    """Each task on one of ``slots`` daemon threads named ``offload-task-N``; tasks
    waiting for a thread are taken highest priority first. ``mean_seconds``: a moving
    average of how long a task takes (the planner sizes the claim window from it)."""

    def __init__(self, slots, *, execute, finished, name="offload-task"):
        self.slots = slots
        self.execute = execute
        self.finished = finished
        self.name = name
        self.mean_seconds = None
        self.todo = queue.PriorityQueue()
        self._order = itertools.count()
        self._stopped = False

    def start(self):
        for i in range(self.slots):
            threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True).start()

    def submit(self, claimed):
        self.todo.put((-claimed.priority, claimed.id, next(self._order), claimed))

    def waiting(self):
        """How many submitted tasks have not started."""
        return self.todo.qsize()

    def shutdown(self):
        self._stopped = True
        while True:
            try:
                self.todo.get_nowait()
            except queue.Empty:
                break
        for _ in range(self.slots):
            self.todo.put((float("inf"), 0, next(self._order), None))

    def _work(self):
        while (claimed := self.todo.get()[-1]) is not None and not self._stopped:
            started = time.perf_counter()
            report = self.execute(claimed)
            took = time.perf_counter() - started
            mean = self.mean_seconds
            self.mean_seconds = took if mean is None else mean + 0.1 * (took - mean)
            self.finished(claimed, report)


class AsyncExecutor:
    """Coroutine tasks on one event loop in a daemon thread named ``offload-async``.
    ``execute`` is a coroutine function; when ``cancel(task_id, reason)`` cancelled its
    task, ``reason_for(task_id)`` gives the reason (None: cancelled by the shutdown, whose
    tasks are handed back, not reported)."""

    def __init__(self, slots, *, execute, finished, name="offload-async", tidy=None,
                 tidy_every=1.0):
        self.slots = slots
        self.execute = execute
        self.finished = finished
        self.name = name
        #: A coroutine function run every ``tidy_every`` seconds while tasks run or ran
        #: since the last time (the connection sweep).
        self.tidy = tidy
        self.tidy_every = tidy_every
        self._ran = False
        self._tidier = None
        self.loop = None
        self._running = {}  # id -> asyncio.Task (event loop thread only)
        self._reasons = {}

    def start(self):
        self.loop = asyncio.new_event_loop()
        # Eager tasks: a submitted coroutine runs up to its first await at once, so it
        # is inside ``execute`` (and a cancellation reaches it there) from the start.
        self.loop.set_task_factory(asyncio.eager_task_factory)
        threading.Thread(target=self._main, name=self.name, daemon=True).start()

    def _main(self):
        asyncio.set_event_loop(self.loop)
        if self.tidy is not None:
            self._tidier = self.loop.create_task(self._tidy())
        self.loop.run_forever()

    async def _tidy(self):
        while True:
            await asyncio.sleep(self.tidy_every)
            if self._ran or self._running:
                self._ran = False
                try:
                    await self.tidy()
                except Exception:
                    logger.exception("%s: tidying up failed", self.name)

    def submit(self, claimed):
        self.loop.call_soon_threadsafe(self._start, claimed)

    def _start(self, claimed):
        running = self.loop.create_task(self._one(claimed))
        if not running.done():  # an eager task that did not await is finished already
            self._running[claimed.id] = running

    async def _one(self, claimed):
        try:
            report = await self.execute(claimed)
        except asyncio.CancelledError:
            return  # the shutdown's: the task is handed back
        finally:
            self._running.pop(claimed.id, None)
            self._reasons.pop(claimed.id, None)
            self._ran = True
        self.finished(claimed, report)

    def cancel(self, task_id, reason):
        """Cancel a running task: ``CancelledError`` at its next ``await``, and
        ``reason_for(task_id)`` is ``reason`` while ``execute`` handles it."""
        self.loop.call_soon_threadsafe(self._cancel, task_id, reason)

    def _cancel(self, task_id, reason):
        running = self._running.get(task_id)
        if running is not None:
            self._reasons[task_id] = reason
            running.cancel()

    def reason_for(self, task_id):
        return self._reasons.get(task_id)

    def shutdown(self):
        """Cancel what runs (it is handed back) and stop the event loop."""
        def stop():
            for running in [*self._running.values(), self._tidier]:
                if running is not None:
                    running.cancel()
            self.loop.call_soon(self.loop.stop)

        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(stop)
