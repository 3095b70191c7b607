"""One view for the process tests: enqueue a logged task, as a web request would."""

from django.http import JsonResponse
from django.urls import path


def enqueue(request):
    from tests.testapp.tasks import logged

    result = logged.enqueue(request.GET["key"], sleep=float(request.GET.get("sleep", 0)))
    return JsonResponse({"id": result.id})


urlpatterns = [path("enqueue", enqueue)]
