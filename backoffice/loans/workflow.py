"""State changes of an application. Every change happens inside a transaction that
holds the application's row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's
IMMEDIATE transactions hold the database's write lock), checks the current state,
and enqueues the follow-up work in the same transaction: the tasks exist if and only
if the change committed.

Tasks may run more than once (a worker killed after the work but before recording
it), so each step is idempotent: it only advances an application from the state it
expects.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from loans import scoring
from loans.models import Applicant, Application, Decision, Document, Offer, TaskLink

S = Application.Status


class Conflict(Exception):
    """The application is no longer in a state that allows the action."""


def start(application, task, *args):
    """Enqueue ``task(application.pk, *args)`` and record it on the application's timeline.
    Applications are fair-shared by business: one business's burst of applications takes
    turns with every other business's (docs/flow-control.md#fair-sharing)."""
    result = task.using(fair_key=f"business:{application.applicant.business_name}").enqueue(
        application.pk, *args)
    TaskLink.objects.create(application=application, task_id=result.id, name=task.name)
    return result


def submit(*, applicant, amount, term_months, purpose, filename, content):
    from loans import tasks

    with transaction.atomic():
        applicant = Applicant.objects.create(**applicant)
        application = Application.objects.create(applicant=applicant, amount=amount, term_months=term_months,
                                                 purpose=purpose, created_at=timezone.now())
        Document.objects.create(application=application, filename=filename[:200], content=content)
        start(application, tasks.notify_applicant, "received")
        start(application, tasks.analyse_statement)
        start(application, tasks.sync_crm)
    return application


def advance(application_id, expected, to):
    """Lock the application; if it is in ``expected`` state move it to ``to`` and return
    it, else return None (the step already happened)."""
    application = Application.objects.select_for_update().select_related("applicant").get(pk=application_id)
    if application.status != expected:
        return None
    application.status = to
    application.save(update_fields=["status", "updated_at"])
    return application


def decide(application_id, *, approve, user, request_key, note=""):
    """An underwriter's decision. Returns ``(decision, created)``: a replayed post (same
    ``request_key``) returns the first decision with ``created=False``; a post on an
    application someone else already decided raises :class:`Conflict`."""
    from loans import tasks

    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application_id)
        earlier = Decision.objects.filter(request_key=request_key, application=application).first()
        if earlier is not None:
            return earlier, False
        if application.status != S.SCORED:
            decided = Decision.objects.filter(application=application).select_related("decided_by").first()
            who = f" by {decided.decided_by} at {decided.decided_at:%H:%M:%S}" if decided else ""
            raise Conflict(f"Application #{application.pk} is already {application.get_status_display().lower()}"
                           f"{who}; nothing was changed.")
        terms = approve and scoring.offer_terms(application.amount, application.term_months,
                                                application.score.grade, application.cash_flow.metrics)
        if approve and not terms:
            raise Conflict(f"The cash flow of application #{application.pk} supports no loan of at least "
                           f"{scoring.MIN_LOAN:,.0f}; decline it instead.")
        try:
            with transaction.atomic():
                decision = Decision.objects.create(application=application, approved=approve, note=note[:500],
                                                   decided_by=user, request_key=request_key)
        except IntegrityError:  # the one-decision rule, should the row lock not hold
            raise Conflict(f"Application #{application.pk} was decided by someone else; nothing was changed.") from None
        if approve:
            Offer.objects.create(application=application, **terms)
            application.status = S.OFFERED
            start(application, tasks.make_offer_letter)
        else:
            application.status = S.DECLINED
            start(application, tasks.notify_applicant, "declined")
        application.save(update_fields=["status", "updated_at"])
        start(application, tasks.sync_crm)
    return decision, True


def accept(reference):
    """The applicant accepts their offer (idempotent: accepting twice is accepting)."""
    from loans import tasks

    with transaction.atomic():
        application = Application.objects.select_for_update().get(reference=reference)
        if application.status == S.ACCEPTED:
            return application
        if application.status != S.OFFERED:
            raise Conflict("This application has no open offer to accept.")
        if not Offer.objects.filter(application=application, pdf__isnull=False).exists():
            raise Conflict("Your offer letter is still being prepared; accept once you have read it.")
        application.status = S.ACCEPTED
        application.save(update_fields=["status", "updated_at"])
        Offer.objects.filter(application=application).update(accepted_at=timezone.now())
        start(application, tasks.notify_applicant, "accepted")
        start(application, tasks.sync_crm)
    return application
