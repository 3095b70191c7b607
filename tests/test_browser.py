"""The dashboard in a real browser (Debian's Chromium driven by Playwright), against a
live server and a real worker process."""

import os

import pytest
from django.contrib.auth.models import User

from offload.models import TaskRow
from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def login(browser, live_server, username, password):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{live_server.url}/admin/login/?next=/offload/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    return page


def test_staff_retries_a_failed_task_and_sees_it_succeed(browser, live_server, start_worker, tmp_path):
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    flag = tmp_path / "fixed"
    failed = tasks.fails_until_fixed.enqueue(str(flag))
    worker = start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: TaskRow.objects.get(pk=failed.id).status == "FAILED", message="failure")
    page = login(browser, live_server, "ops", "pw")
    row = page.locator(f'tr[data-task="{failed.id}"]')
    row.locator("summary").click()
    assert "upstream unavailable" in row.inner_text()
    if os.environ.get("OFFLOAD_SCREENSHOT_DIR"):
        page.screenshot(path=os.path.join(os.environ["OFFLOAD_SCREENSHOT_DIR"], "dashboard.png"),
                        full_page=True)
    flag.write_text("ok")
    row.get_by_role("button", name="Retry").click()
    assert f"Task {failed.id} will run again." in page.locator(".messages").inner_text()
    wait_until(lambda: TaskRow.objects.get(pk=failed.id).status == "SUCCESSFUL", message="success")
    page.goto(f"{live_server.url}/offload/")
    assert page.locator(f'tr[data-task="{failed.id}"]').count() == 0  # no longer failed
    worker.stop()


def test_pause_and_resume_round_trip(browser, live_server):
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    page = login(browser, live_server, "ops", "pw")
    page.get_by_role("button", name="Pause emails").click()
    assert "Queue emails paused." in page.locator(".messages").inner_text()
    page.get_by_role("button", name="Resume emails").click()
    assert "Queue emails resumed." in page.locator(".messages").inner_text()
    assert page.get_by_role("button", name="Pause emails").count() == 1


def test_non_staff_is_refused(browser, live_server):
    User.objects.create_user("visitor", password="pw")
    page = login(browser, live_server, "visitor", "pw")
    assert "/admin/login/" in page.url  # sent back to the login form
    assert page.get_by_role("button", name="Pause emails").count() == 0
