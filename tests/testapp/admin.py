from django.contrib import admin

from moderation.admin import ModerationAdminMixin

from .models import Gadget


@admin.register(Gadget)
class GadgetAdmin(ModerationAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "maker"]
    search_fields = ["name"]
