from django.contrib import admin

from moderation.admin import CheckedLookupsMixin, ModerationAdminMixin, ReviewQueueAdmin

from .models import Category, Listing, ListingReview


@admin.register(Category)
class CategoryAdmin(CheckedLookupsMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


@admin.register(Listing)
class ListingAdmin(ModerationAdminMixin, admin.ModelAdmin):
    list_display = ["title", "category", "price", "seller", "created_at"]
    search_fields = ["title", "description", "seller__username"]
    list_select_related = ["category", "seller"]
    autocomplete_fields = ["category"]
    raw_id_fields = ["seller"]


admin.site.register(ListingReview, ReviewQueueAdmin)
