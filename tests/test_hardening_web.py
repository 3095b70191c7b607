"""Bad input and the web surface (issue 10, items 15-20): what enqueue refuses and how,
the size of the dashboard's pages, who may see and act, bad parameters, a second task
database, and what the unauthenticated endpoints give away. Real databases, Django's
test client."""

import json
import sys
import tracemalloc

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from offload import bulk_enqueue
from offload.conf import Options
from offload.dashboard.queries import PREVIEW_CHARS
from offload.exceptions import ArgumentsNotSerializable, InvalidTaskOptions, PayloadTooLarge
from offload.models import QueueState, TaskRow
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


def big_failed_rows(n=5, size=10 * MiB, backend="default"):
    """``n`` FAILED rows with ``size``-character arguments and traceback, as rows stored
    before the limit (or a task raising with a huge message) leave them."""
    from django.utils import timezone

    at = timezone.now()
    text = "x" * size
    error = {"exception_class_path": "builtins.ValueError",
             "traceback": f"Traceback (most recent call last):\nValueError: {text}"}
    return TaskRow.objects.using(task_backends_db(backend)).bulk_create([
        TaskRow(backend=backend, queue_name="default", priority=0, task_path="tests.testapp.tasks.boom",
                payload=json.dumps({"args": [text], "kwargs": {}}), status="FAILED", enqueued_at=at,
                available_at=at, finished_at=at, attempts=1, errors=json.dumps([error]))
        for _ in range(n)])


def task_backends_db(alias):
    from django.tasks import task_backends

    return task_backends[alias].opts.DATABASE


@pytest.fixture
def superuser_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_pages_clip_large_fields_and_link_the_whole_text(superuser_client):
    """Five failed rows with 10 MB arguments made a 55 MB /offload/ page: it is small
    now, the large fields are not read for it, and each whole field is one click away."""
    rows = big_failed_rows()
    # An errors list small enough to be parsed here, and one that is not valid JSON.
    small = tasks.boom.enqueue("short and sweet")
    run_until_empty()
    TaskRow.objects.filter(pk=rows[0].pk).update(errors="{bad" + "y" * MiB)
    tracemalloc.start()
    try:
        page = superuser_client.get("/offload/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.status_code == 200
    body = page.content.decode()
    assert len(page.content) < 200_000, len(page.content)
    assert peak < 20 * MiB, f"the page read {peak:,} bytes: it loaded the large fields"
    # the arguments of each large row
    assert body.count(f"… {len(rows[1].payload) - PREVIEW_CHARS} more characters") == 5
    more = len(json.loads(rows[1].errors)[0]["traceback"]) - PREVIEW_CHARS
    assert body.count(f"… {more} more characters") == 4  # and their tracebacks (one is unreadable)
    assert "short and sweet" in body and "no readable error" in body
    assert f'href="/offload/task/{rows[1].pk}/payload?backend=default"' in body
    assert f'href="/offload/task/{rows[1].pk}/errors?backend=default"' in body

    whole = superuser_client.get(f"/offload/task/{rows[1].pk}/payload?backend=default")
    assert whole.status_code == 200 and whole["Content-Type"] == "text/plain; charset=utf-8"
    assert whole["X-Content-Type-Options"] == "nosniff"
    assert whole.content.decode() == rows[1].payload
    errors = superuser_client.get(f"/offload/task/{small.id}/errors").content.decode()
    assert errors.startswith("--- error 1 of 1: builtins.ValueError\nTraceback") and "short and sweet" in errors
    assert superuser_client.get(f"/offload/task/{rows[0].pk}/errors").content.decode().startswith("{bad")
    missing = superuser_client.get(f"/offload/task/{rows[1].pk}/return_value")
    assert missing.status_code == 404 and missing.content == f"task {rows[1].pk} has no return_value\n".encode()
    assert superuser_client.get(f"/offload/task/{rows[1].pk}/secret").status_code == 404
    assert superuser_client.get("/offload/task/999999/payload").status_code == 404


def test_the_admin_clips_large_fields_too(superuser_client):
    [row] = big_failed_rows(1)
    done = tasks.echo.enqueue("y" * (MiB - 100))
    run_until_empty()
    assert len(TaskRow.objects.get(pk=done.id).return_value) > MiB - 100
    for pk, more in ((row.pk, len(row.payload) - PREVIEW_CHARS), (int(done.id), None)):
        page = superuser_client.get(f"/admin/offload/taskrow/{pk}/change/")
        assert page.status_code == 200 and len(page.content) < 100_000, len(page.content)
        assert f'href="/offload/task/{pk}/payload?backend=default"' in page.content.decode()
        if more:
            assert f"… {more} more characters" in page.content.decode()
    page = superuser_client.get(f"/admin/offload/taskrow/{done.id}/change/").content.decode()
    assert f'href="/offload/task/{done.id}/return_value?backend=default"' in page
    listing = superuser_client.get("/admin/offload/taskrow/")
    assert listing.status_code == 200 and len(listing.content) < 100_000


def staff(client, name, *codenames):
    """Log ``client`` in as a staff user (not a superuser) with these offload permissions."""
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="offload",
                                                         codename__in=codenames))
    client.force_login(user)
    return client


def act(client, action, **data):
    return client.post("/offload/act/", {"action": action, **data})


@pytest.mark.django_db(databases=["default", "tasks"])  # the metrics read every backend
def test_dashboard_needs_the_admins_model_permissions(client):
    """A staff user without permissions got 403 in the admin, yet could read every
    task's arguments and cancel, retry, re-enqueue, pause and resume on /offload/."""
    failed = tasks.boom.enqueue("secret-argument")
    run_until_empty()
    waiting = tasks.noop.enqueue()
    staff(client, "nobody")
    assert client.get("/admin/offload/taskrow/").status_code == 403
    page = client.get("/offload/")
    assert page.status_code == 403 and page["Content-Type"] == "text/plain; charset=utf-8"
    assert b"needs the permission offload.view_taskrow" in page.content
    assert b"secret-argument" not in page.content
    assert client.get(f"/offload/task/{failed.id}/payload").status_code == 403
    for action, data in (("retry", {"task": failed.id}), ("re_enqueue", {"task": failed.id}),
                         ("cancel", {"task": waiting.id}), ("pause", {"queue": "emails"}),
                         ("resume", {"queue": "emails"})):
        response = act(client, action, **data)
        assert response.status_code == 403, action
    assert client.get("/metrics").status_code == 403
    assert dict(TaskRow.objects.values_list("pk", "status")) == {int(failed.id): "FAILED",
                                                                 int(waiting.id): "READY"}
    assert not QueueState.objects.exists() and not LogEntry.objects.exists()

    viewer = staff(Client(), "viewer", "view_taskrow")
    page = viewer.get("/offload/").content.decode()
    assert "secret-argument" in page and "Retry</button>" not in page and "Pause emails" not in page
    assert b"secret-argument" in viewer.get(f"/offload/task/{failed.id}/payload").content
    assert viewer.get("/metrics").status_code == 200
    assert act(viewer, "retry", task=failed.id).status_code == 403
    assert b"needs the permission offload.change_taskrow" in act(viewer, "cancel", task=waiting.id).content

    operator = staff(Client(), "operator", "view_taskrow", "change_taskrow")
    page = operator.get("/offload/").content.decode()
    assert "Retry</button>" in page and "Cancel</button>" in page and "Pause emails" not in page
    assert act(operator, "pause", queue="emails").status_code == 403
    assert act(operator, "retry", task=failed.id).status_code == 302
    assert act(operator, "cancel", task=waiting.id).status_code == 302
    assert act(operator, "re_enqueue", task=waiting.id).status_code == 302
    assert TaskRow.objects.get(pk=failed.id).status == "READY"
    assert TaskRow.objects.get(pk=waiting.id).status == "FAILED"
    assert TaskRow.objects.count() == 3

    queues = staff(Client(), "queues", "view_taskrow", "change_queuestate")
    assert "Pause emails" in queues.get("/offload/").content.decode()
    assert act(queues, "pause", queue="emails").status_code == 302
    assert QueueState.objects.get(queue_name="emails").paused
    assert act(queues, "retry", task=waiting.id).status_code == 403


def test_bad_parameters_get_a_clear_plain_text_400(superuser_client):
    """An unknown queue was echoed unescaped as text/html, task=abc was a 500 and a
    backend that is not Offload's an AttributeError."""
    for data, message in (
        ({"action": "pause", "queue": "<script>alert(1)</script>"},
         "unknown queue '<script>alert(1)</script>' of backend 'default': use one of default, emails, reports"),
        ({"action": "retry", "task": "abc"}, "task='abc': send the id of a task (a whole number)"),
        ({"action": "retry"}, "task='': send the id of a task"),
        ({"action": "cancel", "task": "99999999999999999999"}, "task='99999999999999999999': send the id"),
        ({"action": "explode", "task": "1"}, "unknown action 'explode': use one of retry, cancel, "
                                             "re_enqueue, delete, pause, resume"),
        ({"action": "pause", "queue": "x", "backend": "immediate"},
         "backend='immediate' is not an Offload backend: use one of default, other, elsewhere"),
        ({"action": "pause", "queue": "", "backend": "anyqueue"}, "queue='': send a queue name"),
        ({"action": "pause", "queue": "q" * 101, "backend": "anyqueue"}, "send a queue name (1 to 100"),
    ):
        response = superuser_client.post("/offload/act/", data)
        assert response.status_code == 400, (data, response.content)
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        assert message in response.content.decode(), response.content
    assert not QueueState.objects.exists()
    assert superuser_client.get("/offload/?backend=immediate").status_code == 400
    assert superuser_client.get("/offload/task/1/payload?backend=immediate").status_code == 400
    assert superuser_client.get("/offload/task/99999999999999999999/payload").status_code == 404
    page = superuser_client.get("/offload/").content.decode()
    assert '<option value="default" selected>' in page and '<option value="elsewhere">' in page
    assert 'value="immediate"' not in page
    # Nothing to act on is said as such; an any-queue backend pauses any sane name.
    response = superuser_client.post("/offload/act/", {"action": "retry", "task": "424242"}, follow=True)
    assert "Nothing to do for task 424242." in response.content.decode()
    assert superuser_client.post("/offload/act/", {"action": "pause", "queue": "adhoc",
                                                   "backend": "anyqueue"}).status_code == 302
    assert QueueState.objects.get(backend="anyqueue").queue_name == "adhoc"


@pytest.mark.django_db(databases=["default", "tasks"])
def test_dashboard_acts_on_a_backend_with_its_own_database(superuser_client):
    """The router sends the ORM's task queries to the first backend's database, so a
    FAILED task of "elsewhere" (database "tasks") could not be retried or cancelled."""
    failed = tasks.elsewhere_add.enqueue("a", 1)  # str + int: TypeError
    assert run_until_empty("elsewhere") == 1
    # A task of "default" with the same id, in the other database.
    at = TaskRow.objects.using("tasks").get(pk=failed.id).enqueued_at
    TaskRow.objects.using("default").create(
        id=int(failed.id), backend="default", queue_name="default", priority=0,
        task_path="tests.testapp.tasks.noop", payload='{"args":[],"kwargs":{}}', status="READY",
        enqueued_at=at, available_at=at)
    rows = TaskRow.objects.using("tasks")
    assert rows.get(pk=failed.id).status == "FAILED"
    page = superuser_client.get("/offload/?backend=elsewhere").content.decode()
    assert f'data-task="{failed.id}"' in page and "builtins.TypeError" in page
    response = superuser_client.post("/offload/act/", {"action": "retry", "task": failed.id,
                                                       "backend": "elsewhere"}, follow=True)
    assert f"Task {failed.id} will run again." in response.content.decode()
    assert rows.get(pk=failed.id).status == "READY"
    assert TaskRow.objects.using("default").get(pk=failed.id).status == "READY"  # untouched noop
    response = superuser_client.post("/offload/act/", {"action": "cancel", "task": failed.id,
                                                       "backend": "elsewhere"}, follow=True)
    assert f"Task {failed.id} cancelled." in response.content.decode()
    assert "offload.exceptions.Cancelled" in rows.get(pk=failed.id).errors
    logged = LogEntry.objects.filter(object_id=failed.id).values_list("change_message", "object_repr")
    assert sorted(logged) == [("Cancelled", f"tests.testapp.tasks.elsewhere_add #{failed.id} (FAILED)"),
                              ("Retried", f"tests.testapp.tasks.elsewhere_add #{failed.id} (READY)")]
    superuser_client.post("/offload/act/", {"action": "re_enqueue", "task": failed.id, "backend": "elsewhere"})
    assert rows.filter(task_path="tests.testapp.tasks.elsewhere_add").count() == 2
    assert TaskRow.objects.using("default").filter(task_path__endswith="elsewhere_add").count() == 0
    # The full-field view reads that database too.
    whole = superuser_client.get(f"/offload/task/{failed.id}/payload?backend=elsewhere")
    assert json.loads(whole.content) == {"args": ["a", 1], "kwargs": {}}


@pytest.fixture
def sqlite_variable_limit(db):
    """SQLite as most builds have it: at most 32,766 variables in a statement (Debian's
    allows 250,000; the limit is set on the real connection for the test)."""
    from django.db import connection

    if connection.vendor != "sqlite":
        yield
        return
    import sqlite3

    connection.ensure_connection()
    raw = connection.connection
    before = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    yield
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)


def test_admin_select_all_acts_on_more_rows_than_one_statement_binds(superuser_client,
                                                                      sqlite_variable_limit):
    """"Select all" over more than 32,766 ids broke on SQLite: too many SQL variables."""
    from django.utils import timezone

    n = 40_000
    rows = bulk_enqueue(tasks.noop, [((), {})] * n)
    TaskRow.objects.update(status="FAILED", finished_at=timezone.now())

    def select_all(action):  # as the browser sends it: the page's rows ticked, then "select all"
        return superuser_client.post("/admin/offload/taskrow/", {
            "action": action, "select_across": "1", "index": "0",
            "_selected_action": [r.id for r in rows[:100]]}, follow=True)

    assert f"{n} task(s) will run again." in select_all("retry").content.decode()
    assert TaskRow.objects.filter(status="READY").count() == n
    assert f"{n} task(s) cancelled or asked to stop." in select_all("cancel").content.decode()
    assert TaskRow.objects.filter(status="FAILED", errors__contains="Cancelled").count() == n
    assert LogEntry.objects.filter(change_message="Retried").count() == n
    assert LogEntry.objects.filter(change_message="Cancelled").count() == n


@pytest.fixture
def refusing_database(db):
    """A database alias that really refuses connections: PostgreSQL on a closed port,
    SQLite in a directory that does not exist. Registered as a connection only (not in
    DATABASES), so the test case neither creates nor guards it."""
    from django.db import connections
    from django.db.utils import load_backend

    from tests.conftest import free_port

    settings = dict(connections["default"].settings_dict)
    if settings["ENGINE"].endswith("postgresql"):
        settings.update(HOST="127.0.0.1", PORT=free_port(), PASSWORD="hunter2")
        detail = str(settings["PORT"])
    else:
        settings["NAME"] = "/nonexistent-offload-dir/tasks.sqlite3"
        detail = "unable to open database file"
    connections["down"] = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, "down")
    yield "down", detail
    connections["down"].close()
    del connections["down"]


def test_readyz_says_database_unavailable_and_logs_the_details(refusing_database, caplog):
    """/readyz is unauthenticated; it returned the driver's error with host and port."""
    from django.test import RequestFactory

    from offload.health import HealthMiddleware

    alias, detail = refusing_database
    for ready_before in (False, True):  # starting up, and after it had been ready
        middleware = HealthMiddleware(lambda request: None, db=alias)
        middleware.ready = ready_before
        caplog.clear()
        response = middleware(RequestFactory().get("/readyz"))
        assert response.status_code == 503
        assert json.loads(response.content) == {"ready": False, "reason": "database unavailable"}
        assert detail not in response.content.decode()
        [record] = [r for r in caplog.records if r.name == "offload.health"]
        assert record.levelname == "WARNING" and detail in record.getMessage()
    assert HealthMiddleware(lambda request: None)(RequestFactory().get("/readyz")).status_code == 200


@pytest.mark.django_db(databases=["default", "tasks"])
def test_metrics_token_needs_the_bearer_scheme(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="scrape-me").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic scrape-me").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearerscrape-me").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me!").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="bearer scrape-me").status_code == 200  # RFC 9110
