"""The Back Office's background work, through the standard ``django.tasks`` API.

Priorities (higher runs first) and queues say what matters when the async servers
are busy::

    notify_applicant     50  notifications  an applicant is waiting for this email
    make_offer_letter    20  default        an underwriter just approved
    check_credit         10  default        external call: slow, sometimes fails, retried
    score_application    10  default
    analyse_statement     0  analysis       CPU work on the uploaded CSV
    sync_crm            -50  crm            nobody waits; at most 2 at once cluster-wide
    portfolio_report   -100  reports        nightly (OPTIONS["PERIODIC"])

An application's processing is a workflow (``loans.workflow.processing``): the
statement analysis and the credit check run in parallel, scoring starts once both
succeeded, and after an approval the offer letter comes before its email. The tasks
that write an application's decision rows (scoring, the offer letter) hold the
concurrency key ``application:<id>`` (``per_application``): two servers never work on
one application at once, while different applications run in parallel; the analysis
and the credit check, which write rows of their own, hold keys of their own kind
(``statement_key``, ``credit_key``), so they run side by side. The bureau call is
rate-limited (``BUREAU_RATE``) across the cluster, and every step is fair-shared by
business (``loans.workflow.start``), so one business's burst of applications does not
hold back another's (docs/flow-control.md).

``score_application`` only writes the application's rows and is ``atomic=True``: its
writes and its success commit together, exactly once. The bureau call, the emails and
the CRM sync reach outside the database and stay at-least-once, made safe to repeat by
their own keys (the application's status, a Notification per kind, the CRM id); the
statement analysis and the offer letter do their CPU work before their short write and
check the status first, so they stay at-least-once too rather than hold a transaction
(on SQLite the one write lock) through that work (docs/backoffice.md).
"""

import hashlib
import random
import time
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Avg, Count, Sum
from django.db.models.functions import TruncWeek
from django.tasks import task
from django.urls import reverse
from django.utils import timezone

from loans import bureau, documents, scoring, statements
from loans.models import Application, CashFlow, CreditReport, CrmSync, Notification, Offer, PortfolioReport, Score
from loans.workflow import advance, start

S = Application.Status


#: The credit bureau's contracted rate, shared by every server (the bucket "bureau").
BUREAU_RATE = "10/s"


def per_application(application_id, *args, **kwargs):
    """The concurrency key of a task that writes application ``application_id``."""
    return f"application:{application_id}"

MESSAGES = {
    "received": ("We received your application",
                 "Thank you. We are analysing your statement and will be in touch shortly."),
    "offered": ("Your loan offer is ready", "Your offer letter is ready to download."),
    "declined": ("About your application",
                 "We are sorry: we cannot offer a loan at this time. You may apply again in 90 days."),
    "accepted": ("Offer accepted", "Thank you for accepting. Funds are usually paid within two working days."),
}


@task(priority=50, queue_name="notifications", max_attempts=5)
def notify_applicant(application_id, kind):
    """One email per application and kind. Sending happens outside any transaction (an
    SMTP server may be slow; on SQLite a transaction holds the database's write lock)."""
    application = Application.objects.select_related("applicant").get(pk=application_id)
    subject, body = MESSAGES[kind]
    note, _ = Notification.objects.get_or_create(application=application, kind=kind, defaults={
        "to": application.applicant.email, "subject": subject})
    if note.sent_at:
        return "already sent"
    link = settings.LOANS_PUBLIC_URL.rstrip("/") + reverse("status", args=[application.reference])
    send_mail(subject, f"Dear {application.applicant.owner_name},\n\n{body}\n\n{link}\n",
              settings.DEFAULT_FROM_EMAIL, [note.to])
    Notification.objects.filter(pk=note.pk).update(sent_at=timezone.now())
    return f"sent {kind}"


def statement_key(application_id, *args, **kwargs):
    """The concurrency key of the statement analysis: one at a time per application,
    in parallel with its credit check (a workflow's group, loans.workflow.processing)."""
    return f"application:{application_id}:statement"


def credit_key(application_id, *args, **kwargs):
    """The concurrency key of the credit check (see statement_key)."""
    return f"application:{application_id}:credit"


#: The states an application may be in while its analysis and credit check run (in
#: parallel, in either order; each records its own milestone).
PROCESSING = (S.SUBMITTED, S.ANALYSED, S.CREDIT_CHECKED)


@task(priority=0, queue_name="analysis", concurrency_key=statement_key)
def analyse_statement(application_id):
    """The cash flow of the uploaded statement (CPU work, before the short write)."""
    application = Application.objects.select_related("statement").get(pk=application_id)
    if CashFlow.objects.filter(application_id=application_id).exists():
        return "already analysed"
    metrics = statements.analyse(statements.parse(bytes(application.statement.content)))
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application_id)
        if CashFlow.objects.filter(application=application).exists():
            return "already analysed"
        CashFlow.objects.create(application=application, metrics=metrics)
        advance(application_id, S.SUBMITTED, S.ANALYSED)  # unless the credit check came first
    return metrics


@task(priority=10, queue_name="default", max_attempts=12, retry_backoff=1.0, retry_backoff_max=300,
      concurrency_key=credit_key, rate_limit=BUREAU_RATE, rate_burst=5, rate_limit_key="bureau")
def check_credit(application_id):
    """Calls the (simulated) bureau; BureauUnavailable fails the attempt and Offload
    retries it with exponential backoff: 12 attempts ride out 10 to 20 minutes of
    outage. After that the task is FAILED and staff retry it from /offload/. The
    bureau's contract allows 10 calls a second (bursts of 5): every server's calls
    together keep to it, waiting READY for their turn (docs/flow-control.md#rate-limits)."""
    application = Application.objects.select_related("applicant").get(pk=application_id)
    if CreditReport.objects.filter(application_id=application_id).exists():
        return "already checked"  # and no needless call to the bureau
    report = bureau.fetch_report(application.applicant.business_name, application.applicant.owner_name)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application_id)
        if CreditReport.objects.filter(application=application).exists():
            return "already checked"
        CreditReport.objects.create(application=application, **report)
        advance(application_id, (S.SUBMITTED, S.ANALYSED), S.CREDIT_CHECKED)
    return report["bureau_score"]


@task(priority=10, queue_name="default", concurrency_key=per_application, atomic=True)
def score_application(application_id):
    """Runs once the analysis and the credit check both succeeded (the workflow's
    fan-in). Only writes the application's rows: atomic=True, so its writes and its
    success commit together, exactly once (docs/reliability.md#exactly-once-effects)."""
    with transaction.atomic():
        application = advance(application_id, PROCESSING, S.SCORED)
        if application is None:
            return "already scored"
        report = CreditReport.objects.filter(application=application).values().get()
        value, grade, reasons = scoring.score(application.cash_flow.metrics, report,
                                              application.applicant.years_in_business)
        Score.objects.create(application=application, value=value, grade=grade, reasons=reasons)
    return {"score": value, "grade": grade}


@task(priority=20, queue_name="default", max_attempts=3, concurrency_key=per_application)
def make_offer_letter(application_id, notify=True):
    """The offer letter, made once: a second run (a rescued task) neither replaces a
    letter the applicant may have downloaded nor emails again."""
    offer = Offer.objects.select_related("application__applicant").defer("pdf").get(application_id=application_id)
    if Offer.objects.filter(pk=offer.pk, pdf__isnull=False).exists():
        return "already made"
    pdf = documents.offer_letter(offer.application, offer)
    with transaction.atomic():
        if not Offer.objects.filter(pk=offer.pk, pdf__isnull=True).update(pdf=pdf):
            return "already made"
        if notify:
            start(offer.application, notify_applicant, "offered")
    return f"{len(pdf)} bytes"


@task(priority=-50, queue_name="crm", max_attempts=5, retry_backoff=2.0)
def sync_crm(application_id):
    """Pushes the application's current state to the (simulated) CRM. Low priority and
    limited to two at once across the cluster (OPTIONS["QUEUE_LIMITS"]): the CRM's API
    allows few concurrent calls. The state is read after the call's latency, so of two
    syncs running together the later state is the one written."""
    reference = Application.objects.values_list("reference", flat=True).get(pk=application_id)
    time.sleep(random.uniform(*getattr(settings, "LOANS_CRM_LATENCY", (0.05, 0.3))))
    crm_id = "CRM-" + hashlib.sha1(reference.encode()).hexdigest()[:10].upper()
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application_id)
        CrmSync.objects.update_or_create(application=application,
                                         defaults={"status": application.status, "crm_id": crm_id})
    return crm_id


@task(priority=-100, queue_name="reports")
def portfolio_report(weeks=12):
    """The nightly portfolio report: totals by status and grade and a weekly chart."""
    since = timezone.now() - timedelta(weeks=weeks)
    apps = Application.objects.filter(created_at__gte=since)
    by_status = {row["status"]: row["n"] for row in apps.values("status").annotate(n=Count("id")).order_by()}
    decided = by_status.get(S.OFFERED, 0) + by_status.get(S.ACCEPTED, 0) + by_status.get(S.DECLINED, 0)
    approved = decided - by_status.get(S.DECLINED, 0)
    grades = {row["grade"]: {"applications": row["n"], "avg_score": round(row["avg"] or 0)}
              for row in Score.objects.filter(application__created_at__gte=since)
              .values("grade").annotate(n=Count("id"), avg=Avg("value")).order_by("grade")}
    accepted = Offer.objects.filter(accepted_at__isnull=False, application__created_at__gte=since)
    weekly = {row["week"]: [row["n"], 0] for row in apps.annotate(week=TruncWeek("created_at"))
              .values("week").annotate(n=Count("id")).order_by("week")}
    for row in (accepted.annotate(week=TruncWeek("application__created_at")).values("week")
                .annotate(total=Sum("amount"))):
        weekly.setdefault(row["week"], [0, 0])[1] = row["total"]
    summary = {
        "weeks": weeks,
        "applications": sum(by_status.values()),
        "by_status": by_status,
        "approval_rate": round(approved / decided, 3) if decided else None,
        "accepted_amount": str(accepted.aggregate(total=Sum("amount"))["total"] or 0),
        "grades": grades,
    }
    chart = documents.volume_chart([(week, n, amount) for week, (n, amount) in sorted(weekly.items())])
    report = PortfolioReport.objects.create(summary=summary, chart_svg=chart)
    return report.pk
