"""The dashboard's task browser (/offload/tasks/): filters, and pages by keyset."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from offload import bulk_enqueue
from offload.models import Server, TaskRow
from offload.testing import run_until_empty
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def ids(page):
    return [int(i) for i in re.findall(r'data-task="(\d+)"', page)]


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_filters_and_keyset_pages(staff):
    done = bulk_enqueue(tasks.noop, [((), {})] * 120)
    run_until_empty()
    failed = tasks.boom.enqueue("x")
    run_until_empty()
    later = tasks.noop.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    urgent = tasks.add.using(priority=60).enqueue(1, 2)

    first = staff.get("/offload/tasks/").content.decode()
    assert ids(first)[:3] == [int(urgent.id), int(later.id), int(failed.id)] and len(ids(first)) == 50
    older = re.search(r'id="older" href="\?([^"]+)"', first).group(1).replace("&amp;", "&")
    second = staff.get(f"/offload/tasks/?{older}").content.decode()
    assert ids(second) == list(range(ids(first)[-1] - 1, ids(first)[-1] - 51, -1))
    newer = re.search(r'id="newer" href="\?([^"]+)"', second).group(1).replace("&amp;", "&")
    assert ids(staff.get(f"/offload/tasks/?{newer}").content.decode()) == ids(first)

    assert ids(staff.get("/offload/tasks/?state=failed").content.decode()) == [int(failed.id)]
    assert ids(staff.get("/offload/tasks/?state=scheduled").content.decode()) == [int(later.id)]
    assert ids(staff.get("/offload/tasks/?band=urgent").content.decode()) == [int(urgent.id)]
    assert ids(staff.get("/offload/tasks/?queue=emails").content.decode()) == [int(urgent.id)]
    assert ids(staff.get("/offload/tasks/?task=tests.testapp.tasks.boom").content.decode()) == [int(failed.id)]
    assert len(ids(staff.get("/offload/tasks/?task=tests.testapp.&state=successful").content.decode())) == 50
    assert ids(staff.get(f"/offload/tasks/?id={done[7].id}").content.decode()) == [int(done[7].id)]
    server = TaskRow.objects.get(pk=failed.id).worker_ids.rsplit("-", 2)[0]  # run inline here
    assert int(failed.id) in ids(staff.get(f"/offload/tasks/?server={server}").content.decode())
    assert ids(staff.get("/offload/tasks/?server=elsewhere-1").content.decode()) == []
    assert ids(staff.get("/offload/tasks/?release=never-deployed").content.decode()) == []
    Server.objects.create(id=server, host="h", pid=1, role="async", release="r7",
                          started_at=timezone.now(), heartbeat_at=timezone.now())
    assert int(failed.id) in ids(staff.get("/offload/tasks/?release=r7&state=failed").content.decode())
    assert staff.get("/offload/tasks/?state=lost").status_code == 400
    assert staff.get("/offload/tasks/?since=yesterday").status_code == 400


def test_the_browser_needs_the_view_permission(client):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get("/offload/tasks/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_taskrow"))
    assert client.get("/offload/tasks/").status_code == 200
    assert TaskRow.objects.count() == 0


def test_a_task_page_shows_its_attempts_times_and_actions(staff, client):
    failed = tasks.flaky.using(priority=10).enqueue(succeed_on=9)  # fails its 3 attempts
    for _ in range(3):
        run_until_empty()
        TaskRow.objects.filter(pk=failed.id).update(available_at=timezone.now())  # no backoff wait
    row = TaskRow.objects.get(pk=failed.id)
    assert (row.status, row.attempts) == ("FAILED", 3)
    page = staff.get(f"/offload/task/{failed.id}/").content.decode()
    assert page.count('data-attempt="') == 3 and page.count("<summary>") == 3  # an error each
    assert "inline-" in page and "tests.testapp.tasks.flaky" in page
    assert 'class="phase waited"' in page and 'class="phase ran"' in page
    buttons = re.findall(r'name="action" value="(\w+)"', page)
    assert buttons == ["retry", "re_enqueue", "delete"]  # not cancel: it finished
    assert staff.get("/offload/task/999999999/").status_code == 404

    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_taskrow"))
    client.force_login(viewer)
    page = client.get(f"/offload/task/{failed.id}/").content.decode()
    assert 'data-attempt="1"' in page and 'name="action"' not in page  # sees, cannot act
    forged = client.post("/offload/act/", {"action": "retry", "task": failed.id})
    assert forged.status_code == 403 and "offload.change_taskrow" in forged.content.decode()
    assert TaskRow.objects.get(pk=failed.id).status == "FAILED"


def test_a_bulk_retry_confirms_the_count_then_retries_in_batches(staff):
    from django.contrib.admin.models import LogEntry

    from offload.dashboard import views

    failed = bulk_enqueue(tasks.boom, [(("x",), {})] * 25)
    bulk_enqueue(tasks.noop, [((), {})] * 5)
    run_until_empty()
    confirm = staff.get("/offload/tasks/bulk/?state=failed&action=retry").content.decode()
    assert re.search(r"<strong>25</strong> tasks", confirm)
    upto = re.search(r'name="upto" value="(\d+)"', confirm).group(1)
    later = tasks.boom.enqueue("late")  # fails after the confirmation: left alone
    run_until_empty()
    views.BULK_BATCH, batch = 10, views.BULK_BATCH
    try:
        done = staff.post("/offload/tasks/bulk/?state=failed",
                          {"action": "retry", "upto": upto, "count": "25"}, follow=True)
    finally:
        views.BULK_BATCH = batch
    assert "Retry: 25 of the 25 matching tasks, in 3 batches" in done.content.decode()
    assert set(TaskRow.objects.filter(status="READY").values_list("pk", flat=True)) == {int(r.id) for r in failed}
    assert TaskRow.objects.get(pk=later.id).status == "FAILED"
    assert LogEntry.objects.filter(change_message="Retried").count() == 25
    assert staff.get("/offload/tasks/bulk/?action=explode").status_code == 400


def test_bulk_delete_takes_finished_tasks_only(staff):
    done = bulk_enqueue(tasks.noop, [((), {})] * 4)
    run_until_empty()
    waiting = tasks.noop.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    confirm = staff.get("/offload/tasks/bulk/?task=tests.testapp.tasks.noop&action=delete").content.decode()
    assert "<strong>4</strong> tasks" in confirm
    upto = re.search(r'name="upto" value="(\d+)"', confirm).group(1)
    staff.post("/offload/tasks/bulk/?task=tests.testapp.tasks.noop", {"action": "delete", "upto": upto, "count": "4"})
    assert list(TaskRow.objects.values_list("pk", flat=True)) == [int(waiting.id)]
    assert not TaskRow.objects.filter(pk__in=[int(r.id) for r in done]).exists()


def test_sorting_by_run_time_and_the_per_task_table_put_the_slow_task_first(staff):
    bulk_enqueue(tasks.logged, [((f"q{i}",), {}) for i in range(5)])
    slow = bulk_enqueue(tasks.span, [((f"s{i}",), {"sleep": 0.2}) for i in range(2)])
    bulk_enqueue(tasks.logged, [((f"r{i}",), {}) for i in range(5)])
    run_until_empty()
    by_run = ids(staff.get("/offload/tasks/?sort=run").content.decode())
    assert set(by_run[:2]) == {int(r.id) for r in slow} and len(by_run) == 12
    table = staff.get("/offload/stats/?sort=run_p95").content.decode()
    assert re.findall(r'data-task-path="([^"]*)"', table) == [
        "tests.testapp.tasks.span", "tests.testapp.tasks.logged"]
    by_count = staff.get("/offload/stats/?sort=tasks&window=24h").content.decode()
    assert re.findall(r'data-task-path="([^"]*)"', by_count)[0] == "tests.testapp.tasks.logged"
    charts = staff.get("/offload/stats/?task=tests.testapp.tasks.span").content.decode()
    assert charts.count('<figure class="chart"') == 4 and "span: 2" not in charts
    assert re.search(r"<title>\d\d:\d\d · finished: 2</title>", charts)
    assert staff.get("/offload/stats/?window=3y").status_code == 400
