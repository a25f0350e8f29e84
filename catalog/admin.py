from django.contrib import admin

from .models import Category, Listing


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = ["title", "category", "price", "seller", "created_at"]
    list_filter = ["category"]
    search_fields = ["title", "description", "seller__username"]
    list_select_related = ["category", "seller"]
    autocomplete_fields = ["category"]
    raw_id_fields = ["seller"]
