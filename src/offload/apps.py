"""Django app config: registers Offload's system checks."""

from django.apps import AppConfig


class OffloadConfig(AppConfig):
    name = "offload"
    verbose_name = "Offload"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from offload import checks  # noqa: F401  (registers the checks)
