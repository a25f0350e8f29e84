"""Serializers shared by any moderated model's API: a safe photo upload field, the
moderation state an owner or a moderator sees, decisions, an object as the public and
the moderators see it, and search: its parameters, filters and results."""

from __future__ import annotations

import functools

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from moderation.conf import moderation_settings
from moderation.models import Decision, FlagReason, ModerationStatus
from moderation.registry import get_spec
from moderation.search import MAX_K
from moderation.transitions import decision_reason, history, rejected_last
from moderation.uploads import validate_photo
from moderation.visible_text import MinVisibleLengthValidator, ProhibitReplacementCharacterValidator

from .errors import PayloadTooLarge


class SafeImageField(serializers.FileField):
    """A photo upload under the upload rules (``moderation.uploads.validate_photo``, the
    validator of ``ModeratedImageField``): allowed formats, pixel cap, a full decode (400
    with the reason and its code), and the byte cap as a 413. A photo that passes here
    will not fail in the task for being unreadable."""

    def to_internal_value(self, data):
        upload = super().to_internal_value(data)
        try:
            validate_photo(upload)
        except DjangoValidationError as exc:
            if exc.code == "image_too_large":
                raise PayloadTooLarge(exc.messages[0]) from None
            raise serializers.ValidationError(exc.messages, code=exc.code) from None
        return upload


class FlagReasonSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=FlagReason.choices)
    label = serializers.CharField()


class ModerationStateSerializer(serializers.Serializer):
    """What an object's owner sees of its moderation, read-only: the status and, for a
    rejection, the moderator's reason (``rejection_reason``). Scores, flag reason codes
    and error codes tell a fraudster which check caught them and by how much, so they
    are the moderators' (``ModeratorStateSerializer``) unless the site sets
    ``MODERATION["SELLERS_SEE_SCORES"]``."""

    status = serializers.CharField(source="moderation_status")
    version = serializers.IntegerField(source="moderation_version")
    rejection_reason = serializers.SerializerMethodField()
    reasons = serializers.SerializerMethodField()
    consistency = serializers.FloatField(source="consistency_score", allow_null=True)
    category_rank = serializers.IntegerField(allow_null=True)
    suggested_categories = serializers.JSONField()
    duplicate_similarity = serializers.FloatField(allow_null=True)
    error = serializers.SerializerMethodField()
    moderated_at = serializers.DateTimeField(allow_null=True)

    # The moderators' fields: which check caught the object, and by how much.
    SCORE_FIELDS = ("reasons", "consistency", "category_rank", "suggested_categories", "duplicate_similarity", "error")

    def shows_scores(self) -> bool:
        """Whether ``SCORE_FIELDS`` are shown; override for another audience."""
        return moderation_settings.SELLERS_SEE_SCORES

    def get_fields(self):
        fields = super().get_fields()
        if not self.shows_scores():
            for name in self.SCORE_FIELDS:
                del fields[name]
        return fields

    def get_rejection_reason(self, obj) -> str | None:
        """The reason of the rejection in force (what the seller must fix): while the object
        is rejected, and while its seller's changes after the rejection wait for a
        moderator (``pending`` again, or ``flagged`` as ``resubmitted``), so that the
        seller still sees what to fix; None otherwise. A query only for those objects."""
        status = obj.moderation_status
        if status == ModerationStatus.FLAGGED and FlagReason.RESUBMITTED in obj.flag_reasons:
            waiting = True
        else:  # edited since it was first saved (version 1 is the first content)
            waiting = status == ModerationStatus.PENDING and obj.moderation_version > 1
        if waiting:
            waiting = str(obj.pk) in rejected_last(type(obj), [obj.pk])
        if status != ModerationStatus.REJECTED and not waiting:
            return None
        return history(obj).filter(to_status=ModerationStatus.REJECTED).values_list("reason", flat=True).first()

    @extend_schema_field(FlagReasonSerializer(many=True))
    def get_reasons(self, obj) -> list[dict]:
        return [
            {"code": code, "label": label} for code, label in zip(obj.flag_reasons, obj.flag_reason_labels, strict=True)
        ]

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_error(self, obj) -> dict | None:
        if not obj.moderation_error:
            return None
        return {
            "code": obj.moderation_error,
            "detail": obj.moderation_error_detail,
            "attempts": obj.moderation_attempts,
        }


class ModeratorStateSerializer(ModerationStateSerializer):
    """An object's moderation as moderators see it: with its scores, flag reasons and error."""

    def shows_scores(self) -> bool:
        return True


class DecisionRequestSerializer(serializers.Serializer):
    """A moderator's decision: a ``preset`` reason from ``MODERATION["DECISION_REASONS"]``,
    the moderator's own words (``reason``), or both, as in the admin. A rejection needs
    one or the other (400 ``invalid`` naming ``reason``). ``version``: the content version
    the moderator read; an object that changed since is refused (409). ``context["verb"]``:
    "approve", "reject" or "rescan". ``validated_data["reason"]`` is the composed reason."""

    preset = serializers.ChoiceField(choices=[], required=False, allow_blank=True, default="")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    version = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="The content version the decision is about (the item's moderation.version, as read): "
        "a 409 if the object changed since. Without it, approving a pending object is a 409.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["preset"].choices = moderation_settings.DECISION_REASONS

    def validate(self, attrs):
        attrs["reason"] = decision_reason(attrs["preset"], attrs["reason"])
        if self.context.get("verb") == "reject" and not attrs["reason"]:
            raise serializers.ValidationError(
                {"reason": [_("A rejection needs a reason: a preset from DECISION_REASONS or your own words.")]},
                code="required",
            )
        return attrs


class DecisionSerializer(serializers.ModelSerializer):
    actor = serializers.StringRelatedField()

    class Meta:
        model = Decision
        fields = ["created_at", "actor", "from_status", "to_status", "reason", "flag_reasons", "scores"]


class PublicObjectSerializer(serializers.Serializer):
    """Any registered model's object as anyone may see it (search results): its key, its
    text, its photo and its category, through the registered fields. No moderation
    details. A host usually gives its own serializer instead (``ModerationRouter.register``)."""

    id = serializers.CharField(source="pk")
    text = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField()

    def get_text(self, obj) -> str:
        return get_spec(type(obj)).text_of(obj)

    def get_image(self, obj) -> str | None:
        image = getattr(obj, get_spec(type(obj)).image_field)
        if not image:
            return None
        request = self.context.get("request")
        return request.build_absolute_uri(image.url) if request else image.url

    def get_category(self, obj) -> str | None:
        return get_spec(type(obj)).category_of(obj)


class QueueItemSerializer(PublicObjectSerializer):
    """An object in the moderators' queue, for any registered model."""

    owner = serializers.SerializerMethodField()
    severity = serializers.IntegerField()
    duplicate_of = serializers.CharField()
    moderation = ModerationStateSerializer(source="*")

    def get_owner(self, obj) -> str | None:
        owner = get_spec(type(obj)).owner_id_of(obj)
        return None if owner is None else str(owner)


# -- search ---------------------------------------------------------------------------


class SearchFiltersSerializer(serializers.Serializer):
    """What every search accepts besides its query: ``k`` and, for moderators, ``status``.

    A host adds its model's filters in a subclass: declare the fields, and turn them into
    ORM lookups in ``lookups()`` (``catalog.serializers.ListingSearchFilters``)."""

    k = serializers.IntegerField(min_value=1, max_value=MAX_K // 2, default=10)
    status = serializers.MultipleChoiceField(
        choices=ModerationStatus.values,
        required=False,
        help_text="Moderators only: search these statuses instead of the public ones (ok, approved).",
    )

    def lookups(self) -> dict:
        """{ORM lookup: value} from the validated filters, for the search's ``filter()``.
        Override with the model's own filters; the base has none."""
        return {}


class TextQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        max_length=500,
        validators=[MinVisibleLengthValidator(1), ProhibitReplacementCharacterValidator()],
        help_text="What the photo should show.",
    )


class ImageQuerySerializer(serializers.Serializer):
    image = SafeImageField(help_text="A photo (JPEG, PNG, WebP or GIF).")


class HybridQuerySerializer(TextQuerySerializer, ImageQuerySerializer):
    image_weight = serializers.FloatField(
        min_value=0, max_value=1, default=0.5, help_text="0 uses only the text, 1 only the photo."
    )


@functools.cache
def search_parameters(query_class: type | None, filters_class: type) -> type[serializers.Serializer]:
    """One serializer of a search's query (``TextQuerySerializer``, ...; None for "more
    like this") and its filters: the parameters are validated together, so a 400 names
    every field that is wrong, and the schema lists them all."""
    if query_class is None:
        return filters_class
    name = filters_class.__name__.removesuffix("Serializer") + query_class.__name__
    return type(name, (query_class, filters_class), {"__module__": filters_class.__module__})


class SearchHitSerializer(serializers.Serializer):
    score = serializers.FloatField(help_text="Cosine similarity for one modality; a fused rank score for several.")
    ranks = serializers.DictField(child=serializers.IntegerField(), help_text="Rank in each fused list.")


@functools.cache
def search_results(model, object_serializer_class: type) -> type[serializers.Serializer]:
    """``{"results": [{"score", "ranks", "<model_name>": {...}}]}``: each hit's object under
    its model's name (``listing``), as ``object_serializer_class`` shows it."""
    name, module = model.__name__, object_serializer_class.__module__
    hit = type(
        f"{name}SearchHitSerializer",
        (SearchHitSerializer,),
        {"__module__": module, model._meta.model_name: object_serializer_class(source="object")},
    )
    return type(
        f"{name}SearchResultsSerializer", (serializers.Serializer,), {"__module__": module, "results": hit(many=True)}
    )
