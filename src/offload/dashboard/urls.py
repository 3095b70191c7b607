"""The dashboard's URLs: ``path("offload/", include("offload.dashboard.urls"))``.

Without "offload" in INSTALLED_APPS this include still imports: it serves one page that
says so, and the URL checks report ``offload.E003``: ``manage.py check`` names the
missing line even when nothing of Offload was imported before the checks ran (the
backend's own check runs only once ``django.tasks`` is imported).
"""

from django.apps import apps
from django.urls import URLPattern, path
from django.urls.resolvers import RoutePattern

app_name = "offload"


class _MissingApp(URLPattern):
    def check(self):
        from django.core.checks import Error

        from offload.checks import MISSING_APP_HINT

        return [Error("The URLs include offload.dashboard.urls, but 'offload' is not in "
                      "INSTALLED_APPS.", hint=MISSING_APP_HINT, id="offload.E003")]


def _missing_app_view(request, *args, **kwargs):
    from django.http import HttpResponseServerError

    from offload.checks import MISSING_APP_HINT

    return HttpResponseServerError(f"Offload is not installed. {MISSING_APP_HINT}\n",
                                   content_type="text/plain")


if apps.is_installed("offload"):
    from offload.dashboard import views

    urlpatterns = [
        path("", views.index, name="dashboard"),
        path("act/", views.act, name="act"),
        path("task/<int:pk>/", views.task, name="task"),
        path("task/<int:pk>/<str:field>", views.task_field, name="task_field"),
        path("workflow/<int:pk>/", views.workflow, name="workflow"),
        path("tasks/", views.tasks, name="tasks"),
        path("tasks/bulk/", views.bulk, name="bulk"),
        path("stats/", views.stats, name="stats"),
    ]
else:
    urlpatterns = [_MissingApp(RoutePattern("", is_endpoint=False), _missing_app_view, name="dashboard")]
