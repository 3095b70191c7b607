"""A small-business lending back office.

An application moves through one workflow; the web role starts it and the async
server drives it::

    submitted → analysed → credit_checked → scored → offered → accepted
                                                   ↘ declined

Files (statements, offer letters) are stored in the database, not on a disk: web and
async servers run on different machines and share only the database.
"""

import secrets
from decimal import Decimal

from django.conf import settings
from django.db import models


def new_reference():
    return secrets.token_urlsafe(9)


class Applicant(models.Model):
    business_name = models.CharField(max_length=120)
    owner_name = models.CharField(max_length=120)
    email = models.EmailField()
    industry = models.CharField(max_length=60)
    years_in_business = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.business_name


class Application(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        ANALYSED = "analysed", "Documents analysed"
        CREDIT_CHECKED = "credit_checked", "Credit checked"
        SCORED = "scored", "Scored — awaiting decision"
        OFFERED = "offered", "Offered"
        DECLINED = "declined", "Declined"
        ACCEPTED = "accepted", "Accepted"

    applicant = models.ForeignKey(Applicant, on_delete=models.CASCADE, related_name="applications")
    #: The applicant's link to their status page (unguessable).
    reference = models.CharField(max_length=16, unique=True, default=new_reference)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    term_months = models.PositiveSmallIntegerField()
    purpose = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self):
        return f"#{self.pk} {self.applicant} {self.amount}"


class Document(models.Model):
    """An uploaded bank statement (CSV), validated before it was saved."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="statement")
    filename = models.CharField(max_length=200)
    content = models.BinaryField()
    uploaded_at = models.DateTimeField(auto_now_add=True)


class CashFlow(models.Model):
    """What the statement analysis found (see loans.statements.analyse)."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="cash_flow")
    metrics = models.JSONField()
    analysed_at = models.DateTimeField(auto_now_add=True)


class CreditReport(models.Model):
    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="credit_report")
    bureau_reference = models.CharField(max_length=40)
    bureau_score = models.PositiveSmallIntegerField()
    open_accounts = models.PositiveSmallIntegerField()
    delinquencies = models.PositiveSmallIntegerField()
    inquiries_6m = models.PositiveSmallIntegerField()
    fetched_at = models.DateTimeField(auto_now_add=True)


class Score(models.Model):
    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="score")
    value = models.PositiveSmallIntegerField()
    grade = models.CharField(max_length=1)
    reasons = models.JSONField(default=list)
    scored_at = models.DateTimeField(auto_now_add=True)


class Decision(models.Model):
    """An underwriter's approve or decline. One per application (the database refuses a
    second), and one per form post: ``request_key`` makes a replayed post a no-op."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="decision")
    approved = models.BooleanField()
    note = models.CharField(max_length=500, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(auto_now_add=True)
    request_key = models.CharField(max_length=64, unique=True)


class Offer(models.Model):
    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="offer")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    apr = models.DecimalField(max_digits=5, decimal_places=2)
    term_months = models.PositiveSmallIntegerField()
    monthly_payment = models.DecimalField(max_digits=12, decimal_places=2)
    #: The offer letter; empty until the async server has made it.
    pdf = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    @property
    def total_repayable(self):
        return (self.monthly_payment * self.term_months).quantize(Decimal("0.01"))


class Notification(models.Model):
    """An email to an applicant, one row per application and kind. The row is committed
    before sending and marked sent after: a worker lost in between sends again on the
    retry (at least once — a duplicate beats a lost "your offer is ready")."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20)
    to = models.EmailField()
    subject = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "kind"], name="one_notification_per_kind")]


class CrmSync(models.Model):
    """The last state pushed to the (simulated) CRM for an application."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="crm")
    status = models.CharField(max_length=20)
    crm_id = models.CharField(max_length=40)
    synced_at = models.DateTimeField(auto_now=True)


class TaskLink(models.Model):
    """A background task started for an application (its timeline reads these), and the
    Offload workflow it is a step of, if any."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="tasks")
    task_id = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    workflow_id = models.BigIntegerField(null=True, blank=True)


class PortfolioReport(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    summary = models.JSONField()
    #: The weekly volume chart (SVG, drawn by matplotlib).
    chart_svg = models.TextField()

    class Meta:
        ordering = ["-created_at"]
