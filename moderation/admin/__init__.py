"""The review queue in the Django admin: see, compare, decide, in bulk.

A host site adds ``ModerationAdminMixin`` to its own ModelAdmin to get moderation
columns, filters, the review panel on the change page and the approve / reject /
rescan actions; ``ReviewQueueAdmin`` is the same, limited to what needs a person
(flagged and errored objects, most severe first), for a proxy model.
``CheckedLookupsMixin`` gives any other ModelAdmin the same checks of its query string.
The decisions are registered here with the dashboard (``DecisionAdmin``).

    filters.py       list filters: status (with "needs review"), flag reason
    lookups.py       the query string checked before PostgreSQL sees it
    forms.py         the form of a decision
    explanations.py  the scores in plain words
    mixins.py        ModerationAdminMixin, ReviewQueueAdmin
    dashboard.py     the dashboard's report, as plain data
    decisions.py     DecisionAdmin: the audit trail and the dashboard's page
    thresholds.py    the stored thresholds, edited and audited
"""

from django.contrib import admin

from moderation.models import Decision

from .decisions import DecisionAdmin
from .lookups import CheckedLookupsMixin
from .mixins import ModerationAdminMixin, ReviewQueueAdmin
from .thresholds import StoredThresholdAdmin  # noqa: F401 (registers the stored thresholds and their audit)

__all__ = ["CheckedLookupsMixin", "DecisionAdmin", "ModerationAdminMixin", "ReviewQueueAdmin"]

admin.site.register(Decision, DecisionAdmin)
