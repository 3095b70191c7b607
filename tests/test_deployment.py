"""``offload.deployment.Deployment``: which database holds what, built once from the
settings and rebuilt when a test overrides TASKS or DATABASES; the router, the registry,
the probes and the supervisor's registry rows all take their databases from it. Example::

    OFFLOAD_TEST_DB=postgres .venv/bin/python -m pytest tests/test_deployment.py -q
"""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.tasks.exceptions import InvalidTaskBackend
from django.test import override_settings

from offload import registry
from offload.deployment import Deployment
from offload.health import Probe
from offload.models import TaskRow
from offload.routers import OffloadRouter
from offload.worker.supervisor import Supervisor

OFFLOAD = "offload.backend.OffloadBackend"


def test_the_test_settings_deployment():
    d = Deployment.current()
    assert "immediate" not in d.backends  # not an Offload backend
    assert d.backends[:3] == ("default", "other", "elsewhere")
    assert d.databases == ("default", "tasks")
    assert (d.home, d.probe) == ("default", "default")
    assert d.database("elsewhere") == d.registry("elsewhere") == "tasks"
    assert d.registry() == "default"
    assert d.store("elsewhere").db_alias == "tasks" and d.store("other").db_alias == "default"
    with pytest.raises(KeyError):
        d.database("immediate")
    with pytest.raises(InvalidTaskBackend):
        d.database("nope")


def test_it_is_built_once_and_again_when_tasks_change():
    assert Deployment.current() is Deployment.current()
    before = Deployment.current()
    tasks = {"elsewhere": {"BACKEND": OFFLOAD, "OPTIONS": {"DATABASE": "tasks"}},
             "bad": {"BACKEND": OFFLOAD, "OPTIONS": {"NOPE": 1}}}
    with override_settings(TASKS=tasks):
        d = Deployment.current()
        assert d.backends == ("elsewhere",)  # an invalid backend is left out (E009 says why)
        assert d.databases == ("tasks",) and d.home == "tasks"
        with pytest.raises(ImproperlyConfigured):
            d.database("bad")  # its own error
        # everything that names databases follows
        assert registry.databases() == ["tasks"] and registry.home() == "tasks"
        assert OffloadRouter().db_for_read(TaskRow) == "tasks"
        assert OffloadRouter().allow_migrate("default", "offload") is False
        assert Supervisor("elsewhere", register=False)._registry_db() == "tasks"
        assert Probe().db == "default"  # the probes check Django's default database
    assert Deployment.current() == before
    assert OffloadRouter().db_for_read(TaskRow) == "default"


def test_the_default_backend_database_comes_first_whatever_the_settings_order():
    tasks = {"elsewhere": {"BACKEND": OFFLOAD, "OPTIONS": {"DATABASE": "tasks"}},
             "default": {"BACKEND": OFFLOAD}}
    with override_settings(TASKS=tasks):
        assert Deployment.current().databases == ("default", "tasks")
        assert OffloadRouter().db_for_read(TaskRow) == "default"


def test_without_an_offload_backend_the_default_database_is_used():
    with override_settings(TASKS={"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}):
        d = Deployment.current()
        assert d.backends == () and d.databases == ("default",) and d.home == "default"
