"""Offload: a production engine for Django's built-in Tasks framework.

Application code uses only ``django.tasks``; Offload is the backend in ``TASKS``
and the async server that runs the tasks::

    TASKS = {"default": {"BACKEND": "offload.backend.OffloadBackend"}}

The names below are Offload's own public API on top of that contract.
"""

from offload.backend import OffloadBackend, OffloadTask, bulk_enqueue
from offload.cancellation import acancel, cancel
from offload.workflows import Workflow, chain, chord, get_workflow, group, step

__all__ = ["OffloadBackend", "OffloadTask", "Workflow", "acancel", "bulk_enqueue", "cancel",
           "chain", "chord", "get_workflow", "group", "step"]
__version__ = "0.1.0"
