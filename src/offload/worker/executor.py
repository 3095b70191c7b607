"""Executors: where a worker process runs the tasks its loop claimed.

An executor has a fixed number of slots; the loop never submits more tasks than it has
free slots (the claim planner counts them), so a submitted task starts at once and
priority order holds. It calls ``execute(claimed)`` for each task and hands what that
returns to ``finished(claimed, report)``; ``execute`` must not raise (the loop's own
catches everything a task or a row can do). Today's executor runs each task on one of
``slots`` threads; an asyncio executor for coroutine tasks will sit beside it. Example::

    executor = ThreadExecutor(4, execute=run_one, finished=record)
    executor.start()
    executor.submit(claimed)     # runs on a free thread
    executor.shutdown()          # the threads end once their current task is done
"""

import queue
import threading
from typing import Protocol


class Executor(Protocol):
    slots: int

    def start(self) -> None:
        """Start taking tasks."""

    def submit(self, claimed) -> None:
        """Run ``claimed`` now (the caller guarantees a free slot)."""

    def shutdown(self) -> None:
        """Take no more tasks; those running finish on their own."""


class ThreadExecutor:
    """Each task on one of ``slots`` daemon threads named ``offload-task-N``."""

    def __init__(self, slots, *, execute, finished, name="offload-task"):
        self.slots = slots
        self.execute = execute
        self.finished = finished
        self.name = name
        self.todo = queue.SimpleQueue()

    def start(self):
        for i in range(self.slots):
            threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True).start()

    def submit(self, claimed):
        self.todo.put(claimed)

    def shutdown(self):
        for _ in range(self.slots):
            self.todo.put(None)

    def _work(self):
        while (claimed := self.todo.get()) is not None:
            self.finished(claimed, self.execute(claimed))
