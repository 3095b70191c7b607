from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.tasks import TaskResultStatus

from loans.tasks import notify_applicant, score_application
from offload.models import TaskRow


def home(request):
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:80] or "Ada's Bakery"
        notify_applicant.enqueue(name)
        score_application.enqueue(name)
        return HttpResponseRedirect("/")
    recent = TaskRow.objects.order_by("-id")[:20]
    counts = {s: TaskRow.objects.filter(status=s).count() for s in TaskResultStatus.values}
    return render(request, "loans/home.html", {"recent": recent, "counts": counts})
