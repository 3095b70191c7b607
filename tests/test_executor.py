"""The executors on their own: no database, no worker process (the loop's use of them
is tested with real processes in tests/test_worker.py and tests/test_async.py)."""

import asyncio
import threading
import time
from types import SimpleNamespace

from offload.exceptions import TaskTimeout
from offload.worker.executor import AsyncExecutor, ThreadExecutor

DEADLINE = 10


def claimed(id_, priority=0):
    return SimpleNamespace(id=id_, priority=priority)


def test_tasks_waiting_for_a_thread_start_highest_priority_first():
    gate, started, order, finished = threading.Event(), threading.Event(), [], threading.Event()

    def execute(c):
        if c.id == 1:
            started.set()
            assert gate.wait(DEADLINE)
        order.append(c.id)
        return c.id

    def done(c, report):
        if len(order) == 4:
            finished.set()

    executor = ThreadExecutor(1, execute=execute, finished=done)
    executor.start()
    executor.submit(claimed(1))
    assert started.wait(DEADLINE)  # the only thread is busy
    for id_, priority in ((2, 0), (3, 50), (4, 10)):
        executor.submit(claimed(id_, priority))
    assert executor.waiting() == 3
    gate.set()
    assert finished.wait(DEADLINE)
    assert order == [1, 3, 4, 2]
    assert executor.mean_seconds is not None


def test_shutdown_starts_nothing_that_waits():
    gate, started, ran = threading.Event(), threading.Event(), []

    def execute(c):
        started.set()
        ran.append(c.id)
        assert gate.wait(DEADLINE)

    executor = ThreadExecutor(1, execute=execute, finished=lambda c, r: None)
    executor.start()
    executor.submit(claimed(1))
    assert started.wait(DEADLINE)
    executor.submit(claimed(2))
    executor.shutdown()
    gate.set()
    assert executor.waiting() == 1  # only the thread's stop sentinel is left
    assert ran == [1]


def test_a_cancelled_coroutine_sees_its_reason_and_the_shutdown_reports_nothing():
    reports, seen, finished = {}, {}, threading.Event()
    executor = None

    async def execute(c):
        try:
            await asyncio.sleep(DEADLINE)
        except asyncio.CancelledError:
            seen[c.id] = executor.reason_for(c.id)
            if seen[c.id] is None:
                raise
            return "timed out"
        return "slept"

    def done(c, report):
        reports[c.id] = report
        finished.set()

    executor = AsyncExecutor(10, execute=execute, finished=done)
    executor.start()
    executor.submit(claimed(1))
    executor.submit(claimed(2))
    reason = TaskTimeout("over")
    executor.cancel(1, reason)  # a task runs from its submission: it is there to cancel
    assert finished.wait(DEADLINE)
    assert reports == {1: "timed out"} and seen[1] is reason
    executor.shutdown()  # cancels task 2 without a reason: it is not reported
    deadline = time.monotonic() + DEADLINE
    while executor.loop.is_running():
        assert time.monotonic() < deadline, "the event loop did not stop"
        time.sleep(0.01)
    assert reports == {1: "timed out"} and seen[2] is None
