"""The admin's query string checked before PostgreSQL sees it: a bad lookup is Django's ``?e=1``, never a 500."""

from __future__ import annotations

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet


class CheckedChangeList(ChangeList):
    """Django's change list, with the query string's lookups checked before PostgreSQL runs them.

    Django turns a lookup it cannot build into the ``?e=1`` redirect, but builds some
    that fail only later, as a 500: a NUL character in any lookup value
    (``?kind=%00``, ``?title=a%00b``) is a DataError in PostgreSQL, and a year beyond
    Python's dates (``?created_at__year=99999999999999999999``) an OverflowError or
    ValueError when the query is compiled. Both are bad lookups here.
    """

    def get_queryset(self, request, exclude_parameters=None):
        for name, values in self.get_filters_params().items():
            if any("\x00" in value for value in values):
                raise IncorrectLookupParameters(f"{name} contains a NUL character.")
        try:
            queryset = super().get_queryset(request, exclude_parameters)
            queryset.query.get_compiler(queryset.db).as_sql()  # compiles, runs nothing
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        except EmptyResultSet:
            pass  # a queryset that matches nothing (``none()``): an empty page
        return queryset


class CheckedLookupsMixin:
    """For any ModelAdmin: its change list is a ``CheckedChangeList``, and a search term
    PostgreSQL cannot hold (a NUL, e.g. the autocomplete's ``?term=%00``) finds nothing.
    The change list's own search box already drops such a term; the autocomplete does not."""

    def get_changelist(self, request, **kwargs):
        return CheckedChangeList

    def get_search_results(self, request, queryset, search_term):
        if "\x00" in search_term:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)
