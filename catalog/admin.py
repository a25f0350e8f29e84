from django import forms
from django.contrib import admin

from moderation.admin import CheckedLookupsMixin, ModerationAdminMixin, ReviewQueueAdmin

from .models import Category, Listing, ListingReview
from .serializers import TITLE_VALIDATORS


class ListingForm(forms.ModelForm):
    """A listing as the admin edits it, its title held to the API's rule (visible characters)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["title"].validators.extend(TITLE_VALIDATORS)


@admin.register(Category)
class CategoryAdmin(CheckedLookupsMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


@admin.register(Listing)
class ListingAdmin(ModerationAdminMixin, admin.ModelAdmin):
    form = ListingForm
    list_display = ["title", "category", "price", "seller", "created_at"]
    search_fields = ["title", "description", "seller__username"]
    list_select_related = ["category", "seller"]
    autocomplete_fields = ["category"]
    raw_id_fields = ["seller"]


admin.site.register(ListingReview, ReviewQueueAdmin, form=ListingForm)
