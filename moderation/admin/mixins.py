"""What a host's ModelAdmin gains for moderation: columns, filters, the review panel, the
decisions and the review flow; and ``ReviewQueueAdmin``, the same limited to what needs a person.

Actions and views call ``moderation.transitions``: the admin holds no state rules of
its own. The decision controls are a form of their own, outside the admin's change
form: pressing Enter in a field of the change form saves it and never decides.
Styles are in ``moderation/admin.css``, keyboard shortcuts in ``moderation/review.js``.
"""

from __future__ import annotations

import time

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import model_ngettext, quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import holds, notes, search, transitions
from moderation.conf import moderation_settings
from moderation.exceptions import InvalidTransition
from moderation.models import MODERATE_PERMISSION, REVIEW_ORDER, REVIEW_STATUSES, ModerationStatus
from moderation.registry import get_spec

from .explanations import explain
from .filters import ReasonFilter, StatusFilter
from .flow import ReviewFlow
from .forms import DecisionForm, NoteForm
from .lookups import CheckedChangeList, CheckedLookupsMixin
from .panel import admin_url, duplicate_sides, owner_record
from .thumbnails import thumbnail_url

VERBS = ("approve", "reject", "rescan")
# The session key of the moderator's last decisions, which they may undo for UNDO_SECONDS.
UNDO_SESSION_KEY = "moderation_undo"


def _done_message(verb: str, count: int) -> str:
    if verb == "approve":
        return ngettext("%(count)d approved.", "%(count)d approved.", count) % {"count": count}
    if verb == "reject":
        return ngettext("%(count)d rejected.", "%(count)d rejected.", count) % {"count": count}
    return ngettext("%(count)d queued for scoring.", "%(count)d queued for scoring.", count) % {"count": count}


def shown_on_page(data, obj) -> tuple[str, int] | None:
    """The (status, content version) of ``obj`` that the bulk actions' page showed, from its
    hidden ``moderation_shown_<pk>`` field ("flagged:3"); None when the form holds none."""
    status, _sep, version = data.get(f"moderation_shown_{obj.pk}", "").partition(":")
    return (status, int(version)) if status and version.isdigit() else None


def _nothing_else(held_by: list[str]) -> str:
    """The end of a list: nothing left, or only what others hold (``ReviewFlow.held_by``)."""
    if not held_by:
        return _t("Nothing else to review in this list.")
    text = ngettext(
        "Nothing else to review in this list: %(count)d more is held by %(names)s.",
        "Nothing else to review in this list: %(count)d more are held by %(names)s.",
        len(held_by),
    )
    return text % {"count": len(held_by), "names": ", ".join(sorted(set(held_by)))}


class ModerationAdminMixin(CheckedLookupsMixin):
    """Moderation for a host's ModelAdmin of a registered model."""

    change_form_template = "admin/moderation/change_form.html"
    change_list_template = "admin/moderation/change_list.html"
    actions = ["approve_selected", "reject_selected", "rescan_selected"]
    moderation_columns = ("moderation_thumbnail", "moderation_status_badge", "moderation_scores", "moderation_reasons")
    # The statuses this admin's list can hold: its status filter offers these alone.
    moderation_statuses = tuple(ModerationStatus)
    # The side of a list thumbnail and of a similar object's, in CSS pixels.
    thumbnail_size = 56
    similar_thumbnail_size = 110

    class Media:
        css = {"all": ["moderation/admin.css"]}
        js = ["moderation/review.js"]

    # -- the change list -----------------------------------------------------------

    def get_queryset(self, request):
        """The host's queryset, with who else holds each object (``moderation_held_by``)."""
        return holds.with_holders(super().get_queryset(request), request.user)

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
        url = thumbnail_url(obj, self.thumbnail_size)
        if not url:
            return "-"
        return format_html(
            '<img class="moderation-thumbnail" src="{}" width="{}" height="{}" alt="" loading="lazy">',
            url,
            self.thumbnail_size,
            self.thumbnail_size,
        )

    @admin.display(description=_("status"), ordering="moderation_status")
    def moderation_status_badge(self, obj):
        badge = format_html(
            '<span class="moderation-status {}">{}</span>', obj.moderation_status, obj.get_moderation_status_display()
        )
        held_by = getattr(obj, "moderation_held_by", None)
        if held_by:
            badge += format_html(' <span class="moderation-held">{}</span>', _t("held by %(name)s") % {"name": held_by})
        return badge

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

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), **self.undo_context(request)})

    # -- permissions and actions ----------------------------------------------------

    def objects_name(self, count: int) -> str:
        """The model's verbose name for ``count`` objects ("listing", "listings"): the
        concrete model's, so a proxy's queue ("listing to review") says "listing" too."""
        return model_ngettext(self.model._meta.concrete_model._meta, count)

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
        if self._nothing_selected(request, queryset):
            return
        for obj in queryset:
            transitions.rescan(obj, actor=request.user)
        self.message_user(request, _done_message("rescan", len(queryset)), messages.SUCCESS)

    def _nothing_selected(self, request, queryset) -> bool:
        """Whether none of the selected keys is in this list (any more: decided, deleted, or
        a tampered selection), in which case it says so and nothing is done."""
        if queryset.exists():
            return False
        text = _("None of the selected %(name)s is in this list any more: nothing was changed.")
        self.message_user(request, text % {"name": self.objects_name(2)}, messages.WARNING)
        return True

    def _decide_with_reason(self, request, queryset, verb: str):
        """First an intermediate page that asks for the reason and shows the objects, then
        the decisions, each on the object as that page showed it (its status and content
        version, sent back with the form): one that changed since, a seller's edit among
        them, is refused by the transition and named, as on an object's own page."""
        if self._nothing_selected(request, queryset):
            return None
        objects = list(queryset)
        self._report_dropped(request, objects)
        form = DecisionForm(request.POST if "apply" in request.POST else None, verb=verb)
        if form.is_bound and form.is_valid():
            shown = {str(obj.pk): shown_on_page(request.POST, obj) for obj in objects}
            done = self._apply(request, objects, verb, form.cleaned_data["reason"], shown_of=shown)
            self._offer_undo(request, done, verb, back=ReviewFlow(self, request).url("changelist"))
            return None
        return self.decision_page(request, objects, verb, form, action=f"{verb}_selected")

    def _report_dropped(self, request, objects: list) -> None:
        """Say how many of the selected keys are not in this list any more (decided, edited
        into another status, or deleted since the list was shown): nothing is done to them."""
        selected = set(request.POST.getlist(ACTION_CHECKBOX_NAME))
        dropped = len(selected - {str(obj.pk) for obj in objects})
        if dropped:
            text = ngettext(
                "%(count)d of the selected %(name)s is not in this list any more: nothing is done to it.",
                "%(count)d of the selected %(name)s are not in this list any more: nothing is done to them.",
                dropped,
            )
            self.message_user(request, text % {"count": dropped, "name": self.objects_name(2)}, messages.WARNING)

    def decision_page(self, request, objects: list, verb: str, form: DecisionForm, *, action: str = ""):
        """The page that asks for a decision's reason, or shows why it was refused.
        ``action``: the bulk action that posts it; empty for one object's decision."""
        flow = ReviewFlow(self, request)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Approve") if verb == "approve" else _("Reject") if verb == "reject" else _("Rescan"),
            "verb": verb,
            "objects": objects,
            "objects_name": self.objects_name(len(objects)),
            "form": form,
            "opts": self.model._meta,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "cancel_url": flow.url("change", quote(objects[0].pk)) if not action else flow.url("changelist"),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/moderation/decide.html", context)

    def _apply(
        self,
        request,
        objects,
        verb: str,
        reason: str,
        *,
        shown: tuple[str, int] | None = None,
        shown_of: dict | None = None,
    ) -> list:
        """Decide on each of ``objects``; report what was done and what was refused.
        ``shown``: the (status, version) the page showed (``transitions.decide``);
        ``shown_of``: the same for each object, by ``str(pk)``, from the bulk actions'
        page. Returns the objects decided on."""
        done, refused = [], []
        for obj in objects:
            seen = shown if shown_of is None else shown_of.get(str(obj.pk))
            if shown_of is not None and seen is None:
                text = _t("%(object)s was not on the page you confirmed: nothing was decided.")
                refused.append(text % {"object": obj})
                continue
            try:
                transitions.decide(obj, verb, actor=request.user, reason=reason, shown=seen)
                done.append(obj)
            except InvalidTransition as exc:
                refused.append(str(exc))
            else:
                holds.release_all(obj)
        if done:
            self.message_user(request, _done_message(verb, len(done)), messages.SUCCESS)
        for text in refused:
            self.message_user(request, text, messages.WARNING)
        return done

    # -- undo -------------------------------------------------------------------------

    def _offer_undo(self, request, objects: list, verb: str, *, back: str) -> None:
        """Keep the moderator's last approvals or rejections in the session, to undo
        for ``UNDO_SECONDS``; ``back`` is where the undo leads when there are several."""
        if verb not in ("approve", "reject") or not objects:
            return
        request.session[UNDO_SESSION_KEY] = {
            "url": self._url("moderation_undo"),
            "pks": [str(obj.pk) for obj in objects],
            "labels": [str(obj) for obj in objects[:3]],
            "verb": verb,
            "until": time.time() + moderation_settings.UNDO_SECONDS,
            "back": back,
        }

    def undo_context(self, request) -> dict:
        """The undo offer of the moderator's last decisions, if its time is not up."""
        offer = request.session.get(UNDO_SESSION_KEY)
        if not offer or offer["until"] < time.time() or not self.has_moderate_permission(request):
            return {}
        count = len(offer["pks"])
        if offer["verb"] == "approve":
            text = ngettext("You approved %(count)d %(name)s", "You approved %(count)d %(name)s", count)
        else:
            text = ngettext("You rejected %(count)d %(name)s", "You rejected %(count)d %(name)s", count)
        # The list's filters go along, so that the undo leads back into the same list.
        filters = self.get_preserved_filters(request)
        return {
            "moderation_undo": {
                **offer,
                "url": f"{offer['url']}?{filters}" if filters else offer["url"],
                "text": text % {"count": count, "name": self.objects_name(count)},
                "count": count,
                "until_ms": int(offer["until"] * 1000),
            }
        }

    def undo_view(self, request):
        """POST: take back the decisions of the session's undo offer (``transitions.undo``).
        A GET (a typed or reloaded address) leads to the list, where the offer is shown."""
        if request.method != "POST":
            return HttpResponseRedirect(ReviewFlow(self, request).url("changelist"))
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        offer = request.session.get(UNDO_SESSION_KEY)
        if not offer or offer["url"] != request.path:
            raise Http404(_("Nothing to undo."))
        del request.session[UNDO_SESSION_KEY]
        undone = []
        for obj in self.model._default_manager.filter(pk__in=offer["pks"]):
            try:
                transitions.undo(obj, actor=request.user, within_seconds=moderation_settings.UNDO_SECONDS)
                undone.append(obj)
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if undone:
            message = ngettext("%(count)d decision undone.", "%(count)d decisions undone.", len(undone))
            self.message_user(request, message % {"count": len(undone)}, messages.SUCCESS)
        if len(undone) == 1 and len(offer["pks"]) == 1:
            flow = ReviewFlow(self, request)
            return HttpResponseRedirect(flow.url("change", quote(undone[0].pk)))
        return HttpResponseRedirect(offer["back"])

    # -- the change page: the review panel and the review flow ----------------------

    def _url(self, name: str, *args) -> str:
        info = self.model._meta.app_label, self.model._meta.model_name
        return reverse("{}:{}_{}_{}".format(self.admin_site.name, *info, name), args=args)

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        view = self.admin_site.admin_view
        return [
            path("moderation/undo/", view(self.undo_view), name="{}_{}_moderation_undo".format(*info)),
            path(
                "<path:object_id>/moderation/next/",
                view(self.step_view),
                {"backwards": False},
                name="{}_{}_moderation_next".format(*info),
            ),
            path(
                "<path:object_id>/moderation/previous/",
                view(self.step_view),
                {"backwards": True},
                name="{}_{}_moderation_previous".format(*info),
            ),
            path("<path:object_id>/moderation/note/", view(self.note_view), name="{}_{}_moderation_note".format(*info)),
            path(
                "<path:object_id>/moderation/<str:verb>/",
                view(self.decide_view),
                name="{}_{}_moderation_decide".format(*info),
            ),
            *super().get_urls(),
        ]

    def _object_or_404(self, request, object_id):
        obj = self.get_object(request, unquote(object_id))  # None for an id that is no object's, like "abc"
        if obj is None:
            raise Http404(_("No such object."))
        return obj

    def decide_view(self, request, object_id, verb):
        """POST from the review panel: approve, reject or rescan one object, then on to
        the next object of the moderator's list (``ReviewFlow``). A reason the form
        refuses shows the form again with its error, and nothing is decided."""
        if verb not in VERBS:
            raise Http404(_("No such decision."))
        if request.method != "POST":  # a reload of a refused decision's page, a link: the object's page
            return HttpResponseRedirect(ReviewFlow(self, request).url("change", object_id))
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        obj = self._object_or_404(request, object_id)
        form = DecisionForm(request.POST, verb=verb)
        if not form.is_valid():
            return self.decision_page(request, [obj], verb, form)
        flow = ReviewFlow(self, request)
        order = flow.pending()  # where the object stood before the decision takes it out
        if not self._apply(request, [obj], verb, form.cleaned_data["reason"], shown=form.shown):
            return HttpResponseRedirect(flow.url("change", quote(obj.pk)))
        self._offer_undo(request, [obj], verb, back=flow.url("changelist"))
        following = flow.step(str(obj.pk), order=order)
        if following == flow.url("changelist"):
            self.message_user(request, _nothing_else(flow.held_by()), messages.INFO)
        return HttpResponseRedirect(following)

    def step_view(self, request, object_id, backwards):
        """GET: the next (or previous) object of the moderator's list, skipping what
        another moderator holds; the list itself when there is none. The moderator's
        hold on the object they leave ends."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        leaving = self.get_object(request, unquote(object_id))
        if leaving is not None:
            holds.release(leaving, request.user)
        return HttpResponseRedirect(ReviewFlow(self, request).step(unquote(object_id), backwards=backwards))

    def note_view(self, request, object_id):
        """POST: an internal note on the object, kept with its history."""
        if request.method != "POST":
            return HttpResponseRedirect(ReviewFlow(self, request).url("change", object_id))
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        obj = self._object_or_404(request, object_id)
        form = NoteForm(request.POST)
        if form.is_valid():
            notes.add_note(obj, author=request.user, text=form.cleaned_data["text"])
            self.message_user(request, _("Note kept."), messages.SUCCESS)
        else:
            errors = "; ".join(error for errors in form.errors.values() for error in errors)
            self.message_user(request, _("The note was not kept: %(errors)s") % {"errors": errors}, messages.ERROR)
        return HttpResponseRedirect(ReviewFlow(self, request).url("change", quote(obj.pk)))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra_context = {
            **(extra_context or {}),
            **(self.review_context(request, obj) if obj else {}),
            **self.undo_context(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def review_context(self, request, obj) -> dict:
        """What the review panel shows; override to add site-specific facts. A moderator
        who opens the object holds it (``moderation.holds``)."""
        spec = get_spec(type(obj))
        image = getattr(obj, spec.image_field)
        can_moderate = self.has_moderate_permission(request)
        hold = holds.hold(obj, request.user) if can_moderate else None
        duplicate = None
        if obj.duplicate_of:
            other = type(obj)._default_manager.filter(pk=obj.duplicate_of).first()
            duplicate = duplicate_sides(obj, other) if other else None
        filters = self.get_preserved_filters(request)
        query = f"?{filters}" if filters else ""
        key = quote(obj.pk)
        history = [{"decision": d, "when": d.created_at} for d in transitions.history(obj).select_related("actor")]
        history += [{"note": n, "when": n.created_at} for n in notes.notes_of(obj).select_related("author")]
        history.sort(key=lambda entry: entry["when"], reverse=True)
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
                "duplicate_image_url": getattr(duplicate["other"], spec.image_field).url if duplicate else None,
                "similar": [
                    (hit, admin_url(hit.object), thumbnail_url(hit.object, self.similar_thumbnail_size))
                    for hit in search.similar_to(obj, k=6, statuses=None)
                ],
                "record": owner_record(obj),
                "history": history,
                "can_moderate": can_moderate,
                "held_by": hold.moderator if hold and hold.moderator_id != request.user.pk else None,
                "hold": hold,
                "decide_urls": {verb: self._url("moderation_decide", key, verb) + query for verb in VERBS},
                "next_url": self._url("moderation_next", key) + query,
                "previous_url": self._url("moderation_previous", key) + query,
                "note_url": self._url("moderation_note", key) + query,
                "form": DecisionForm(
                    verb="approve",
                    initial={"shown_status": obj.moderation_status, "shown_version": obj.moderation_version},
                ),
                "note_form": NoteForm(),
            }
        }


class ReviewChangeList(CheckedChangeList):
    """A change list of what needs review (``needs_review()``) among the admin's queryset."""

    @property
    def root_queryset(self):
        return self._needs_review

    @root_queryset.setter
    def root_queryset(self, queryset):
        self._needs_review = queryset.needs_review()


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
    moderation_statuses = REVIEW_STATUSES
    ordering = REVIEW_ORDER  # the change list orders by the admin's ordering, not the queryset's

    def get_changelist(self, request, **kwargs):
        """Only the list holds what needs review: the change page, its decisions and its
        Save find an object whatever its status, so a page another moderator decided on
        since it was opened still saves, and shows the object as it is now."""
        return ReviewChangeList

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

    def changelist_view(self, request, extra_context=None):
        """Titled by the queue's name ("Listings to review"), not Django's "Select listing
        to review to change"."""
        title = capfirst(self.model._meta.verbose_name_plural)
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def get_readonly_fields(self, request, obj=None):
        """The owner is shown, not edited, in the queue: a moderator reviews an object and
        does not hand it to another owner, and a select of every user of the site (a user
        trial saw admins and moderators in it) would be one stray choice away from it, and
        a page of every user at a site's size."""
        spec = get_spec(self.model)
        readonly = list(super().get_readonly_fields(request, obj))
        if spec.owner_field and spec.owner_field not in readonly:
            readonly.append(spec.owner_field)
        return readonly

    def has_add_permission(self, request):
        return False
