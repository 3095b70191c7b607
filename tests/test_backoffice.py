"""The Back Office end to end: its own settings, a real database (an SQLite file, or a
PostgreSQL database made for this module), ``offload run`` serving the web role
(gunicorn, two workers) and the async server, driven over real HTTP and by Chromium.

The statement analysis and scoring are plain functions, tested here directly too.
"""

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_until

sys.path.insert(0, str(ROOT / "backoffice"))
from loans import statements  # noqa: E402  (pure Python: no settings needed)

PY = sys.executable
PG = os.environ.get("OFFLOAD_TEST_DB") == "postgres"
PG_URL = urllib.parse.urlsplit(os.environ.get("OFFLOAD_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/"))
pytestmark = pytest.mark.process


# The statement parser and analysis ---------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"", "The file is empty"),
    (b"when,what\n2026-01-01,x", "Line 1 must be the header date,description,amount,balance"),
    (b"date,description,amount,balance\n2026-02-30,rent,-1,1\n", "Line 2: '2026-02-30' is not a date"),
    (b"date,description,amount,balance\n2026-01-01,rent,ten,1\n", "Line 2: amount and balance must be numbers"),
    (b"date,description,amount,balance\n2026-01-01,rent,1\n", "Line 2 has 3 columns"),
    (b"date,description,amount,balance\n2026-03-01,a,1,1\n2026-01-01,b,1,2\n", "comes before the line above"),
    (b"date,description,amount,balance\n2026-03-01,a,1,1\n2026-03-05,b,1,2\n", "covers 5 days; at least 28"),
    ("date,description,amount,balance\n".encode("utf-16"), "not UTF-8"),
    # Inputs that once passed the form and then failed the analysis on the async server:
    (b"date,description,amount,balance\n2026-01-01,a,1e999999,1\n2026-03-01,b,1,1\n", "not an amount we accept"),
    (b"date,description,amount,balance\n2026-01-01,a,1,1e400\n2026-03-01,b,1,1\n", "not an amount we accept"),
    (b"date,description,amount,balance\n2026-01-01,a,1.001,1\n2026-03-01,b,1,1\n", "at most 2 decimal places"),
    (b"date,description,amount,balance\n9999-11-01,a,1,1\n9999-12-31,b,1,1\n", "9999-11-01 is in the future"),
    (b"date,description,amount,balance\n0001-01-01,a,1,1\n2026-01-30,b,1,1\n", "at most 732 are accepted"),
    (b"date,description,amount,balance\n2026-01-01,\"" + b"x" * 200_000 + b",1,1\n", "not valid CSV"),
])
def test_a_malformed_statement_is_refused_with_the_line_and_the_fix(content, message):
    with pytest.raises(statements.StatementError, match=re.escape(message)):
        statements.parse(content)


def test_statement_analysis_finds_the_cash_flow():
    text = ("date,description,amount,balance\n"
            "2026-01-01,CARD SALES,1000.00,1000.00\n2026-01-10,RENT,-1500.00,-500.00\n"
            "2026-01-10,NSF FEE,-35.00,-535.00\n2026-01-12,TRANSFER FROM CUSTOMER,635.00,100.00\n"
            "2026-02-01,CARD SALES,3000.00,3100.00\n2026-02-03,PAYROLL,-1000.00,2100.00\n")
    m = statements.analyse(statements.parse(text))
    assert m["months"] == 2 and m["transactions"] == 6
    assert m["avg_monthly_inflow"] == pytest.approx((1635 + 3000) / 2)
    assert m["avg_monthly_outflow"] == pytest.approx((1535 + 1000) / 2)
    assert m["min_balance"] == -535.0
    assert m["negative_days"] == 2  # 10th and 11th of January (carried over the 11th)
    assert m["overdraft_events"] == 1  # "NSF FEE", not the "nsf" inside "TRANSFER"
    assert 0 <= m["stress_overdraft_probability"] <= 1


def test_generated_statements_parse_and_health_shows_in_the_metrics():
    healthy = statements.analyse(statements.parse(statements.generate("h", health=1.0)))
    failing = statements.analyse(statements.parse(statements.generate("h", health=0.0)))
    assert healthy["avg_monthly_net"] > 0 > failing["avg_monthly_net"]
    assert healthy["stress_overdraft_probability"] < failing["stress_overdraft_probability"]


# The running Back Office -------------------------------------------------------------

class BackOffice:
    """``offload release`` + ``seed_demo`` + ``offload run`` (role all) on a free port."""

    def __init__(self, var):
        self.var, self.port = var, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, DJANGO_SETTINGS_MODULE="backoffice.settings",
                        PYTHONPATH=f"{ROOT / 'backoffice'}:{ROOT}", OFFLOAD_VAR_DIR=str(var),
                        OFFLOAD_STATIC_ROOT=str(var / "static"), DJANGO_DEBUG="0",
                        OFFLOAD_WEB_BIND=f"127.0.0.1:{self.port}", WEB_CONCURRENCY="2",
                        LOANS_PUBLIC_URL=self.url, OFFLOAD_RELEASE="e2e-1", OFFLOAD_ROLE="all")
        if PG:
            self.db = "test_backoffice" + os.environ.get("OFFLOAD_TEST_DB_SUFFIX", "")
            self._pg(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', f'CREATE DATABASE "{self.db}"')
            self.env["DATABASE_URL"] = (f"postgres://{PG_URL.username or 'postgres'}@{PG_URL.hostname}:"
                                        f"{PG_URL.port or 5432}/{self.db}")
        for command in (["offload", "release"], ["collectstatic", "--noinput", "-v0"],
                        ["seed_demo", "--applications", "0", "--staff-password", "s3cret-pass"]):
            subprocess.run([PY, "-m", "django", *command], env=self.env, check=True, capture_output=True)
        self.log = open(var / "server.log", "w")
        self.proc = subprocess.Popen([PY, "-m", "django", "offload", "run"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._ready, timeout=60, message=f"the Back Office at {self.url} (see {var}/server.log)")

    @staticmethod
    def _connect(dbname, **options):
        import psycopg

        return psycopg.connect(host=PG_URL.hostname, port=PG_URL.port or 5432,
                               user=PG_URL.username or "postgres", dbname=dbname, **options)

    def _pg(self, *statements_):
        with self._connect("postgres", autocommit=True) as conn:
            for statement in statements_:
                conn.execute(statement)

    def _ready(self):
        if self.proc.poll() is not None:
            log = (self.var / "server.log").read_text()[-3000:]
            pytest.fail(f"offload run exited with {self.proc.returncode}: {log}")
        try:
            return urllib.request.urlopen(f"{self.url}/readyz", timeout=2).status == 200
        except OSError:
            return False

    def sql(self, query, *params):
        """Rows from the Back Office's database (the test reads it directly)."""
        if PG:
            with self._connect(self.db) as conn:
                return conn.execute(query.replace("?", "%s"), params).fetchall()
        import sqlite3

        with sqlite3.connect(self.var / "backoffice.sqlite3", timeout=20) as conn:
            return conn.execute(query, params).fetchall()

    def stop(self):
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        if PG:
            self._pg(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


@pytest.fixture(scope="module")
def backoffice(tmp_path_factory):
    server = BackOffice(tmp_path_factory.mktemp("backoffice"))
    yield server
    server.stop()


class Session:
    """A browser-less client with cookies and Django's CSRF token."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.read().decode()

    def post(self, path, fields):
        csrf = next(c.value for c in self.jar if c.name == "csrftoken")
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, **fields}).encode()
        request = urllib.request.Request(self.base + path, data=data, headers={"Referer": self.base + path})
        with self.opener.open(request, timeout=30) as response:
            return response.read().decode()

    def login(self, username, password):
        self.get("/accounts/login/")
        page = self.post("/accounts/login/", {"username": username, "password": password, "next": "/staff/"})
        assert "Applications" in page, "login failed"
        return self


def submit(base, path, **overrides):
    """Post the application form (multipart) like a browser would."""
    session = Session(base)
    session.get("/")
    fields = {"business_name": "Test Bakery", "owner_name": "Ada Lovelace", "email": "ada@example.com",
              "industry": "Bakery", "years_in_business": "6", "amount": "20000", "term_months": "24",
              "purpose": "A new oven"} | overrides
    boundary = "----offload-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in {"csrfmiddlewaretoken": next(c.value for c in session.jar if c.name == "csrftoken"),
                          **fields}.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="statement"; filename="{path.name}"\r\n'
                 f"Content-Type: text/csv\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(base + "/", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Referer": base + "/"})
    try:
        with session.opener.open(request, timeout=30) as response:
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.url, exc.read().decode()


def _statement(tmp_path, health=0.95, name="statement.csv"):
    path = tmp_path / name
    path.write_text(statements.generate(f"e2e-{name}", health=health, monthly_revenue=80_000))
    return path


def _scored(backoffice, tmp_path, name):
    status, url, _ = submit(backoffice.url, _statement(tmp_path, name=name), business_name=name)
    assert status == 200 and "/status/" in url
    reference = url.rstrip("/").rsplit("/", 1)[-1]
    wait_until(lambda: backoffice.sql("SELECT status FROM loans_application WHERE reference = ?",
                                      reference) == [("scored",)],
               timeout=60, message="the async server to score the application")
    return backoffice.sql("SELECT id FROM loans_application WHERE reference = ?", reference)[0][0]


def test_a_malformed_statement_gets_a_clear_message_and_nothing_is_saved(backoffice, tmp_path):
    def counts():
        return backoffice.sql("SELECT (SELECT count(*) FROM loans_applicant WHERE business_name = 'Half Saved Ltd'),"
                              " (SELECT count(*) FROM loans_application), (SELECT count(*) FROM loans_document)")

    before = counts()
    bad = tmp_path / "statement.csv"
    bad.write_text("date,description,amount,balance\n2026-01-01,CARD SALES,12O.00,120.00\n")
    status, _, page = submit(backoffice.url, bad, business_name="Half Saved Ltd")
    assert status == 400
    assert "Line 2: amount and balance must be numbers" in page
    # No applicant, application or document (and so no task: tasks take an application).
    assert counts() == before and before[0][0] == 0


def test_an_oversized_upload_is_refused_before_it_is_read(backoffice, tmp_path):
    big = tmp_path / "statement.csv"
    big.write_bytes(b"date,description,amount,balance\n" + b"2026-01-01,x,1.00,1.00\n" * 150_000)  # 3.4 MB
    status, _, page = submit(backoffice.url, big)
    assert status == 413 and "larger than 2 MiB" in page


def test_applicant_to_offer_letter_in_a_browser(backoffice, browser, tmp_path):
    """An applicant applies with a statement; the async server analyses, checks credit and
    scores it; an underwriter sees the task timeline, approves, and the offer letter
    (a real PDF) downloads, for the underwriter and for the applicant."""
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.goto(backoffice.url + "/")
    page.fill("#id_business_name", "Harbour Bakery")
    page.fill("#id_owner_name", "Grace Hopper")
    page.fill("#id_email", "grace@example.com")
    page.select_option("#id_industry", "Bakery")
    page.fill("#id_years_in_business", "8")
    page.fill("#id_amount", "25000")
    page.fill("#id_purpose", "Second oven")
    page.set_input_files("#id_statement", str(_statement(tmp_path)))
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/status/[\w-]+/$"))
    status_url = page.url
    page.wait_for_selector("#status:has-text('Scored')", timeout=60_000)  # the page refreshes itself

    staff = browser.new_page(viewport={"width": 1280, "height": 1500})
    staff.goto(backoffice.url + "/accounts/login/")
    staff.fill("#id_username", "staff")
    staff.fill("#id_password", "s3cret-pass")
    staff.click("button[type=submit]")
    staff.wait_for_url(re.compile(r"/staff/$"))
    staff.click("text=Harbour Bakery")
    timeline = staff.locator("#timeline tbody")
    for name in ("notify_applicant", "analyse_statement", "check_credit", "score_application", "sync_crm"):
        row = timeline.locator("tr", has_text=name).last
        assert "SUCCESSFUL" in row.inner_text() or name == "sync_crm"
    scored = timeline.locator("tr", has_text="score_application").inner_text()
    assert "async · e2e-1" in scored and re.search(r"\d (ms|s|min)\b", scored)  # role, release, waited/ran

    with staff.expect_navigation():
        staff.click("button[value=approve]")
    assert "approved" in staff.locator(".messages").inner_text()
    assert staff.locator("#status").inner_text() == "Offered"
    # The offer letter is made by the async server; reload until its link appears.
    def letter_link():
        staff.reload()
        return staff.locator("#offer-letter").count()

    wait_until(letter_link, timeout=30, interval=0.3, message="the offer letter")
    if os.environ.get("OFFLOAD_SCREENSHOT_DIR"):
        staff.screenshot(path=os.path.join(os.environ["OFFLOAD_SCREENSHOT_DIR"], "backoffice.png"), full_page=True)
    with staff.expect_download() as download:
        staff.click("#offer-letter")
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF-")

    page.goto(status_url)
    page.wait_for_selector("#offer-letter")
    page.click("text=Accept offer")
    page.wait_for_selector("#status:has-text('Accepted')")
    reference = status_url.rstrip("/").rsplit("/", 1)[-1]
    emails = wait_until(lambda: backoffice.sql(
        "SELECT n.kind FROM loans_notification n JOIN loans_application a ON a.id = n.application_id "
        "WHERE a.reference = ? ORDER BY n.kind", reference) == [("accepted",), ("offered",), ("received",)],
        message="the three emails")
    assert emails


def test_two_underwriters_acting_at_once_make_exactly_one_transition(backoffice, tmp_path):
    """Approve and decline posted at the same instant through two sessions (and the two
    gunicorn workers): one wins, the other is told nothing changed. Then a replay of the
    winning post (a double-click) repeats nothing."""
    for round_ in range(3):
        pk = _scored(backoffice, tmp_path, f"race-{round_}")
        underwriters = [Session(backoffice.url).login(name, "s3cret-pass") for name in ("staff", "underwriter")]
        keys = []
        for session in underwriters:
            page = session.get(f"/staff/applications/{pk}/")
            keys.append(re.search(r'name="request_key" value="([\w-]+)"', page).group(1))
        barrier, pages = threading.Barrier(2), [None, None]

        def post(i, action):
            barrier.wait()
            pages[i] = underwriters[i].post(f"/staff/applications/{pk}/decide",
                                            {"action": action, "request_key": keys[i]})

        threads = [threading.Thread(target=post, args=(0, "approve")),
                   threading.Thread(target=post, args=(1, "decline"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        decisions = backoffice.sql("SELECT approved, request_key FROM loans_decision WHERE application_id = ?", pk)
        assert len(decisions) == 1
        winner = keys.index(decisions[0][1])
        (status,), = backoffice.sql("SELECT status FROM loans_application WHERE id = ?", pk)
        assert status == ("offered" if winner == 0 else "declined")
        assert f"Application #{pk} {'approved' if winner == 0 else 'declined'}." in pages[winner]
        # The loser waited on the row lock, then saw the winner's decision (without the
        # lock it would have hit the one-decision constraint, which cannot name anyone).
        assert f"by {('staff', 'underwriter')[winner]} at" in pages[1 - winner]
        assert "nothing was changed" in pages[1 - winner]
        offers = backoffice.sql("SELECT count(*) FROM loans_offer WHERE application_id = ?", pk)[0][0]
        assert offers == (1 if winner == 0 else 0)

        replay = underwriters[winner].post(f"/staff/applications/{pk}/decide",
                                           {"action": "approve" if winner == 0 else "decline",
                                            "request_key": keys[winner]})
        assert "nothing was repeated" in replay
        assert len(backoffice.sql("SELECT 1 FROM loans_decision WHERE application_id = ?", pk)) == 1
        links = backoffice.sql("SELECT name FROM loans_tasklink WHERE application_id = ? AND name IN "
                               "('make_offer_letter', 'notify_applicant')", pk)
        assert links.count(("make_offer_letter",)) == (1 if winner == 0 else 0)


def test_the_portfolio_report_is_made_by_the_async_server_with_its_chart(backoffice):
    staff = Session(backoffice.url).login("staff", "s3cret-pass")
    before = backoffice.sql("SELECT count(*) FROM loans_portfolioreport")[0][0]
    page = staff.post("/staff/reports/run", {})
    assert "The portfolio report is queued" in page
    wait_until(lambda: backoffice.sql("SELECT count(*) FROM loans_portfolioreport")[0][0] > before,
               timeout=60, message="the portfolio report")
    page = staff.get("/staff/reports/")
    assert "<svg" in page and "Applications and accepted volume by week" in page
    (priority, queue), = backoffice.sql("SELECT priority, queue_name FROM offload_task WHERE "
                                        "task_path = 'loans.tasks.portfolio_report' ORDER BY id DESC LIMIT 1")
    assert (priority, queue) == (-100, "reports")


RERUN = """
import django
django.setup()
from loans import tasks
pk = {pk}
print(tasks.analyse_statement.call(pk), tasks.check_credit.call(pk), tasks.score_application.call(pk),
      tasks.notify_applicant.call(pk, "received"), tasks.make_offer_letter.call(pk), sep="|")
"""


def test_every_step_is_safe_to_run_twice(backoffice, tmp_path):
    """A worker killed after a task's work but before recording it means the task runs
    again: each step then finds its work done and changes nothing; accepting twice is
    accepting once."""
    pk = _scored(backoffice, tmp_path, "run-twice")
    staff = Session(backoffice.url).login("staff", "s3cret-pass")
    key = re.search(r'name="request_key" value="([\w-]+)"', staff.get(f"/staff/applications/{pk}/")).group(1)
    staff.post(f"/staff/applications/{pk}/decide", {"action": "approve", "request_key": key})
    (reference,), = backoffice.sql("SELECT reference FROM loans_application WHERE id = ?", pk)

    def emails():
        return backoffice.sql("SELECT kind FROM loans_notification WHERE application_id = ? AND sent_at IS NOT NULL"
                              " ORDER BY kind", pk)

    wait_until(lambda: emails() == [("offered",), ("received",)], message="the offer email")

    def state():
        return backoffice.sql(
            "SELECT (SELECT count(*) FROM loans_cashflow WHERE application_id = ?),"
            " (SELECT count(*) FROM loans_creditreport WHERE application_id = ?),"
            " (SELECT count(*) FROM loans_score WHERE application_id = ?),"
            " (SELECT count(*) FROM loans_tasklink WHERE application_id = ?),"
            " (SELECT pdf FROM loans_offer WHERE application_id = ?),"
            " (SELECT status FROM loans_application WHERE id = ?)", *[pk] * 6)

    keyed = backoffice.sql("SELECT DISTINCT task_path, concurrency_key FROM offload_task WHERE "
                           "concurrency_key IS NOT NULL ORDER BY task_path")
    keyed = [(path, key) for path, key in keyed if key.startswith(f"application:{pk}")]
    assert keyed == [  # the decision's writers hold the application's key; the parallel two their own
        ("loans.tasks.analyse_statement", f"application:{pk}:statement"),
        ("loans.tasks.check_credit", f"application:{pk}:credit"),
        ("loans.tasks.make_offer_letter", f"application:{pk}"),
        ("loans.tasks.score_application", f"application:{pk}")]
    # Its processing is a workflow: analysis and credit check in parallel, then scoring;
    # its offer a chain: the letter, then the email. Both shown on the staff page.
    linked = ("SELECT CAST(task_id AS INTEGER) FROM loans_tasklink WHERE application_id = ? "
              "AND workflow_id IS NOT NULL")
    name = {i: path.rsplit(".", 1)[-1] + "".join(f" {a}" for a in json.loads(payload)["args"][1:])
            for i, path, payload in backoffice.sql(f"SELECT id, task_path, payload FROM offload_task "
                                                   f"WHERE id IN ({linked})", pk)}
    after = {}
    edges = backoffice.sql(f"SELECT parent_id, child_id FROM offload_edge WHERE child_id IN ({linked})", pk)
    for parent, child in edges:
        after.setdefault(name[child], set()).add(name[parent])
    assert sorted(name.values()) == ["analyse_statement", "check_credit", "make_offer_letter False",
                                     "notify_applicant offered", "notify_applicant received",
                                     "score_application", "sync_crm"]
    assert after == {"score_application": {"analyse_statement", "check_credit"},
                     "notify_applicant offered": {"make_offer_letter False"}}
    page = staff.get(f"/staff/applications/{pk}/")
    assert 'data-workflow="processing"' in page and 'data-workflow="offer"' in page
    flow = backoffice.sql("SELECT DISTINCT task_path, rate_key, rate_interval, rate_burst, fair_key FROM "
                          "offload_task WHERE id IN (SELECT CAST(task_id AS INTEGER) FROM loans_tasklink "
                          "WHERE application_id = ?) ORDER BY task_path", pk)
    (business,), = backoffice.sql("SELECT p.business_name FROM loans_application a JOIN loans_applicant p "
                                  "ON p.id = a.applicant_id WHERE a.id = ?", pk)
    assert {row[4] for row in flow} == {f"business:{business}"}  # every step fair-shared by business
    assert [row[1:4] for row in flow if row[1]] == [("bureau", 0.1, 5)]  # only the bureau call is rate-limited
    before = state()
    out = subprocess.run([PY, "-c", RERUN.replace("{pk}", str(pk))], env=backoffice.env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "already analysed|already checked|already scored|already sent|already made"
    assert state() == before and before[0][:3] == (1, 1, 1) and before[0][5] == "offered"
    assert emails() == [("offered",), ("received",)]

    applicant = Session(backoffice.url)
    applicant.get(f"/status/{reference}/")
    for _ in range(2):
        assert "You accepted this offer" in applicant.post(f"/status/{reference}/accept", {})
    wait_until(lambda: emails() == [("accepted",), ("offered",), ("received",)], message="the acceptance email")
    accepted = backoffice.sql("SELECT count(*) FROM loans_tasklink WHERE application_id = ? AND name = "
                              "'notify_applicant'", pk)
    assert accepted == [(3,)]  # received, offered, accepted: the second accept started nothing
