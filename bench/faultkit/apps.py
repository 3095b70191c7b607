"""With ``FAULTS_RAISING_RECEIVERS=1`` every task_started and task_finished receiver call
raises: the "receivers that raise" scenario. A receiver's error must be logged and cost
neither a slot nor a re-run."""

import os

from django.apps import AppConfig


class ReceiverError(RuntimeError):
    pass


def _started(sender, task_result, **kwargs):
    raise ReceiverError(f"faultkit: task_started receiver raised for task {task_result.id}")


def _finished(sender, task_result, **kwargs):
    raise ReceiverError(f"faultkit: task_finished receiver raised for task {task_result.id}")


class FaultKitConfig(AppConfig):
    name = "bench.faultkit"
    label = "faultkit"

    def ready(self):
        if os.environ.get("FAULTS_RAISING_RECEIVERS") == "1":
            from django.tasks.signals import task_finished, task_started

            task_started.connect(_started, dispatch_uid="faultkit-started")
            task_finished.connect(_finished, dispatch_uid="faultkit-finished")
