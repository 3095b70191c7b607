"""Load on the Back Office's web role: underwriters browsing the queue, applications
and the portfolio; applicants checking their status and applying with a bank
statement. Each simulated user waits an exponentially distributed time (mean 1 s)
between requests: arrivals are close to a Poisson stream of ``users`` requests a
second, not synchronised bursts, and nearly the same rate in every arrangement while
responses stay well under a second.

Run by bench/isolation.py (which passes the data it seeded in ``BACKOFFICE_LOAD_DATA``,
a JSON file of application ids, references, statements and a staff session id); by hand::

    bench/.venv-load/bin/locust -f bench/load/locustfile.py --headless -u 20 -r 20 \
        -t 30s --host http://127.0.0.1:8000
"""

import json
import os
import random
import re

from locust import HttpUser, task

DATA = json.loads(open(os.environ["BACKOFFICE_LOAD_DATA"]).read())
PASSWORD = os.environ.get("BACKOFFICE_STAFF_PASSWORD", "staff")
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def poisson(user):
    return random.expovariate(1.0)


class Underwriter(HttpUser):
    weight = 3
    wait_time = poisson

    def on_start(self):
        if DATA.get("session"):  # logged in once beforehand: no password hashing in the load
            self.client.cookies.set("sessionid", DATA["session"])
            return
        page = self.client.get("/accounts/login/", name="login page")
        self.client.post("/accounts/login/", name="login", data={
            "csrfmiddlewaretoken": TOKEN.search(page.text).group(1), "username": "staff",
            "password": PASSWORD, "next": "/staff/"})

    @task(3)
    def queue(self):
        status = random.choice(["", "scored", "offered", "declined", "accepted"])
        self.client.get(f"/staff/?status={status}", name="staff: queue")

    @task(5)
    def application(self):
        self.client.get(f"/staff/applications/{random.choice(DATA['ids'])}/", name="staff: application")

    @task(1)
    def reports(self):
        self.client.get("/staff/reports/", name="staff: portfolio")


class Applicant(HttpUser):
    weight = 1
    wait_time = poisson

    @task(6)
    def status(self):
        self.client.get(f"/status/{random.choice(DATA['references'])}/", name="applicant: status")

    @task(1)
    def apply(self):
        page = self.client.get("/", name="applicant: form")
        n = random.randrange(10**9)
        self.client.post("/", name="applicant: apply", data={
            "csrfmiddlewaretoken": TOKEN.search(page.text).group(1), "business_name": f"Load Test {n}",
            "owner_name": "Load Tester", "email": "load@example.com", "industry": "Retail",
            "years_in_business": "4", "amount": "30000", "term_months": "24", "purpose": "Stock"},
            files={"statement": ("statement.csv", random.choice(DATA["statements"]), "text/csv")})
