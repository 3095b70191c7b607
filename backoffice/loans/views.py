import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required, user_passes_test
from django.core.paginator import Paginator
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from loans import statements, timeline, workflow
from loans.forms import ApplyForm, DecisionForm, QueueFilter
from loans.models import Application, Offer, PortfolioReport

staff_required = user_passes_test(lambda u: u.is_active and u.is_staff)


# Public pages -------------------------------------------------------------------

#: Refused before Django reads the body, so an oversized upload never reaches the disk.
MAX_REQUEST = statements.MAX_BYTES + 64 * 1024


def apply(request):
    if request.method == "POST" and int(request.META.get("CONTENT_LENGTH") or 0) > MAX_REQUEST:
        return render(request, "loans/apply.html", {"form": ApplyForm(), "upload_error": (
            f"The upload is larger than {statements.MAX_BYTES // 1024 // 1024} MiB; export a shorter "
            "period and apply again.")}, status=413)
    form = ApplyForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        application = workflow.submit(
            applicant={k: data[k] for k in ("business_name", "owner_name", "email", "industry",
                                            "years_in_business")},
            amount=data["amount"], term_months=data["term_months"], purpose=data["purpose"],
            filename=data["statement"].name, content=form.statement_content)
        return redirect("status", application.reference)
    return render(request, "loans/apply.html", {"form": form}, status=400 if form.errors else 200)


def status(request, reference):
    application = get_object_or_404(Application.objects.select_related("applicant"), reference=reference)
    offer = _offer(application)
    return render(request, "loans/status.html", {
        "application": application, "offer": offer, "letter_ready": bool(offer and offer.letter_ready),
        "steps": _steps(application)})


@require_POST
def accept(request, reference):
    try:
        workflow.accept(reference)
    except Application.DoesNotExist:
        raise Http404 from None
    except workflow.Conflict as exc:
        messages.error(request, str(exc))
    return redirect("status", reference)


def offer_letter(request, reference):
    """The applicant's (or an underwriter's) offer letter."""
    pdf = (Offer.objects.filter(application__reference=reference, pdf__isnull=False)
           .values_list("pdf", flat=True).first())
    if not pdf:
        raise Http404("The offer letter is not ready yet.")
    response = HttpResponse(bytes(pdf), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="offer-{reference}.pdf"'
    return response


def _offer(application):
    """The application's offer without its PDF bytes, with ``letter_ready``: one query."""
    return (Offer.objects.filter(application=application).defer("pdf")
            .annotate(letter_ready=ExpressionWrapper(Q(pdf__isnull=False), output_field=BooleanField()))
            .first())


def _steps(application):
    order = [S for S in Application.Status if S != Application.Status.DECLINED]
    if application.status == Application.Status.DECLINED:
        order = order[:4] + [Application.Status.DECLINED]
    reached = order.index(application.status) if application.status in order else 0
    return [{"label": s.label, "done": i <= reached, "current": i == reached} for i, s in enumerate(order)]


# Staff pages --------------------------------------------------------------------

@login_required
@staff_required
def queue(request):
    form = QueueFilter(request.GET or None)
    rows = Application.objects.select_related("applicant", "score")
    if form.is_valid():
        if form.cleaned_data["status"]:
            rows = rows.filter(status=form.cleaned_data["status"])
        if form.cleaned_data["grade"]:
            rows = rows.filter(score__grade=form.cleaned_data["grade"])
        if text := form.cleaned_data["q"]:
            rows = rows.filter(Q(applicant__business_name__icontains=text) | Q(applicant__owner_name__icontains=text)
                               | Q(reference=text))
    page = Paginator(rows, 25).get_page(request.GET.get("page"))
    counts = {s: 0 for s in Application.Status}
    for row in Application.objects.values("status").annotate(n=Count("id")).order_by():
        counts[Application.Status(row["status"])] = row["n"]
    params = request.GET.copy()
    params.pop("page", None)
    return render(request, "loans/staff/queue.html", {"form": form, "page": page, "counts": counts,
                                                      "query": params.urlencode()})


@login_required
@staff_required
def application(request, pk):
    app = get_object_or_404(Application.objects.select_related("applicant"), pk=pk)
    offer = _offer(app)
    related = {name: getattr(app, name, None) for name in ("cash_flow", "credit_report", "score", "decision")}
    return render(request, "loans/staff/application.html", {
        "application": app, **related,
        "offer": offer,
        "letter_ready": bool(offer and offer.letter_ready),
        "notifications": app.notifications.order_by("created_at"),
        "timeline": timeline.for_application(app),
        "workflows": timeline.workflows(app),
        "request_key": secrets.token_urlsafe(16),
    })


@login_required
@staff_required
@require_POST
def decide(request, pk):
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The decision form was incomplete; reload the page and try again.")
        return redirect("staff-application", pk)
    try:
        decision, created = workflow.decide(pk, approve=form.cleaned_data["action"] == "approve",
                                            user=request.user, request_key=form.cleaned_data["request_key"],
                                            note=form.cleaned_data["note"])
    except Application.DoesNotExist:
        raise Http404 from None
    except workflow.Conflict as exc:
        messages.warning(request, str(exc))
        return redirect("staff-application", pk)
    verb = "approved" if decision.approved else "declined"
    messages.success(request, f"Application #{pk} {verb}." if created
                     else f"Application #{pk} was already {verb} by this request; nothing was repeated.")
    return redirect("staff-application", pk)


@login_required
@staff_required
def reports(request):
    return render(request, "loans/staff/reports.html", {"reports": PortfolioReport.objects.all()[:10]})


@login_required
@staff_required
@require_POST
def run_report(request):
    from loans.tasks import portfolio_report

    portfolio_report.enqueue()
    messages.info(request, "The portfolio report is queued (lowest priority); it appears here when done.")
    return redirect("reports")
