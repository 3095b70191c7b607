from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from loans import views
from offload import metrics

urlpatterns = [
    path("", views.apply, name="apply"),
    path("status/<str:reference>/", views.status, name="status"),
    path("status/<str:reference>/accept", views.accept, name="accept"),
    path("status/<str:reference>/offer.pdf", views.offer_letter, name="offer-letter"),
    path("staff/", views.queue, name="staff-queue"),
    path("staff/applications/<int:pk>/", views.application, name="staff-application"),
    path("staff/applications/<int:pk>/decide", views.decide, name="staff-decide"),
    path("staff/reports/", views.reports, name="reports"),
    path("staff/reports/run", views.run_report, name="run-report"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("offload/", include("offload.dashboard.urls")),
    path("metrics", metrics.view),
]
