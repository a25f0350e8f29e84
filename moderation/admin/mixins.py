"""What a host's ModelAdmin gains for moderation: columns, filters, the review panel and
the decisions; and ``ReviewQueueAdmin``, the same limited to what needs a person.

Actions call ``moderation.transitions``: the admin holds no state rules of its own.
Status colours and the panel's layout are in the static file ``moderation/admin.css``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from moderation import search, transitions
from moderation.exceptions import InvalidTransition
from moderation.models import MODERATE_PERMISSION, REVIEW_ORDER, ModerationStatus
from moderation.registry import get_spec

from .explanations import explain
from .filters import ReasonFilter, StatusFilter
from .forms import DecisionForm
from .lookups import CheckedLookupsMixin


class ModerationAdminMixin(CheckedLookupsMixin):
    """Moderation for a host's ModelAdmin of a registered model."""

    change_form_template = "admin/moderation/change_form.html"
    actions = ["approve_selected", "reject_selected", "rescan_selected"]
    moderation_columns = ("moderation_thumbnail", "moderation_status_badge", "moderation_scores", "moderation_reasons")

    class Media:
        css = {"all": ["moderation/admin.css"]}

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
        return format_html('<img class="moderation-thumbnail" src="{}" alt="">', image.url)

    @admin.display(description=_("status"), ordering="moderation_status")
    def moderation_status_badge(self, obj):
        return format_html(
            '<span class="moderation-status {}">{}</span>', obj.moderation_status, obj.get_moderation_status_display()
        )

    @admin.display(description=_("scores"), ordering="consistency_score")
    def moderation_scores(self, obj):
        parts = []
        if obj.consistency_score is not None:
            parts.append((_("text/photo"), f"{obj.consistency_score:.2f}"))
        if obj.category_rank is not None:
            parts.append((_("category rank"), str(obj.category_rank)))
        if obj.duplicate_similarity is not None:
            parts.append((_("duplicate"), f"{obj.duplicate_similarity:.2f}"))
        return (
            format_html_join(
                " ",
                '<span class="moderation-score" title="{}">{}: {}</span>',
                ((label, label, value) for label, value in parts),
            )
            or "-"
        )

    @admin.display(description=_("why"), ordering="-severity")
    def moderation_reasons(self, obj):
        if obj.moderation_status == ModerationStatus.ERROR:
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
