"""The review queue's list filters: by moderation status (with "needs review") and by flag reason."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils.translation import gettext_lazy as _

from moderation.models import REVIEW_STATUSES, FlagReason, ModerationStatus


class ChoicesFilter(admin.SimpleListFilter):
    """A list filter that takes only its own lookups. Any other value (``?flag_reason=%00``,
    ``?moderation_status=bogus``) is a bad lookup, answered with the admin's ``?e=1``
    redirect before the database sees it; subclasses filter by a value known to be valid."""

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value not in {str(choice) for choice, _label in self.lookup_choices}:
            raise IncorrectLookupParameters(f"{self.parameter_name}={value!r} is not one of the filter's choices.")
        return self.filter(queryset, value)

    def filter(self, queryset, value: str):
        raise NotImplementedError


class StatusFilter(ChoicesFilter):
    title = _("moderation status")
    parameter_name = "moderation_status"

    def lookups(self, request, model_admin):
        """The statuses the admin's list can hold (``moderation_statuses``: the review queue
        holds flagged and error alone), and "needs review" where the list holds more."""
        statuses = getattr(model_admin, "moderation_statuses", ModerationStatus.values)
        choices = [(status, ModerationStatus(status).label) for status in statuses]
        if set(statuses) > set(REVIEW_STATUSES):
            choices.insert(0, ("review", _("Needs review (flagged or error)")))
        return choices

    def filter(self, queryset, value):
        if value == "review":
            return queryset.needs_review()
        return queryset.filter(moderation_status=value)


class ReasonFilter(ChoicesFilter):
    title = _("flag reason")
    parameter_name = "flag_reason"

    def lookups(self, request, model_admin):
        return FlagReason.choices

    def filter(self, queryset, value):
        return queryset.flagged_for(value)
