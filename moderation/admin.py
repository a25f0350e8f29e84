"""The review queue in the Django admin: see, compare, decide, in bulk.

A host site adds ``ModerationAdminMixin`` to its own ModelAdmin to get moderation
columns, filters, the review panel on the change page and the approve / reject /
rescan actions; ``ReviewQueueAdmin`` is the same, limited to what needs a person
(flagged and errored objects, most severe first), for a proxy model. Actions call
``moderation.transitions``: the admin holds no state rules of its own.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet, PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import search, transitions
from .exceptions import InvalidTransition
from .models import MODERATE_PERMISSION, REVIEW_ORDER, Decision, FlagReason, ModerationStatus
from .registry import get_spec, specs

S = ModerationStatus
STATUS_COLOURS = {
    S.PENDING: "#777",
    S.OK: "#2e7d32",
    S.FLAGGED: "#c62828",
    S.APPROVED: "#1565c0",
    S.REJECTED: "#4e342e",
    S.ERROR: "#ef6c00",
}


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
        return [("review", _("Needs review (flagged or error)")), *S.choices]

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


class DecisionForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Kept in the decision history, and shown to the seller where the site does so."),
    )


class ModerationAdminMixin(CheckedLookupsMixin):
    """Moderation for a host's ModelAdmin of a registered model."""

    change_form_template = "admin/moderation/change_form.html"
    actions = ["approve_selected", "reject_selected", "rescan_selected"]
    moderation_columns = ("moderation_thumbnail", "moderation_status_badge", "moderation_scores", "moderation_reasons")

    # -- the change list -----------------------------------------------------------

    def get_list_display(self, request):
        """The host's columns, with the thumbnail first and the moderation columns after."""
        own = [name for name in super().get_list_display(request) if name not in self.moderation_columns]
        return [self.moderation_columns[0], *own, *self.moderation_columns[1:]]

    def get_list_display_links(self, request, list_display):
        """Link the first column after the thumbnail, unless the host chose its links."""
        if self.list_display_links or len(list_display) < 2:
            return super().get_list_display_links(request, list_display)
        return [list_display[1]]

    def get_list_filter(self, request):
        spec = get_spec(self.model)
        extra = [spec.category_field] if spec.category_field else []
        return [StatusFilter, ReasonFilter, *extra, *[f for f in super().get_list_filter(request) if f not in extra]]

    @admin.display(description=_("photo"))
    def moderation_thumbnail(self, obj):
        image = getattr(obj, get_spec(type(obj)).image_field)
        if not image:
            return "-"
        return format_html(
            '<img src="{}" alt="" style="width:56px;height:56px;object-fit:cover;border-radius:4px">', image.url
        )

    @admin.display(description=_("status"), ordering="moderation_status")
    def moderation_status_badge(self, obj):
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;white-space:nowrap">{}</span>',
            STATUS_COLOURS.get(obj.moderation_status, "#777"),
            obj.get_moderation_status_display(),
        )

    @admin.display(description=_("scores"), ordering="consistency_score")
    def moderation_scores(self, obj):
        parts = []
        if obj.consistency_score is not None:
            parts.append(("text/photo", f"{obj.consistency_score:.2f}"))
        if obj.category_rank is not None:
            parts.append(("category rank", str(obj.category_rank)))
        if obj.duplicate_similarity is not None:
            parts.append(("duplicate", f"{obj.duplicate_similarity:.2f}"))
        return (
            format_html_join(
                " ",
                '<span class="moderation-score" title="{}" style="border:1px solid #ccc;border-radius:4px;'
                'padding:1px 5px;white-space:nowrap">{}: {}</span>',
                ((label, label, value) for label, value in parts),
            )
            or "-"
        )

    @admin.display(description=_("why"), ordering="-severity")
    def moderation_reasons(self, obj):
        if obj.moderation_status == S.ERROR:
            return format_html("<em>{}</em>: {}", obj.moderation_error, obj.moderation_error_detail[:120])
        return "; ".join(obj.flag_reason_labels) or "-"

    # -- permissions and actions ----------------------------------------------------

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm(MODERATE_PERMISSION)

    @admin.action(description=_("Approve selected"), permissions=["moderate"])
    def approve_selected(self, request, queryset):
        return self._decide_with_reason(request, queryset, "approve")

    @admin.action(description=_("Reject selected"), permissions=["moderate"])
    def reject_selected(self, request, queryset):
        return self._decide_with_reason(request, queryset, "reject")

    @admin.action(description=_("Rescan selected"), permissions=["moderate"])
    def rescan_selected(self, request, queryset):
        for obj in queryset:
            transitions.rescan(obj, actor=request.user)
        self.message_user(request, _("%(count)d queued for scoring.") % {"count": len(queryset)}, messages.SUCCESS)

    def _decide_with_reason(self, request, queryset, verb: str):
        """First an intermediate page that asks for the reason, then the decisions."""
        form = DecisionForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._apply(request, list(queryset), verb, form.cleaned_data["reason"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Approve") if verb == "approve" else _("Reject"),
            "verb": verb,
            "objects": queryset,
            "form": form,
            "opts": self.model._meta,
            "action": f"{verb}_selected",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/moderation/decide.html", context)

    def _apply(self, request, objects, verb: str, reason: str) -> None:
        done, refused = 0, []
        for obj in objects:
            try:
                transitions.decide(obj, verb, actor=request.user, reason=reason)
                done += 1
            except InvalidTransition as exc:
                refused.append(str(exc))
        if done:
            message = _("%(count)d approved.") if verb == "approve" else _("%(count)d rejected.")
            self.message_user(request, message % {"count": done}, messages.SUCCESS)
        for text in refused:
            self.message_user(request, text, messages.WARNING)

    # -- the change page: the review panel ------------------------------------------

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path(
                "<path:object_id>/moderation/<str:verb>/",
                self.admin_site.admin_view(self.decide_view),
                name="{}_{}_moderation_decide".format(*info),
            ),
            *super().get_urls(),
        ]

    def decide_view(self, request, object_id, verb):
        """POST from the review panel: approve, reject or rescan one object."""
        if request.method != "POST" or verb not in ("approve", "reject", "rescan"):
            raise PermissionDenied
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))  # None for an id that is no object's, like "abc"
        if obj is None:
            raise Http404(_("No such object."))
        if verb == "rescan":
            transitions.decide(obj, verb, actor=request.user)
            self.message_user(request, _("Queued for scoring."), messages.SUCCESS)
        else:
            form = DecisionForm(request.POST)
            form.is_valid()
            self._apply(request, [obj], verb, form.cleaned_data.get("reason", ""))
        return HttpResponseRedirect(request.POST.get("next") or request.path.rsplit("/moderation/", 1)[0] + "/")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), **(self.review_context(request, obj) if obj else {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def review_context(self, request, obj) -> dict:
        """What the review panel shows; override to add site-specific facts."""
        spec = get_spec(type(obj))
        image = getattr(obj, spec.image_field)
        duplicate = None
        if obj.duplicate_of:
            duplicate = type(obj)._default_manager.filter(pk=obj.duplicate_of).first()
        return {
            "moderation": {
                "object": obj,
                "text_fields": [
                    (type(obj)._meta.get_field(name).verbose_name, getattr(obj, name)) for name in spec.text_fields
                ],
                "image_url": image.url if image else None,
                "category": spec.category_of(obj),
                "explanations": explain(obj),
                "duplicate": duplicate,
                "duplicate_image_url": getattr(duplicate, spec.image_field).url if duplicate else None,
                "duplicate_admin_url": _admin_url(duplicate),
                "similar": [
                    (hit, _admin_url(hit.object), getattr(hit.object, spec.image_field).url)
                    for hit in search.similar_to(obj, k=6, statuses=None)
                ],
                "history": transitions.history(obj).select_related("actor"),
                "can_moderate": self.has_moderate_permission(request),
                "decide_url": reverse(
                    f"{self.admin_site.name}:{obj._meta.app_label}_{obj._meta.model_name}_moderation_decide",
                    args=[obj.pk, "VERB"],
                ),
                "form": DecisionForm(),
            }
        }


def explain(obj) -> list[str]:
    """The scores in plain words, for a moderator."""
    lines = []
    if obj.consistency_score is not None:
        mismatch = FlagReason.TEXT_IMAGE_MISMATCH in obj.flag_reasons
        lines.append(
            f"Text and photo agreement: {obj.consistency_score:.2f} (cosine similarity of their embeddings). "
            + (
                "This is below the threshold: the photo may not show what the text describes."
                if mismatch
                else "Within the usual range."
            )
        )
    if obj.category_rank is not None:
        looks_like = ", ".join(f"{s['category']} ({s['score']:.2f})" for s in obj.suggested_categories)
        lines.append(
            f"Listed category ranks #{obj.category_rank} among all categories for this photo. "
            f"The photo looks most like: {looks_like}."
        )
    if obj.duplicate_of:
        lines.append(
            f"The photo is nearly identical (similarity {obj.duplicate_similarity:.3f}) to the photo of another "
            f"seller's object #{obj.duplicate_of}."
        )
    if obj.moderation_status == S.ERROR:
        lines.append(
            f"Could not be scored ({obj.moderation_error}, {obj.moderation_attempts} attempts): "
            f"{obj.moderation_error_detail}"
        )
    return lines


def _admin_url(obj) -> str | None:
    if obj is None:
        return None
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


class ReviewQueueAdmin(ModerationAdminMixin, admin.ModelAdmin):
    """What needs a person: flagged and errored objects, most severe first.

    Register it for a proxy of the moderated model::

        class ListingReview(Listing):
            class Meta:
                proxy = True
                verbose_name = "listing to review"

        admin.site.register(ListingReview, ReviewQueueAdmin)
    """

    list_per_page = 50
    ordering = REVIEW_ORDER  # the change list orders by the admin's ordering, not the queryset's

    def get_queryset(self, request):
        return super().get_queryset(request).needs_review()

    def get_list_display(self, request):
        spec = get_spec(self.model)
        columns = [c for c in (*spec.text_fields[:1], spec.category_field, spec.owner_field) if c]
        return [self.moderation_columns[0], *columns, *self.moderation_columns[1:]]

    def get_search_fields(self, request):
        spec = get_spec(self.model)
        fields = list(spec.text_fields[:1])
        if spec.owner_field:
            owner = self.model._meta.get_field(spec.owner_field)
            if owner.is_relation:
                fields.append(
                    f"{spec.owner_field}__{owner.related_model.USERNAME_FIELD}"
                    if hasattr(owner.related_model, "USERNAME_FIELD")
                    else spec.owner_field
                )
        return fields

    def has_add_permission(self, request):
        return False


@admin.register(Decision)
class DecisionAdmin(CheckedLookupsMixin, admin.ModelAdmin):
    """The audit trail, read-only, and the moderation dashboard."""

    list_display = ["created_at", "content_type", "object_pk", "from_status", "to_status", "actor", "reason"]
    list_filter = ["to_status", "content_type", ("actor", admin.EmptyFieldListFilter)]
    search_fields = ["object_pk", "reason", "actor__username"]
    date_hierarchy = "created_at"
    list_select_related = ["actor", "content_type"]

    def has_add_permission(self, request):
        return False

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
            "sections": [dashboard_numbers(spec) for spec in specs()],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/moderation/dashboard.html", context)


def dashboard_numbers(spec, *, now=None) -> dict:
    """Counts by status, reason and error code, recent throughput, and the consistency
    score distribution per category (10 buckets over 0..1) of one moderated model."""
    now = now or timezone.now()
    queryset = spec.model._default_manager.all()
    by_status = dict(queryset.order_by().values_list("moderation_status").annotate(n=Count("pk")))
    reasons = Counter(
        reason
        for row in queryset.filter(moderation_status=S.FLAGGED).values_list("flag_reasons", flat=True)
        for reason in row
    )
    errors = dict(
        queryset.filter(moderation_status=S.ERROR).order_by().values_list("moderation_error").annotate(n=Count("pk"))
    )
    histograms: dict[str, list[int]] = {}
    if spec.category_field:
        rows = list(
            queryset.filter(consistency_score__isnull=False).values_list(spec.category_field, "consistency_score")
        )
        labels = spec.category_display({value for value, _score in rows})
        for value, score in rows:
            bucket = min(9, max(0, int(score * 10)))
            histograms.setdefault(labels.get(value, "-"), [0] * 10)[bucket] += 1
    peak = max((max(counts) for counts in histograms.values()), default=0)
    try:
        changelist = reverse(f"admin:{spec.model._meta.app_label}_{spec.model._meta.model_name}_changelist")
    except NoReverseMatch:
        changelist = None
    return {
        "label": spec.model._meta.verbose_name_plural,
        "changelist": changelist,
        "by_status": [(S(status).label, by_status.get(status, 0), status) for status in S.values],
        "by_reason": [(FlagReason(code).label, reasons.get(code, 0), code) for code in FlagReason.values],
        "errors": sorted(errors.items()),
        "scored_last_hour": queryset.filter(moderated_at__gte=now - timedelta(hours=1)).count(),
        "scored_last_day": queryset.filter(moderated_at__gte=now - timedelta(days=1)).count(),
        # Bars of an SVG chart: (score range, count, x, y, height), 60 px for the tallest bar.
        "histograms": [
            (
                category,
                [
                    (f"{i / 10:.1f}-{(i + 1) / 10:.1f}", count, i * 22, 70 - height, height)
                    for i, count in enumerate(counts)
                    for height in [round(60 * count / peak) if peak else 0]
                ],
            )
            for category, counts in sorted(histograms.items())
        ],
    }
