"""Bad input and the web surface (issue 10, items 15-20): what enqueue refuses and how,
the size of the dashboard's pages, who may see and act, bad parameters, a second task
database, and what the unauthenticated endpoints give away. Real databases, Django's
test client."""

import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from offload import bulk_enqueue
from offload.conf import Options
from offload.exceptions import ArgumentsNotSerializable, InvalidTaskOptions, PayloadTooLarge
from offload.models import TaskRow
from offload.testing import run_until_empty
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def nested(levels):
    value = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_unstorable_arguments_are_all_arguments_not_serializable():
    """Nesting 10,000 deep used to raise a bare RecursionError, a 5,001-digit int a bare
    ValueError; a list that contains itself recursed too."""
    with pytest.raises(ArgumentsNotSerializable, match=r"^Cannot enqueue .*: args\[0\]\[0\]\[0\].*…"
                       r" is nested more than 100 levels deep .* pass a reference"):
        tasks.echo.enqueue(nested(10_000))
    looped = []
    looped.append(looped)
    with pytest.raises(ArgumentsNotSerializable, match="nested more than 100 levels"):
        tasks.echo.enqueue(x=looped)
    digits = sys.get_int_max_str_digits()
    with pytest.raises(ArgumentsNotSerializable,
                       match=rf"kwargs\['n'\] is an int of more than {digits:,} digits.* str\(value\)"):
        tasks.echo.enqueue(n=10 ** (digits + 700))
    with pytest.raises(ArgumentsNotSerializable, match=r"args\[1\]\['deep'\]\[2\] is an int"):
        bulk_enqueue(tasks.echo, [((1,), {}), ((1, {"deep": [0, 1, -10 ** 5000]}), {})])
    assert not TaskRow.objects.exists()
    # At the limits: 100 levels and a 1,500-digit int are stored and read back as they were.
    deep = tasks.echo.enqueue(nested(100), big=2 ** 5000)
    assert run_until_empty() == 1
    assert tasks.echo.get_result(deep.id).return_value == {"args": [nested(100)],
                                                           "kwargs": {"big": 2 ** 5000}}


def test_unique_key_and_queue_name_are_checked_alike_on_both_engines():
    """A NUL in unique_key, and a queue name longer than its column, failed on PostgreSQL
    only (SQLite stored them)."""
    with pytest.raises(InvalidTaskOptions, match=r"unique_key='a\\x00b': contains a NUL character"):
        tasks.noop.using(unique_key="a\x00b")
    with pytest.raises(InvalidTaskOptions, match="unique_key='': is empty"):
        tasks.noop.using(unique_key="")
    with pytest.raises(InvalidTaskOptions, match="unique_key=.*: is 256 characters long; use a "
                       "non-empty string of at most 255 characters"):
        tasks.noop.using(unique_key="k" * 256)
    with pytest.raises(InvalidTaskOptions, match="queue_name=.*: is 101 characters long; .* at most 100"):
        tasks.anyqueue_noop.using(queue_name="q" * 101)
    with pytest.raises(InvalidTaskOptions, match=r"queue_name='a\\x00': contains a NUL"):
        tasks.anyqueue_noop.using(queue_name="a\x00")
    assert not TaskRow.objects.exists()
    fine = tasks.anyqueue_noop.using(queue_name="q" * 100, unique_key="k" * 255).enqueue()
    assert TaskRow.objects.get(pk=fine.id).queue_name == "q" * 100


def test_payloads_over_the_limit_are_refused_with_the_fix():
    with pytest.raises(PayloadTooLarge, match=r"arguments are 1,048,603 bytes as JSON, over the limit "
                       r"of 1,048,576 \(OPTIONS\['MAX_PAYLOAD_BYTES'\] of backend 'default'\)\. "
                       r"Pass a reference .* primary key or a file path"):
        tasks.echo.enqueue("x" * (MiB + 2))  # {"args":["..."],"kwargs":{}} adds 25
    with pytest.raises(ArgumentsNotSerializable):  # a subclass: one except catches both
        bulk_enqueue(tasks.echo, [(("small",), {}), (("x" * MiB,), {})])
    assert not TaskRow.objects.exists()
    assert tasks.echo.enqueue("x" * (MiB - 25)).id  # exactly at the limit
    unlimited = {"default": {"BACKEND": "offload.backend.OffloadBackend",
                             "OPTIONS": {"MAX_PAYLOAD_BYTES": None}}}
    with override_settings(TASKS=unlimited):
        assert tasks.echo.enqueue("x" * (2 * MiB)).id


@pytest.mark.parametrize("bad", [0, -1, "1MB", 1.5, True])
def test_max_payload_bytes_is_validated(bad):
    with pytest.raises(ImproperlyConfigured, match=r"\['MAX_PAYLOAD_BYTES'\]=.*: use a whole number"):
        Options.from_params("default", {"MAX_PAYLOAD_BYTES": bad})
    assert Options.from_params("default", {}).MAX_PAYLOAD_BYTES == MiB

