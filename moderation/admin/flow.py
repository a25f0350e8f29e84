"""The review flow: from one object to the next of the queue, in the moderator's own list.

The moderator opened the object from a change list with filters, a search and an
order; Django's admin carries them along as ``_changelist_filters``. The next object
is the one after this one in that list, among those that still need review and that
no other moderator holds (``moderation.holds``), wrapping round to those skipped
before it; when there is none, the change list itself.
"""

from __future__ import annotations

import copy

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.http import QueryDict
from django.urls import reverse

from moderation import holds

# The longest list a step reads (primary keys only); past it, the flow starts again
# from the top of the list.
MAX_QUEUE = 10_000


class ReviewFlow:
    """The queue as ``model_admin``'s change list shows it to ``request``'s user."""

    def __init__(self, model_admin, request):
        self.model_admin = model_admin
        self.request = request
        self.preserved_filters = model_admin.get_preserved_filters(request)

    def queryset(self):
        """What needs review in the change list's filters, search and order; the change
        list without its filters when they are bad lookups (Django's ``?e=1``)."""
        listing = copy.copy(self.request)
        listing.method = "GET"
        listing.GET = QueryDict(QueryDict(self.preserved_filters).get("_changelist_filters", ""))
        try:
            changelist = self.model_admin.get_changelist_instance(listing)
        except IncorrectLookupParameters:
            listing.GET = QueryDict()
            changelist = self.model_admin.get_changelist_instance(listing)
        ordering = changelist.queryset.query.order_by
        return changelist.queryset.needs_review().order_by(*ordering)

    def pending(self) -> list[str]:
        """The keys of what needs review, in order."""
        return [str(pk) for pk in self.queryset().values_list("pk", flat=True)[:MAX_QUEUE]]

    def step(self, here: str, *, order: list[str] | None = None, backwards: bool = False) -> str:
        """The URL of the object after the one whose key is ``here`` (before it,
        ``backwards``) that still needs review and that no other moderator holds, with
        the same filters; else the list's. ``order``: the list as it was before a
        decision took ``here`` out of it (``pending()``), to know where it stood."""
        order = self.pending() if order is None else order
        order = order[::-1] if backwards else order
        position = order.index(here) if here in order else -1
        candidates = order[position + 1 :] + order[: max(position, 0)]
        now = [pk for pk in self.pending() if pk != here]  # decided by others, or flagged, since
        still, held = set(now), holds.held_by_others(self.model_admin.model, self.request.user)
        for pk in candidates + now:
            if pk in still and pk not in held:
                return self.url("change", quote(pk))
        return self.url("changelist")

    def held_by(self) -> list[str]:
        """The user names of the other moderators who hold what is left to review in
        this list, one per object held."""
        held = holds.held_by_others(self.model_admin.model, self.request.user)
        return [str(held[pk].moderator) for pk in self.pending() if pk in held]

    def url(self, view: str, *args) -> str:
        opts = self.model_admin.model._meta
        url = reverse(f"{self.model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_{view}", args=args)
        return add_preserved_filters({"preserved_filters": self.preserved_filters, "opts": opts}, url)
