"""The examples of docs/testing.md, run by the suite. tests/test_docs.py checks that every
python block of the guide appears word for word here or in tests/guide/ (``myapp`` in
the guide is ``tests.guide``). Example::

    OFFLOAD_TEST_DB=sqlite python -m pytest tests/test_testing_guide.py
"""

# The guide's blocks, in its order ------------------------------------------------------

TASKS = {
    "default": {
        "BACKEND": "offload.backend.OffloadBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"RETRY_BACKOFF": 0},  # retries are due at once: run_until_empty runs them too
    }
}

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import IntegrityError
from django.tasks import TaskResultStatus, default_task_backend
from django.test import TestCase, override_settings

from offload.models import TaskRow
from offload.testing import run_until_empty
from tests.guide.accounts import sign_up
from tests.guide.tasks import send_welcome


class WelcomeEmailTests(TestCase):
    def test_the_welcome_email_is_sent(self):
        user = User.objects.create(username="ada", email="ada@example.com")
        result = send_welcome.enqueue(user.pk)

        self.assertEqual(run_until_empty(), 1)  # every runnable task ran, here and now

        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, "ada@example.com")
        self.assertEqual(mail.outbox[0].subject, "Welcome")

    def test_a_failing_task_is_retried_then_failed(self):
        result = send_welcome.enqueue(12345)  # no such user

        self.assertEqual(run_until_empty(), 3)  # max_attempts=3, and the retries were due at once

        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertEqual(result.errors[-1].exception_class_path, "django.contrib.auth.models.User.DoesNotExist")


@pytest.mark.django_db
def test_the_welcome_email_is_sent(mailoutbox):
    user = User.objects.create(username="ada", email="ada@example.com")
    send_welcome.enqueue(user.pk)

    assert run_until_empty() == 1

    assert [m.to for m in mailoutbox] == [["ada@example.com"]]


IMMEDIATE = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
                         "QUEUES": ["default", "emails"]}}


@override_settings(TASKS=IMMEDIATE)
class ImmediateTests(TestCase):
    def test_the_task_runs_inside_enqueue(self):
        user = User.objects.create(username="ada", email="ada@example.com")

        result = send_welcome.enqueue(user.pk)

        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)  # it has already run
        self.assertEqual(len(mail.outbox), 1)


DUMMY = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend",
                     "QUEUES": ["default", "emails"]}}


@override_settings(TASKS=DUMMY)
class SignUpEnqueuesTests(TestCase):
    def test_signing_up_enqueues_the_welcome(self):
        user = sign_up("ada", "ada@example.com")

        [result] = default_task_backend.results  # what was enqueued, in order
        self.assertEqual(result.task.module_path, send_welcome.module_path)
        self.assertEqual(result.args, [user.pk])
        self.assertEqual(result.status, TaskResultStatus.READY)  # and nothing ran
        self.assertEqual(mail.outbox, [])


@pytest.mark.django_db(transaction=True)  # real commits, as in TransactionTestCase
def test_the_welcome_is_enqueued_with_the_user_or_not_at_all():
    user = sign_up("ada", "ada@example.com")  # committed: its task is there

    [row] = TaskRow.objects.filter(task_path=send_welcome.module_path)
    assert row.status == "READY"
    assert send_welcome.get_result(str(row.pk)).args == [user.pk]

    with pytest.raises(IntegrityError):
        sign_up("ada", "ada@example.org")  # the username is taken: the transaction rolls back

    assert TaskRow.objects.filter(task_path=send_welcome.module_path).count() == 1  # no second task


# What the guide says about the settings and Django's backends, checked -------------------

def test_the_guides_settings_run_retries_at_once(db):
    with override_settings(TASKS=TASKS):
        result = send_welcome.enqueue(12345)
        assert run_until_empty() == 3
        result.refresh()
        assert result.status == TaskResultStatus.FAILED and len(result.errors) == 3


def test_djangos_backends_need_the_queue_names_declared(db):
    from django.tasks.exceptions import InvalidTask

    with override_settings(TASKS={"default": {"BACKEND": IMMEDIATE["default"]["BACKEND"]}}):
        with pytest.raises(InvalidTask, match="Queue 'emails' is not valid for backend."):
            send_welcome.enqueue(1)


def test_a_task_class_comes_from_the_backend_at_import():
    from django.tasks import task

    with override_settings(TASKS={"default": {"BACKEND": IMMEDIATE["default"]["BACKEND"]}}):
        with pytest.raises(TypeError, match="unexpected keyword argument 'max_attempts'"):
            task(max_attempts=3)(sign_up)


@pytest.mark.django_db(transaction=True)
def test_djangos_backends_ignore_the_transaction_and_check_arguments_loosely():
    from datetime import timedelta
    from decimal import Decimal

    from django.db import transaction
    from django.tasks.exceptions import InvalidTask
    from django.utils import timezone

    from offload.exceptions import ArgumentsNotSerializable

    with override_settings(TASKS=IMMEDIATE):
        with pytest.raises(RuntimeError), transaction.atomic():
            user = User.objects.create(username="ada", email="ada@example.com")
            send_welcome.enqueue(user.pk)
            raise RuntimeError("rolled back")
        assert len(mail.outbox) == 1  # sent, although the user it greeted was rolled back
        with pytest.raises(InvalidTask, match="does not support run_after"):
            send_welcome.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1)
        failed = send_welcome.enqueue(12345)  # one attempt, and no exception
        assert failed.status == TaskResultStatus.FAILED and len(failed.errors) == 1
        with pytest.raises(NotImplementedError):
            failed.refresh()
    with override_settings(TASKS=DUMMY):
        with pytest.raises(RuntimeError), transaction.atomic():
            send_welcome.enqueue(1)
            raise RuntimeError("rolled back")
        assert [r.args for r in default_task_backend.results] == [[1]]  # still recorded
        send_welcome.enqueue({1: b"bytes", 2: float("nan")})
        with pytest.raises(TypeError, match="Unsupported type"):
            send_welcome.enqueue(Decimal("9.99"))
    with pytest.raises(ArgumentsNotSerializable):  # Offload refuses the same arguments
        send_welcome.enqueue({1: b"bytes", 2: float("nan")})
