from django.contrib import admin

from .models import OutboundAllowRule


@admin.register(OutboundAllowRule)
class OutboundAllowRuleAdmin(admin.ModelAdmin):
    list_display = ["pattern", "description", "enabled", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["pattern", "description"]
