"""The dashboard's task browser (/offload/tasks/): filters, and pages by keyset."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from offload import bulk_enqueue
from offload.models import TaskRow
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
    assert staff.get("/offload/tasks/?state=lost").status_code == 400
    assert staff.get("/offload/tasks/?since=yesterday").status_code == 400


def test_the_browser_needs_the_view_permission(client):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get("/offload/tasks/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_taskrow"))
    assert client.get("/offload/tasks/").status_code == 200
    assert TaskRow.objects.count() == 0
