"""WorkerSpec: one validated description of an async server, from the worker's flags or an
OFFLOAD_PROFILES entry, by the same rules, with errors naming where the value was written;
and the one place it becomes Supervisor(...) arguments."""

import inspect

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from offload import roles
from offload.spec import FLAGS, WorkerSpec

#: ``offload worker``'s defaults, as the parser gives them.
FLAG_DEFAULTS = {"backend": "default", "queues": None, "processes": None, "threads": 4,
                 "grace": "30s", "reserve": None, "queue_limit": [], "role": "async"}


def from_flags(**flags):
    return WorkerSpec.from_flags(**{**FLAG_DEFAULTS, "role": "async-x", **flags})


def from_profile(**entry):
    return WorkerSpec.from_profile("async-x", entry)


@pytest.mark.parametrize(("flags", "entry"), [
    ({}, {}),
    ({"threads": 8, "processes": 2, "reserve": "2:50"}, {"threads": 8, "processes": 2, "reserve": "2:50"}),
    ({"queues": "emails, crm", "queue_limit": ["crm=2", "emails=1"], "grace": "10m"},
     {"queues": ["emails", "crm"], "queue_limits": {"crm": 2, "emails": 1}, "grace": "10m"}),
    ({"grace": "90", "backend": "tasks"}, {"grace": 90, "backend": "tasks"}),
    ({"reserve": ""}, {"reserve": None}),  # no reservation, either way
])
def test_flags_and_a_profile_with_the_same_values_give_equal_specs(flags, entry):
    assert from_flags(**flags) == from_profile(**entry)


def test_the_defaults_are_the_built_in_async_profile():
    with override_settings(OFFLOAD_PROFILES={}):
        assert roles.profiles()["async"] == WorkerSpec.from_flags(**FLAG_DEFAULTS)
    assert WorkerSpec.from_flags(**FLAG_DEFAULTS) == WorkerSpec(name="async", grace=30.0)


def test_the_spec_holds_parsed_values():
    spec = from_flags(queues="emails,crm", threads=3, reserve="1:50", queue_limit=["crm=2"],
                      grace="2m")
    assert (spec.name, spec.queues, spec.threads, spec.reserve, spec.queue_limits, spec.grace) == (
        "async-x", ["emails", "crm"], 3, (1, 50), {"crm": 2}, 120.0)


# One rule per value: the profile key, the flags, the entry, and the message, where ``{at}``
# is the flag (FLAGS[key]) or the profile key it names.
INVALID = [
    ("threads", {"threads": 0}, {"threads": 0}, "{at} = 0: use a whole number >= 1."),
    ("processes", {"processes": 0}, {"processes": 0}, "{at} = 0: use a whole number >= 1."),
    ("reserve", {"threads": 2, "reserve": "2:50"}, {"threads": 2, "reserve": "2:50"},
     "{at} = '2:50': SLOTS must be 1..1 (fewer than the 2 threads) and PRIORITY -100..100."),
    ("reserve", {"reserve": "1:500"}, {"reserve": "1:500"},
     "{at} = '1:500': SLOTS must be 1..3 (fewer than the 4 threads) and PRIORITY -100..100."),
    ("reserve", {"reserve": "many"}, {"reserve": "many"},
     "{at} = 'many': use 'SLOTS:PRIORITY', for example '2:50'."),
    ("queue_limits", {"queue_limit": ["crm=0"]}, {"queue_limits": {"crm": 0}},
     "{at} needs whole numbers >= 1: {{'crm': 0}}."),
    ("grace", {"grace": "soon"}, {"grace": "soon"},
     "{at}='soon' is not a duration: use seconds (30) or a string such as '30s', '15m', '12h' or '7d'."),
]


@pytest.mark.parametrize(("key", "flags", "entry", "message"), INVALID)
def test_an_invalid_value_is_named_by_its_flag(key, flags, entry, message):
    with pytest.raises(ValueError) as raised:
        from_flags(**flags)
    assert str(raised.value) == message.format(at=FLAGS[key])


@pytest.mark.parametrize(("key", "flags", "entry", "message"), INVALID)
def test_an_invalid_value_is_named_by_its_profile_key(key, flags, entry, message):
    at = f"OFFLOAD_PROFILES['async-x'][{key!r}]"
    with pytest.raises(ValueError) as raised:
        from_profile(**entry)
    assert str(raised.value) == message.format(at=at)
    with override_settings(OFFLOAD_PROFILES={"async-x": entry}), pytest.raises(ValueError) as raised:
        roles.profiles()
    assert str(raised.value) == message.format(at=at)


def test_what_only_a_flag_or_only_a_profile_can_get_wrong():
    with pytest.raises(ValueError, match=r"^--queue-limit 'crm': use QUEUE=N with N >= 1, e\.g\. crm=2\.$"):
        from_flags(queue_limit=["crm"])
    with pytest.raises(ValueError, match=r"^--queue-limit '=2': use QUEUE=N"):
        from_flags(queue_limit=["=2"])
    with pytest.raises(ValueError, match=r"^OFFLOAD_PROFILES\['async-x'\] has an unknown key 'thread'\. "
                                         r"Did you mean 'threads'\? Allowed: async_concurrency, backend, grace, "):
        from_profile(thread=2)
    with pytest.raises(ValueError, match=r"^OFFLOAD_PROFILES\['async-x'\]\['queues'\] = 'reports': "
                                         r"use a list of queue names"):
        from_profile(queues="reports")
    with pytest.raises(ValueError, match=r"^OFFLOAD_PROFILES\['async-x'\]\['queue_limits'\] = "
                                         r"\['crm'\]: use queue names and whole numbers >= 1"):
        from_profile(queue_limits=["crm"])
    with pytest.raises(ValueError, match=r"^OFFLOAD_PROFILES\['async-x'\] = 2: a profile is a dict"):
        WorkerSpec.from_profile("async-x", 2)


def test_the_worker_command_says_the_flags_message():
    with pytest.raises(CommandError, match=r"^--threads = 0: use a whole number >= 1\.$"):
        call_command("offload", "worker", "--threads", "0")
    with pytest.raises(CommandError, match=r"^--queue-limit needs whole numbers >= 1: \{'crm': 0\}\.$"):
        call_command("offload", "worker", "--queue-limit", "crm=0")
    with pytest.raises(CommandError, match=r"^--async-concurrency = -1: use a whole number >= 0 "
                                           r"\(0 runs coroutine tasks on the threads\)\.$"):
        call_command("offload", "worker", "--async-concurrency", "-1")


def test_supervisor_arguments_are_the_supervisors_keywords():
    from offload.worker.supervisor import Supervisor

    spec = from_flags(queues="emails", processes=2, threads=3, reserve="1:50",
                      queue_limit=["emails=1"], grace="5s")
    arguments = spec.supervisor_arguments()
    inspect.signature(Supervisor).bind(**arguments, burst=True)  # TypeError if one is not
    assert arguments == {"alias": "default", "queues": ["emails"], "processes": 2, "threads": 3,
                         "async_concurrency": 500, "grace": 5.0, "reserve": (1, 50), "queue_limits": {"emails": 1},
                         "role": "async-x"}
    assert WorkerSpec(name="async").supervisor_arguments()["queues"] is None  # every queue


def test_offload_run_serves_the_profile_of_its_role():
    kind, spec = roles.resolve("async-bulk")  # tests/settings.py
    assert kind == roles.ASYNC and spec == WorkerSpec.from_flags(
        **{**FLAG_DEFAULTS, "queues": "reports", "threads": 2, "grace": "5s", "role": "async-bulk"})
