"""Live schedules (docs/operations.md#schedules): made and edited in the admin while
three real servers run, in force on every server within one maintenance tick, one
enqueue per occurrence; settings schedules read-only; "run now"."""

import html
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.tasks import task_backends

from offload.clock import now
from offload.models import Schedule, TaskRow
from offload.worker.scheduler import Scheduler
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_2S = "* * * * * */2"  # a sixth cron field: seconds


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def form(**fields):
    data = {"backend": "default", "name": "every2", "task": "tests.testapp.tasks.logged",
            "cron": EVERY_2S, "timezone": "UTC", "args": '["first"]', "kwargs": "{}",
            "priority": "", "queue_name": "", "missed": "once", "enabled": "on"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def keys_since(at):
    """The key each logged task enqueued after ``at`` was given, in enqueue order."""
    return [json.loads(p)["args"][0] for p in TaskRow.objects.filter(
        task_path="tests.testapp.tasks.logged", enqueued_at__gt=at).order_by("id")
        .values_list("payload", flat=True)]


def all_ticked(servers, twice_after):
    """Every server's scheduler looked at every schedule twice since ``twice_after``
    (counts of its schedules-ticked moments): an edit before is in force everywhere."""
    return all(s.seen("schedules-ticked") >= n + 2 for s, n in zip(servers, twice_after, strict=True))


@pytest.mark.process
def test_an_admin_edit_is_in_force_on_three_servers_within_a_tick(admin_client, start_worker):
    servers = [start_worker("--processes", "1") for _ in range(3)]
    for s in servers:
        s.wait_started()
    response = admin_client.post("/admin/offload/schedule/add/", form())
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get(name="every2")
    assert (schedule.source, schedule.enabled) == (Schedule.DATABASE, True)
    wait_until(lambda: len(keys_since(schedule.changed_at)) >= 2, timeout=30,
               message="two occurrences of the new schedule enqueued")

    # Edit it: new arguments. Once every server ticked twice, every enqueue has them.
    ticks = [s.seen("schedules-ticked") for s in servers]
    response = admin_client.post(f"/admin/offload/schedule/{schedule.pk}/change/",
                                 form(args='["second"]'))
    assert response.status_code == 302, response.content.decode()[:2000]
    wait_until(lambda: all_ticked(servers, ticks), message="every server ticked twice")
    in_force = now()
    wait_until(lambda: len(keys_since(in_force)) >= 1, timeout=30,
               message="an occurrence after the edit")
    assert set(keys_since(in_force)) == {"second"}

    # Disable it from the admin's action: once every server ticked twice, nothing more.
    ticks = [s.seen("schedules-ticked") for s in servers]
    admin_client.post("/admin/offload/schedule/", {"action": "disable",
                                                   "_selected_action": [schedule.pk]})
    wait_until(lambda: all_ticked(servers, ticks), message="every server ticked twice")
    off = now()
    ticks = [s.seen("schedules-ticked") for s in servers]
    wait_until(lambda: all(s.seen("schedules-ticked") >= n + 3 for s, n in zip(servers, ticks, strict=True)),
               message="three more ticks (an occurrence passed)")
    assert keys_since(off) == []

    # One enqueue per occurrence, whichever of the three servers won it: the tasks'
    # enqueue times fall in distinct two-second occurrences.
    times = list(TaskRow.objects.filter(task_path="tests.testapp.tasks.logged")
                 .values_list("enqueued_at", flat=True))
    occurrences = [int(t.timestamp()) // 2 for t in times]
    assert len(occurrences) == len(set(occurrences)) >= 3


def test_run_now_enqueues_once_and_settings_schedules_are_read_only(admin_client):
    admin_client.post("/admin/offload/schedule/add/", form(cron="0 3 * * *", args='["now"]'))
    schedule = Schedule.objects.get(name="every2")
    before = schedule.last_run_at
    response = admin_client.post("/offload/act/", {"backend": "default", "action": "run_schedule",
                                                  "schedule": str(schedule.pk)})
    assert response.status_code == 302
    assert keys_since(now() - timedelta(minutes=1)) == ["now"]
    assert Schedule.objects.get(pk=schedule.pk).last_run_at == before  # its occurrences unchanged

    Scheduler(task_backends["periodic"]).tick(now())  # a server makes the settings row
    tick = Schedule.objects.get(backend="periodic", name="tick")
    assert (tick.source, tick.task, tick.cron) == (Schedule.SETTINGS, "tests.testapp.tasks.periodic_tick",
                                                   EVERY_2S)
    page = admin_client.get(f"/admin/offload/schedule/{tick.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content  # shown, not editable
    assert admin_client.post(f"/admin/offload/schedule/{tick.pk}/change/", form()).status_code == 403


@pytest.mark.parametrize("fields, message", [
    ({"cron": "every day"}, "is not a cron expression"),
    ({"task": "tests.testapp.tasks.nosuch"}, "is not a task Offload can import"),
    ({"args": '{"a": 1}'}, "args must be a list"),
    ({"timezone": "Mars/Base"}, "unknown timezone"),
    ({"backend": "periodic", "name": "tick"}, "declares a schedule named 'tick'"),
])
def test_a_bad_schedule_is_refused_by_the_admin_form(admin_client, fields, message):
    response = admin_client.post("/admin/offload/schedule/add/", form(**fields))
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert not Schedule.objects.filter(source=Schedule.DATABASE).exists()


def test_the_dashboard_disables_and_enables_a_database_schedule(admin_client):
    admin_client.post("/admin/offload/schedule/add/", form(cron="0 3 * * *"))
    schedule = Schedule.objects.get(name="every2")
    act = {"backend": "default", "schedule": str(schedule.pk)}
    assert b'value="disable_schedule"' in admin_client.get("/offload/").content
    admin_client.post("/offload/act/", {**act, "action": "disable_schedule"})
    assert Schedule.objects.get(pk=schedule.pk).enabled is False
    page = admin_client.get("/offload/").content.decode()
    assert 'value="enable_schedule"' in page and "disabled" in page
    admin_client.post("/offload/act/", {**act, "action": "enable_schedule"})
    again = Schedule.objects.get(pk=schedule.pk)
    assert again.enabled is True and again.changed_at > schedule.changed_at
