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
from offload import workflows

S = Application.Status


class Conflict(Exception):
    """The application is no longer in a state that allows the action."""


def _fair(application, task):
    """``task`` fair-shared by business: one business's burst of applications takes
    turns with every other business's (docs/flow-control.md#fair-sharing)."""
    return task.using(fair_key=f"business:{application.applicant.business_name}")


def start(application, task, *args):
    """Enqueue ``task(application.pk, *args)`` and record it on the application's timeline."""
    result = _fair(application, task).enqueue(application.pk, *args)
    TaskLink.objects.create(application=application, task_id=result.id, name=task.name)
    return result


def step(application, task, *args):
    """A workflow step: ``task(application.pk, *args)``, fair-shared by business; it
    receives nothing from the steps before it (every task reads the rows it needs)."""
    return workflows.step(_fair(application, task), application.pk, *args).without_results()


def start_workflow(application, flow):
    """Enqueue workflow ``flow`` (in the caller's transaction) and record its steps on
    the application's timeline."""
    result = flow.enqueue()
    TaskLink.objects.bulk_create([
        TaskLink(application=application, task_id=s.id, name=s.task_path.rsplit(".", 1)[-1],
                 workflow_id=int(result.id)) for s in result.steps])
    return result


def processing(application):
    """An application's processing (docs/backoffice.md#the-workflow): the statement
    analysis and the credit check in parallel, then scoring once both succeeded; the
    "received" email and the CRM sync alongside."""
    from loans import tasks

    flow = workflows.Workflow(f"application {application.reference}: processing")
    flow.add(step(application, tasks.notify_applicant, "received"))
    flow.add(step(application, tasks.sync_crm))
    analysed = flow.add(step(application, tasks.analyse_statement))
    checked = flow.add(step(application, tasks.check_credit))
    flow.add(step(application, tasks.score_application), after=[analysed, checked])
    return flow


def offering(application):
    """After an approval: the offer letter, then the email saying it is ready."""
    from loans import tasks

    flow = workflows.Workflow(f"application {application.reference}: offer")
    flow.add(workflows.chain(step(application, tasks.make_offer_letter, False),
                             step(application, tasks.notify_applicant, "offered")))
    return flow


def submit(*, applicant, amount, term_months, purpose, filename, content):
    with transaction.atomic():
        applicant = Applicant.objects.create(**applicant)
        application = Application.objects.create(applicant=applicant, amount=amount, term_months=term_months,
                                                 purpose=purpose, created_at=timezone.now())
        Document.objects.create(application=application, filename=filename[:200], content=content)
        start_workflow(application, processing(application))
    return application


def advance(application_id, expected, to):
    """Lock the application; if it is in ``expected`` state (or one of them, a tuple)
    move it to ``to`` and return it, else return None (the step already happened)."""
    application = Application.objects.select_for_update().select_related("applicant").get(pk=application_id)
    if application.status not in (expected if isinstance(expected, tuple) else (expected,)):
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
            start_workflow(application, offering(application))
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
