"""The admin's input checked before PostgreSQL sees it: a bad lookup is Django's ``?e=1``,
a bad prefill or selection is dropped with a message, never a 500."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, ValidationError
from django.db import DataError, ProgrammingError, transaction
from django.utils.translation import gettext as _


class CheckedChangeList(ChangeList):
    """Django's change list, with the query string's lookups checked before PostgreSQL runs them.

    Django turns a lookup it cannot build into the ``?e=1`` redirect, but builds some
    that fail only later, as a 500: a NUL character in any lookup value
    (``?kind=%00``, ``?title=a%00b``) is a DataError in PostgreSQL, and a year beyond
    Python's dates (``?created_at__year=99999999999999999999``) an OverflowError or
    ValueError when the query is compiled, a range of other than two values
    (``?price__range=1``) an IndexError. Others fail only when PostgreSQL runs them: a
    regular expression it cannot compile (``?title__regex=(``, a DataError), an array
    literal it cannot read (``?flag_reasons__contains=bogus``), a range whose values
    outnumber its placeholders (``?title__range=a,b,c``, a ProgrammingError). All are
    bad lookups here.
    """

    def get_queryset(self, request, exclude_parameters=None):
        for name, values in self.get_filters_params().items():
            if any("\x00" in value for value in values):
                raise IncorrectLookupParameters(f"{name} contains a NUL character.")
        try:
            queryset = super().get_queryset(request, exclude_parameters)
            queryset.query.get_compiler(queryset.db).as_sql()  # compiles, runs nothing
        except (OverflowError, ValueError, IndexError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        except EmptyResultSet:
            pass  # a queryset that matches nothing (``none()``): an empty page
        return queryset

    def get_results(self, request):
        """Django's count and page of results, in a savepoint: a lookup PostgreSQL refuses
        leaves the request's transaction usable and becomes a bad lookup. Without lookups in
        the query string, such an error is the code's, and stays one."""
        try:
            with transaction.atomic(using=self.queryset.db):
                super().get_results(request)
        except (DataError, ProgrammingError) as exc:
            if not self.get_filters_params():
                raise
            raise IncorrectLookupParameters(exc) from exc


def _holdable(field, value: str) -> bool:
    """Whether ``value`` is one ``field`` (a model field; for a relation, the field it
    points at) can hold and PostgreSQL can compare: no NUL, and a valid value of its type."""
    if "\x00" in value:
        return False
    try:
        (field.target_field if field.is_relation else field).to_python(value)
    except ValidationError:
        return False
    return True


class CheckedLookupsMixin:
    """For any ModelAdmin: its change list is a ``CheckedChangeList``; a search term
    PostgreSQL cannot hold (a NUL, e.g. the autocomplete's ``?term=%00``) finds nothing;
    the add page's prefill from the query string (``?category=3``) drops a value its field
    cannot hold; and a bulk action on selected keys that are no keys of the model (a
    tampered form) is refused with a message. The change list's own search box already
    drops such a term; the autocomplete does not."""

    def get_changelist(self, request, **kwargs):
        return CheckedChangeList

    def get_search_results(self, request, queryset, search_term):
        if "\x00" in search_term:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    def get_changeform_initial_data(self, request):
        """Django's prefill, without a value its field cannot hold: an autocomplete widget
        looks its initial key up (``?category=abc`` was a ValueError, ``%00`` a DataError)."""
        initial = super().get_changeform_initial_data(request)
        for name, value in list(initial.items()):
            try:
                field = self.opts.get_field(name)
            except FieldDoesNotExist:
                continue
            values = value if isinstance(value, list) else [value]  # a many-to-many's keys
            if not all(_holdable(field, item) for item in values):
                del initial[name]
        return initial

    def response_action(self, request, queryset):
        """Django's bulk action, unless a selected key is no key of the model (``abc`` or
        ``1.5`` for an integer key, a NUL): Django would raise ValueError filtering on it."""
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not all(_holdable(self.opts.pk, key) for key in selected):
            self.message_user(
                request, _("The selection holds keys of no item. No items have been changed."), messages.WARNING
            )
            return None  # Django redirects back to the change list
        return super().response_action(request, queryset)
