"""Exceptions Offload raises or records as a task's error.

Recorded errors keep their class path in ``TaskResult.errors`` so that
``error.exception_class`` resolves to one of these in any process.
"""

from django.tasks.exceptions import InvalidTask

__all__ = ["ArgumentsNotSerializable", "AtomicScopeError", "Cancelled", "CorruptPayload",
           "DependencyFailed", "InvalidTaskOptions", "InvalidWorkflow", "LeaseLost",
           "PayloadTooLarge", "ResultNotSerializable", "TaskNotFound", "TaskTimeout", "WorkerLost"]


class ArgumentsNotSerializable(TypeError):
    """A task argument cannot be stored as JSON (raised by ``enqueue``)."""


class PayloadTooLarge(ArgumentsNotSerializable):
    """A task's arguments are larger than the backend's ``MAX_PAYLOAD_BYTES`` (raised by
    ``enqueue``)."""


class ResultNotSerializable(TypeError):
    """A task returned a value that cannot be stored as JSON (recorded as the task's error)."""


class TaskNotFound(ImportError):
    """A stored task path does not import to a Task (recorded as the task's error)."""


class CorruptPayload(ValueError):
    """A stored row's arguments are not valid JSON (recorded as the task's error)."""


class TaskTimeout(Exception):
    """The task ran longer than its ``timeout`` and its process was replaced."""


class Cancelled(Exception):
    """An operator cancelled the task before it ran (recorded as the task's error)."""


class WorkerLost(Exception):
    """The process running the task died (or froze) too many times in a row."""


class InvalidTaskOptions(InvalidTask):
    """An Offload task option (``max_attempts``, ``timeout``, ...) has a bad value."""


class AtomicScopeError(Exception):
    """An ``atomic=True`` task wrote through another database than the task database,
    outside the transaction that records its outcome (recorded as the task's error; the
    attempt's writes are rolled back and it is not retried)."""


class LeaseLost(Exception):
    """An ``atomic=True`` task's lease was gone when it came to record its success (it
    was rescued, cancelled or fenced meanwhile): its writes were rolled back."""


class DependencyFailed(Exception):
    """A workflow step did not run: a step it depends on failed (its error names that
    step; docs/workflows.md)."""


class InvalidWorkflow(ValueError):
    """A workflow cannot be enqueued as built (its message says what to change)."""
