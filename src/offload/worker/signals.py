"""Test signals: named moments of the async server that a test waits for, instead of
reading its log. Off (one falsy check) unless ``OFFLOAD_TEST_EVENTS`` names a folder;
then each moment creates a file there named after it, and a test waits for the file
(``tests/conftest.py``: ``Worker.wait_event``). River's test signals do this in-process;
the server is several processes, so a folder carries them. Example::

    emit("loop-started")     # -> $OFFLOAD_TEST_EVENTS/loop-started.<pid>.<n>

The moments: ``loop-started`` (a worker process's loop runs), ``stopping`` and
``stopping-now`` (the supervisor asked its workers to drain, or to stop at once),
``db-error`` (a worker statement failed), ``outcome-refused`` (an outcome was not recorded: its lease was lost),
``reload-waiting`` (``--reload``: the server failed to start; waiting for a change),
``schedules-ticked`` (the supervisor's scheduler looked at every schedule: an edit made
before it is in force on that server).
"""

import itertools
import os

__all__ = ["FOLDER", "emit"]

#: Where moments are written; None (the default) turns test signals off.
FOLDER = os.environ.get("OFFLOAD_TEST_EVENTS") or None
_count = itertools.count()


def emit(name):
    """Record that moment ``name`` happened (only under a test, see ``FOLDER``)."""
    if FOLDER:
        path = os.path.join(FOLDER, f"{name}.{os.getpid()}.{next(_count)}")
        with open(path, "w"):
            pass
