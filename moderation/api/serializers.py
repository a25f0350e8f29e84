"""Serializers shared by any moderated model's API: a safe photo upload field, the
moderation state an owner or a moderator sees, decisions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from moderation.conf import moderation_settings
from moderation.embedders import PermanentEmbedError, decode_listing_image
from moderation.models import Decision, FlagReason
from moderation.registry import get_spec

from .errors import PayloadTooLarge


class SafeImageField(serializers.FileField):
    """A photo upload checked as the pipeline will decode it: byte cap (413), allowed
    formats, pixel cap, truncation (400 with the reason). A photo that passes here
    will not fail in the task for being unreadable."""

    default_error_messages = {"invalid_image": "{message}"}

    def to_internal_value(self, data):
        upload = super().to_internal_value(data)
        limit = moderation_settings.IMAGE_MAX_BYTES
        if upload.size > limit:
            raise PayloadTooLarge(f"The photo is {upload.size} bytes; at most {limit} are accepted.")
        upload.seek(0)
        try:
            decode_listing_image(upload.read())
        except PermanentEmbedError as exc:
            raise serializers.ValidationError(str(exc), code=exc.code) from None
        finally:
            upload.seek(0)
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
