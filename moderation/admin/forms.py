"""The forms of the review desk: a moderator's decision (its reason kept in the history) and a note."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from moderation.conf import moderation_settings
from moderation.transitions import decision_reason


class DecisionForm(forms.Form):
    """A reason picked from the site's ``DECISION_REASONS``, free text, or both.

    ``verb`` is the decision the form is for ("approve", "reject", "rescan"): a
    rejection needs a reason. A reason PostgreSQL cannot hold (a NUL character) or
    longer than 2,000 characters is a form error, and nothing is decided.
    ``shown_status`` and ``shown_version``: the object's status and content version on
    the page the moderator decided from (``initial=shown(obj)``); the transition refuses
    a decision on an object that changed since. The bulk actions' page sends them per
    object instead (``moderation_shown_<pk>``, ``mixins.shown_on_page``).
    """

    preset = forms.ChoiceField(label=_("Reason"), required=False)
    reason = forms.CharField(
        label=_("Details"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Kept in the decision history, and shown to the seller where the site does so."),
    )
    shown_status = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)
    shown_version = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, verb: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.verb = verb
        presets = moderation_settings.DECISION_REASONS
        self.fields["preset"].choices = [("", "---------"), *((text, text) for text in presets)]

    def clean(self):
        data = super().clean()
        data["reason"] = decision_reason(data.get("preset", ""), data.get("reason", ""))
        if self.verb == "reject" and not data["reason"] and not self.errors:
            raise forms.ValidationError(_("A rejection needs a reason: pick one or write one."), code="required")
        return data

    @property
    def shown(self) -> tuple[str, int] | None:
        """(status, version) of the object as the page showed it, or None when the form sent none."""
        status, version = self.cleaned_data.get("shown_status"), self.cleaned_data.get("shown_version")
        return None if not status or version is None else (status, version)


class NoteForm(forms.Form):
    """An internal note on an object, for other moderators."""

    text = forms.CharField(label=_("Note"), max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))
