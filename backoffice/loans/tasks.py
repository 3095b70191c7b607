"""Background work of the Back Office (a skeleton; the Back Office issue fills it in)."""

import hashlib

from django.tasks import task


@task(priority=50, queue_name="notifications", max_attempts=3)
def notify_applicant(name):
    return f"notified {name}"


@task(priority=-50, queue_name="analysis")
def score_application(name):
    digest = hashlib.sha256(name.encode()).digest()
    return 300 + digest[0] * 2  # a stand-in score
