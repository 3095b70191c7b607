"""Django admin for tasks and servers: read-mostly, with the operator's actions.

Retry, cancel and re-enqueue call the same store methods and backend the rest of
Offload uses; every action is recorded in the admin log (LogEntry) and shown back.
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from offload.clock import now
from offload.dashboard import actions, queries
from offload.models import QueueState, Schedule, Server, TaskRow
from offload.results import import_task


class ReadOnly:
    """Rows are written by Offload, not edited by hand; actions need the model's change
    permission (``has_operate_permission``)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


@admin.register(TaskRow)
class TaskRowAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("id", "task_path", "queue_name", "priority", "status", "enqueued_at",
                    "started_at", "finished_at", "attempts", "rescues")
    list_filter = ("status", "backend", "queue_name")
    search_fields = ("=id", "task_path", "unique_key")
    ordering = ("-id",)
    show_full_result_count = False  # no count(*) over a large table on every page
    actions = ("retry", "cancel", "re_enqueue")
    # The large fields are shown clipped, with a link to the whole text; lists never read them.
    readonly_fields = fields = [f.name if f.name not in queries.LARGE_FIELDS else f"{f.name}_clipped"
                                for f in TaskRow._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*queries.LARGE_FIELDS)

    def _clipped(self, obj, field):
        if not hasattr(obj, "_previews"):
            obj._previews = (queries.previewed(TaskRow.objects.using(obj._state.db),
                                               queries.LARGE_FIELDS)
                             .values(*(f"{f}_{part}" for f in queries.LARGE_FIELDS
                                       for part in ("head", "length"))).get(pk=obj.pk))
        clip = queries.clip(obj._previews[f"{field}_head"], obj._previews[f"{field}_length"])
        if clip is None:
            return "-"
        if not clip["more"]:
            return clip["text"]
        try:  # the dashboard's URLs may not be included
            url = reverse("offload:task_field", args=[obj.pk, field])
        except NoReverseMatch:
            return format_html("{}<span>… {} more characters</span>", clip["text"], clip["more"])
        return format_html('{}<span>… {} more characters</span> <a href="{}?{}">full text</a>',
                           clip["text"], clip["more"], url, urlencode({"backend": obj.backend}))

    @admin.display(description="payload")
    def payload_clipped(self, obj):
        return self._clipped(obj, "payload")

    @admin.display(description="errors")
    def errors_clipped(self, obj):
        return self._clipped(obj, "errors")

    @admin.display(description="return value")
    def return_value_clipped(self, obj):
        return self._clipped(obj, "return_value")

    @admin.action(description="Retry failed tasks now", permissions=["operate"])
    def retry(self, request, queryset):
        n = actions.retry(request.user, queryset)
        self.message_user(request, f"{n} task(s) will run again.", messages.SUCCESS)

    @admin.action(description="Cancel tasks (running ones are asked to stop)", permissions=["operate"])
    def cancel(self, request, queryset):
        n = actions.cancel(request.user, queryset)
        self.message_user(request, f"{n} task(s) cancelled or asked to stop.", messages.SUCCESS)

    @admin.action(description="Enqueue a copy (same task and arguments)", permissions=["operate"])
    def re_enqueue(self, request, queryset):
        created = actions.re_enqueue(request.user, queryset)
        self.message_user(request, f"Enqueued {len(created)} new task(s): {', '.join(created)}.",
                          messages.SUCCESS)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Server)
class ServerAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("id", "role", "release", "state", "heartbeat_at", "started_at", "host", "pid")
    list_filter = ("role", "release", "state")


@admin.register(QueueState)
class QueueStateAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("backend", "queue_name", "paused", "changed_at")
    actions = ("pause", "resume")

    def _set(self, request, queryset, paused):
        for row in queryset:
            actions.set_paused(request.user, row.backend, row.queue_name, paused)
        self.message_user(request, f"{queryset.count()} queue(s) {'paused' if paused else 'resumed'}.")

    @admin.action(description="Pause", permissions=["operate"])
    def pause(self, request, queryset):
        self._set(request, queryset, True)

    @admin.action(description="Resume", permissions=["operate"])
    def resume(self, request, queryset):
        self._set(request, queryset, False)


class ScheduleForm(forms.ModelForm):
    """A database schedule: its definition checked as OPTIONS["PERIODIC"] is (cron,
    timezone, arguments), its task importable, its name not a settings schedule's."""

    backend = forms.ChoiceField(choices=())

    class Meta:
        model = Schedule
        fields = ("backend", "name", "task", "cron", "timezone", "args", "kwargs", "priority",
                  "queue_name", "missed", "enabled")

    def __init__(self, *args, **kwargs):
        from offload.backend import offload_backends

        super().__init__(*args, **kwargs)
        self.fields["backend"].choices = [(a, a) for a in offload_backends()]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        probe = Schedule(**{f: data.get(f) for f in self.Meta.fields})
        try:
            periodic = probe.periodic()
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        try:
            import_task(periodic.task)
        except Exception as exc:
            self.add_error("task", f"{periodic.task!r} is not a task Offload can import: {exc}")
        from django.tasks import task_backends

        if probe.name in (task_backends[probe.backend].opts.PERIODIC or {}):
            self.add_error("name", f"OPTIONS['PERIODIC'] of backend {probe.backend!r} declares a "
                                   f"schedule named {probe.name!r}: choose another name.")
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    """Database schedules are made and edited here while the servers run (each server
    reads them at every maintenance tick); settings schedules are shown read-only."""

    form = ScheduleForm
    list_display = ("name", "backend", "source", "task", "cron", "timezone", "enabled",
                    "last_run_at", "next_run")
    list_filter = ("source", "enabled", "backend")
    search_fields = ("name", "task")
    actions = ("run_now", "enable", "disable")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.source == Schedule.SETTINGS:
            return False  # edit OPTIONS["PERIODIC"] instead
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.source == Schedule.SETTINGS:
            return False  # the servers would make it again
        return super().has_delete_permission(request, obj)

    def has_operate_permission(self, request):
        return request.user.has_perm("offload.change_schedule")

    @admin.display(description="next run")
    def next_run(self, obj):
        try:
            return obj.periodic().following(now()) if obj.enabled else "disabled"
        except ValueError:
            return "invalid"

    def save_model(self, request, obj, form, change):
        """A new, rescheduled or re-enabled schedule starts from its next occurrence;
        ``changed_at`` tells every server to rebuild it."""
        at = now()
        obj.source = Schedule.DATABASE
        if not change or {"cron", "timezone"} & set(form.changed_data) or (
                "enabled" in form.changed_data and obj.enabled):
            obj.last_run_at = obj.periodic().latest(at)
        obj.changed_at = at
        super().save_model(request, obj, form, change)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset.filter(source=Schedule.DATABASE))

    @admin.action(description="Run now (enqueue the task once)", permissions=["operate"])
    def run_now(self, request, queryset):
        created = actions.run_schedules(request.user, queryset)
        self.message_user(request, f"Enqueued {len(created)} task(s): {', '.join(created)}.",
                          messages.SUCCESS)

    @admin.action(description="Enable", permissions=["operate"])
    def enable(self, request, queryset):
        n = actions.set_enabled(request.user, queryset, True)
        self.message_user(request, f"{n} schedule(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable", permissions=["operate"])
    def disable(self, request, queryset):
        n = actions.set_enabled(request.user, queryset, False)
        self.message_user(request, f"{n} schedule(s) disabled.", messages.SUCCESS)
