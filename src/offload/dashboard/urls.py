from django.urls import path

from offload.dashboard import views

app_name = "offload"
urlpatterns = [
    path("", views.index, name="dashboard"),
    path("act/", views.act, name="act"),
    path("task/<int:pk>/<str:field>", views.task_field, name="task_field"),
]
