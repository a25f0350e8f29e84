"""The stored thresholds in the admin: edited here, each change audited (``ThresholdChange``)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from moderation import thresholds
from moderation.models import StoredThreshold, ThresholdChange


@admin.register(StoredThreshold)
class StoredThresholdAdmin(admin.ModelAdmin):
    """Thresholds that win over ``MODERATION['THRESHOLDS']``. Saving and deleting go
    through ``thresholds.set_threshold``, which writes the audit row with the user."""

    list_display = ["key", "value", "category", "model_label", "updated_at"]
    list_filter = ["key", "model_label"]
    search_fields = ["category"]
    readonly_fields = ["updated_at", "history"]

    def save_model(self, request, obj, form, change):
        thresholds.set_threshold(
            obj.key, obj.value, model_label=obj.model_label, category=obj.category, actor=request.user, source="admin"
        )
        # The admin's log and redirect want the saved row.
        obj.pk = StoredThreshold.objects.get(model_label=obj.model_label, category=obj.category, key=obj.key).pk

    def delete_model(self, request, obj):
        thresholds.set_threshold(
            obj.key, None, model_label=obj.model_label, category=obj.category, actor=request.user, source="admin"
        )

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.display(description=_("changes"))
    def history(self, obj):
        changes = ThresholdChange.objects.filter(model_label=obj.model_label, category=obj.category, key=obj.key)
        return (
            "; ".join(
                f"{c.created_at:%Y-%m-%d %H:%M} {c.old_value} -> {c.new_value} ({c.actor or c.source})" for c in changes
            )
            or "-"
        )


@admin.register(ThresholdChange)
class ThresholdChangeAdmin(admin.ModelAdmin):
    """The audit trail of the stored thresholds, read-only."""

    list_display = ["created_at", "key", "category", "model_label", "old_value", "new_value", "actor", "source"]
    list_filter = ["key", "source"]
    list_select_related = ["actor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
