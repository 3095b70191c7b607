from django.urls import include, path

urlpatterns = [path("offload/", include("offload.dashboard.urls"))]
