from django.contrib import admin

from loans.models import Applicant, Application, Decision, Notification, PortfolioReport


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["id", "applicant", "amount", "term_months", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["applicant__business_name", "reference"]
    readonly_fields = ["reference", "status"]  # the workflow moves status, not the admin


admin.site.register(Applicant, search_fields=["business_name", "owner_name", "email"])
admin.site.register(Decision, list_display=["application", "approved", "decided_by", "decided_at"])
admin.site.register(Notification, list_display=["application", "kind", "to", "sent_at"])
@admin.register(PortfolioReport)
class PortfolioReportAdmin(admin.ModelAdmin):
    """Read-only: the reports page renders the stored chart SVG as markup, so only the
    async server (matplotlib) may write it."""

    list_display = ["created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
