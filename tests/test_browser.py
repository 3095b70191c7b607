"""The dashboard in a real browser (Debian's Chromium driven by Playwright), against a
live server and a real worker process."""

import os
import shutil

import pytest
from django.contrib.auth.models import User
from django.db import connections

from offload.models import TaskRow
from tests.conftest import wait_until
from tests.testapp import tasks

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


@pytest.fixture
def browser(monkeypatch):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: /usr/bin/chromium is required (apt install chromium)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls
    # are still synchronous (Django documents this switch for exactly this case).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield browser
        browser.close()
        # While Playwright's sync API is open this thread has a running event loop, so
        # Django's connections (asgiref's thread-critical Local) live in context-variable
        # storage: the connection the test opened in here is not the one the test
        # teardown closes once Playwright has stopped, and it would stay open until the
        # end of the run, when PostgreSQL refuses to drop the test database.
        connections.close_all()


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
