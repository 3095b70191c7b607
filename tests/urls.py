"""URLs of the test project: the admin, and a view that enqueues a logged task."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from offload import metrics


def enqueue(request):
    from tests.testapp.tasks import logged

    result = logged.enqueue(request.GET["key"], sleep=float(request.GET.get("sleep", 0)))
    return JsonResponse({"id": result.id})


urlpatterns = [path("enqueue", enqueue), path("admin/", admin.site.urls),
               path("offload/", include("offload.dashboard.urls")),
               path("metrics", metrics.view)]
