"""The test app; ``OFFLOAD_TEST_RECEIVERS`` connects task-signal receivers in the
processes that read it (worker subprocesses of a test):

- ``raise``: ``task_started`` and ``task_finished`` receivers that raise;
- ``record``: a ``task_finished`` receiver that writes a ``Run`` row keyed
  ``finished:<id>:<status>:<class of sys.exc_info() or ->``.
"""

import os
import sys

from django.apps import AppConfig


def _raise(sender, task_result, **kwargs):
    raise RuntimeError(f"receiver fails for task {task_result.id}")


def _record(sender, task_result, **kwargs):
    from tests.testapp.models import Run

    exc = sys.exc_info()[0]
    Run.objects.create(key=f"finished:{task_result.id}:{task_result.status}:"
                           f"{exc.__name__ if exc else '-'}", task_id=task_result.id)


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.tasks.signals import task_finished, task_started

        mode = os.environ.get("OFFLOAD_TEST_RECEIVERS")
        if mode == "raise":
            task_started.connect(_raise, dispatch_uid="offload-test-raise-started")
            task_finished.connect(_raise, dispatch_uid="offload-test-raise-finished")
        elif mode == "record":
            task_finished.connect(_record, dispatch_uid="offload-test-record-finished")
