"""Serializers shared by any moderated model's API: a safe photo upload field, the
moderation state an owner or a moderator sees, decisions."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from moderation.models import Decision, FlagReason
from moderation.registry import get_spec
from moderation.uploads import validate_photo

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
    """What the owner and moderators see of an object's moderation. Read-only."""

    status = serializers.CharField(source="moderation_status")
    version = serializers.IntegerField(source="moderation_version")
    reasons = serializers.SerializerMethodField()
    consistency = serializers.FloatField(source="consistency_score", allow_null=True)
    category_rank = serializers.IntegerField(allow_null=True)
    suggested_categories = serializers.JSONField()
    duplicate_similarity = serializers.FloatField(allow_null=True)
    error = serializers.SerializerMethodField()
    moderated_at = serializers.DateTimeField(allow_null=True)

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


class DecisionRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class DecisionSerializer(serializers.ModelSerializer):
    actor = serializers.StringRelatedField()

    class Meta:
        model = Decision
        fields = ["created_at", "actor", "from_status", "to_status", "reason", "flag_reasons", "scores"]


class QueueItemSerializer(serializers.Serializer):
    """An object in the moderators' queue, for any registered model."""

    id = serializers.CharField(source="pk")
    text = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    severity = serializers.IntegerField()
    duplicate_of = serializers.CharField()
    moderation = ModerationStateSerializer(source="*")

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

    def get_owner(self, obj) -> str | None:
        owner = get_spec(type(obj)).owner_id_of(obj)
        return None if owner is None else str(owner)
