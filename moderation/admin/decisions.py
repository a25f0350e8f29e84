"""The audit trail in the admin, read-only, and the moderation dashboard beside it."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from moderation import usage
from moderation.models import MODERATE_PERMISSION
from moderation.registry import specs

from .dashboard import dashboard_report, decisions_per_moderator
from .lookups import CheckedLookupsMixin
from .panel import admin_url_of


class DecisionAdmin(CheckedLookupsMixin, admin.ModelAdmin):
    """The audit trail, read-only, and the moderation dashboard."""

    list_display = ["created_at", "content_type", "moderated_object", "from_status", "to_status", "actor", "reason"]
    list_display_links = None  # read-only: the rows link to their objects, not to a change page
    list_filter = ["to_status", "content_type", ("actor", admin.EmptyFieldListFilter)]
    search_fields = ["object_pk", "reason", "actor__username"]
    date_hierarchy = "created_at"
    list_select_related = ["actor", "content_type"]

    class Media:
        css = {"all": ["moderation/admin.css"]}

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("object"), ordering="object_pk")
    def moderated_object(self, decision):
        """The object's key, linked to its admin page where the site has one."""
        url = admin_url_of(decision.content_type, decision.object_pk)
        return format_html('<a href="{}">{}</a>', url, decision.object_pk) if url else decision.object_pk

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="moderation_dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        if not (request.user.has_perm(MODERATE_PERMISSION) or request.user.has_perm("moderation.view_decision")):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": _("Moderation dashboard"),
            "sections": [dashboard_report(spec) for spec in specs()],
            "moderators": decisions_per_moderator(),
            "account": usage.account(),
            "opts": self.model._meta,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/moderation/dashboard.html", context)
