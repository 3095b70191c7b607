from django.contrib import admin
from django.urls import include, path

from loans import views
from offload import metrics

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("offload/", include("offload.dashboard.urls")),
    path("metrics", metrics.view),
]
