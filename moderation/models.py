"""What a moderated model carries (``ModeratedModel``), and the audit trail (``Decision``).

A host model inherits ``ModeratedModel`` and is declared with
``moderation.registry.register`` (which fields hold the text, the photo, the category
and the owner). Vectors live on the host's own rows, beside the id of the model that
made them, with HNSW cosine indexes.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.fields import ArrayField
from django.db import connections, models
from django.db.backends.utils import names_digest
from django.utils.translation import gettext_lazy as _
from pgvector.django import HalfVectorField, HnswIndex

from .conf import DEFAULTS, moderation_settings


class ModerationStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    OK = "ok", _("OK")
    FLAGGED = "flagged", _("Flagged")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    ERROR = "error", _("Error")


# Which statuses each part of the app means (ModeratedQuerySet names the queries).
PUBLIC_STATUSES = (ModerationStatus.OK, ModerationStatus.APPROVED)  # anyone may see them
REVIEW_STATUSES = (ModerationStatus.FLAGGED, ModerationStatus.ERROR)  # they need a person
UNSCORED_STATUSES = (ModerationStatus.PENDING, ModerationStatus.ERROR)  # a task has work to do
DECIDED_STATUSES = (ModerationStatus.APPROVED, ModerationStatus.REJECTED)  # a moderator's; a rescan keeps them
# The review queue's order: the most severe first, then the worst text/photo agreement.
REVIEW_ORDER = ("-severity", "consistency_score", "pk")


class FlagReason(models.TextChoices):
    TEXT_IMAGE_MISMATCH = "text_image_mismatch", _("The photo does not match the title and description")
    CATEGORY_MISMATCH = "category_mismatch", _("The photo does not look like the listed category")
    DUPLICATE_IMAGE = "duplicate_image", _("The same photo is used by another seller")
    REPOST = "repost", _("The seller listed the same text and photo before")
    PROHIBITED_ITEM = "prohibited_item", _("The photo or text looks like a prohibited item")
    # Not a score: the seller changed an object whose moderators' last word was a rejection
    # (``transitions.record_scores``), so the new content goes to a person, not to public.
    RESUBMITTED = "resubmitted", _("Changed or listed again by the seller after a moderator rejected it")


# The thresholds scoring reads, each with a default in conf.DEFAULTS["THRESHOLDS"].
THRESHOLD_KEYS = tuple(DEFAULTS["THRESHOLDS"])

# Read when the host's model class is built: the width is fixed in its migration.
# halfvec (2 bytes a dimension) rather than vector: see docs/storage.md.
DIMENSIONS = moderation_settings.DIMENSIONS


# The two vector columns: skipped when rows are loaded for anything but their vectors.
VECTOR_FIELDS = ("text_vector", "image_vector")


def vector_dimensions(model: type[models.Model], *, using: str = "default") -> dict[str, int]:
    """The width of ``model``'s vector columns in the database: {field name: dimensions}.

    Read from PostgreSQL's catalog (the type modifier of ``halfvec(n)`` is n), since
    the model's own fields only say what its class was built with. Empty when the
    table does not exist yet.
    """
    connection = connections[using]
    columns = {model._meta.get_field(name).column: name for name in VECTOR_FIELDS}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attname = ANY(%s) AND NOT attisdropped",
            [connection.ops.quote_name(model._meta.db_table), list(columns)],
        )
        return {columns[column]: width for column, width in cursor.fetchall()}


class ModeratedQuerySet(models.QuerySet):
    """The queries of moderated objects, named once for the admin, the API and search.

    ``ModeratedModel.objects`` is built from it. A host model with its own manager keeps
    them by building its queryset on this class (system check ``moderation.E006``)::

        class ProductQuerySet(ModeratedQuerySet):
            def in_stock(self): ...

        class Product(ModeratedModel):
            objects = ProductQuerySet.as_manager()
    """

    def needs_review(self):
        """What needs a person (flagged and error), most severe first (``REVIEW_ORDER``)."""
        return self.filter(moderation_status__in=REVIEW_STATUSES).order_by(*REVIEW_ORDER)

    def public(self):
        """What anyone may see: ok and approved."""
        return self.filter(moderation_status__in=PUBLIC_STATUSES)

    def flagged_for(self, reason: str):
        """Objects whose flag reasons include ``reason`` (a ``FlagReason`` code)."""
        return self.filter(flag_reasons__contains=[reason])

    def visible_to(self, user):
        """What ``user`` may see: everything for a moderator (``MODERATE_PERMISSION``), else
        the public objects and the user's own (through the registered ``owner_field``)."""
        if user.has_perm(MODERATE_PERMISSION):
            return self.all()
        visible = models.Q(moderation_status__in=PUBLIC_STATUSES)
        owner_field = self.model.moderation_spec.owner_field
        if owner_field and user.is_authenticated:
            visible |= models.Q(**{owner_field: user})
        return self.filter(visible)


class VectorIndexName(str):
    """The name of a vector index on ``ModeratedModel.Meta``, valid for any app label and
    model name: at most 30 characters (Django's limit, ``models.E034``).

    Django names an inherited index by formatting "%(app_label)s" and "%(class)s" in its
    name with ``%`` (``Options._format_names``); "marketplace_productlisting_img_hnsw"
    would be 35 characters. This name formats itself as the start of
    "<app_label>_<class>", a digest of the whole (so two models never share a name) and
    ``suffix``: "marketplace__1ceed104_img_hnsw".
    """

    def __new__(cls, suffix: str):
        name = super().__new__(cls, f"%(app_label)s_%(class)s_{suffix}")
        name.suffix = suffix
        return name

    def __getnewargs__(self) -> tuple[str]:
        return (self.suffix,)  # copies (Django deep-copies inherited indexes) are built from the suffix

    def __mod__(self, names: dict) -> str:
        table = f"{names['app_label']}_{names['class']}"
        return f"{table[:12]}_{names_digest(table, length=8)}_{self.suffix}"


class ModeratedModel(models.Model):
    """Abstract fields a moderated model carries. State changes go through
    ``moderation.transitions``, never through direct assignment."""

    moderation_status = models.CharField(
        _("moderation status"),
        max_length=16,
        choices=ModerationStatus.choices,
        default=ModerationStatus.PENDING,
        db_index=True,
        editable=False,
    )
    # Bumped by every change of text or photo; a task's result is written only if the
    # version it was computed for is still current.
    moderation_version = models.PositiveIntegerField(default=0, editable=False)
    content_hash = models.CharField(max_length=64, blank=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True, editable=False)
    text_vector = HalfVectorField(dimensions=DIMENSIONS, null=True, blank=True, editable=False)
    image_vector = HalfVectorField(dimensions=DIMENSIONS, null=True, blank=True, editable=False)
    image_phash = models.BigIntegerField(null=True, blank=True, editable=False)
    consistency_score = models.FloatField(_("text/photo agreement"), null=True, blank=True, editable=False)
    category_rank = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    category_score = models.FloatField(null=True, blank=True, editable=False)
    suggested_categories = models.JSONField(default=list, blank=True, editable=False)
    duplicate_of = models.CharField(max_length=64, blank=True, editable=False)
    duplicate_similarity = models.FloatField(null=True, blank=True, editable=False)
    # The prohibited concepts the photo or text looks like: [{concept, on, score, threshold}].
    prohibited_items = models.JSONField(default=list, blank=True, editable=False)
    # The thresholds the scores were held against ({"CONSISTENCY_MIN": 0.2, ...}), written
    # with them: a change of settings later does not rewrite what a moderator is shown.
    moderation_thresholds = models.JSONField(default=dict, blank=True, editable=False)
    flag_reasons = ArrayField(models.CharField(max_length=32), default=list, blank=True, editable=False)
    severity = models.PositiveSmallIntegerField(default=0, db_index=True, editable=False)
    moderation_error = models.CharField(max_length=32, blank=True, editable=False)
    moderation_error_detail = models.TextField(blank=True, editable=False)
    moderation_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    # Set when a task counts an attempt, before it decodes or embeds; cleared when the
    # attempt's outcome is recorded. Still set when the next task comes: the worker died.
    moderation_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    moderation_retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    moderation_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    moderated_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ModeratedQuerySet.as_manager()

    # Set by ``moderation.registry.register``: which fields hold the text, the photo, the
    # category and the owner (a ``ModerationSpec``).
    moderation_spec = None

    class Meta:
        abstract = True
        indexes = [
            HnswIndex(
                name=VectorIndexName("img_hnsw"),
                fields=["image_vector"],
                m=16,
                ef_construction=64,
                opclasses=["halfvec_cosine_ops"],
            ),
            HnswIndex(
                name=VectorIndexName("txt_hnsw"),
                fields=["text_vector"],
                m=16,
                ef_construction=64,
                opclasses=["halfvec_cosine_ops"],
            ),
        ]

    @property
    def flag_reason_labels(self) -> list[str]:
        return [str(FlagReason(code).label) if code in FlagReason.values else code for code in self.flag_reasons]


# Who may approve, reject and rescan: the "moderate" permission of Decision's Meta.
MODERATE_PERMISSION = "moderation.moderate"


class ObjectRecord(models.Model):
    """A row about one moderated object of any registered model (content type + key)."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_pk = models.CharField(max_length=64)
    content_object = GenericForeignKey("content_type", "object_pk")

    class Meta:
        abstract = True


class Decision(ObjectRecord):
    """One state change of a moderated object, by a person or by the system (actor is None)."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_status = models.CharField(max_length=16, choices=ModerationStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=ModerationStatus.choices)
    reason = models.TextField(blank=True)
    flag_reasons = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    content_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_pk", "-created_at"])]
        permissions = [("moderate", "Can approve, reject and rescan moderated objects")]

    def __str__(self) -> str:
        who = self.actor or "system"
        return f"{self.from_status or 'new'} -> {self.to_status} by {who}"


class StoredThreshold(models.Model):
    """A threshold learned from moderators' decisions or set in the admin; it wins over
    ``MODERATION['THRESHOLDS']`` (``scoring.thresholds_for``). Change it through
    ``moderation.thresholds.set_threshold``, which writes a ``ThresholdChange``."""

    model_label = models.CharField(
        _("model"), max_length=100, blank=True, help_text=_("app_label.model; empty for every moderated model.")
    )
    category = models.CharField(_("category"), max_length=200, blank=True, help_text=_("Empty for every category."))
    key = models.CharField(_("threshold"), max_length=40, choices=[(key, key) for key in THRESHOLD_KEYS])
    value = models.FloatField(_("value"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_label", "category", "key"], name="moderation_threshold_unique")
        ]
        ordering = ["model_label", "category", "key"]

    def __str__(self) -> str:
        return f"{self.key} = {self.value:g} ({self.model_label or 'all models'}, {self.category or 'all categories'})"


class ThresholdChange(models.Model):
    """One change of a ``StoredThreshold``: who, when, from what, to what (None: removed)."""

    model_label = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=200, blank=True)
    key = models.CharField(max_length=40)
    old_value = models.FloatField(null=True, blank=True)
    new_value = models.FloatField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=40)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        old, new = ("unset" if value is None else f"{value:g}" for value in (self.old_value, self.new_value))
        return f"{self.key} ({self.category or 'all categories'}): {old} -> {new}"


class ReviewHold(ObjectRecord):
    """A moderator who opened an object holds it until ``expires_at`` (``moderation.holds``):
    others see who, and the review flow's "next" skips it. One hold per object."""

    moderator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["content_type", "object_pk"], name="moderation_one_hold")]

    def __str__(self) -> str:
        return f"{self.moderator} holds {self.object_pk} until {self.expires_at:%H:%M}"


class RejectedPhoto(ObjectRecord):
    """A photo a moderator rejected that left its object while the object stood rejected:
    the object was deleted, or its seller changed it. Its owner listing the picture again,
    as a new object or on another one, is ``resubmitted`` (``duplicates.duplicate_candidates``);
    pictures still on rejected objects are found on the objects themselves. The vector is
    the embedder's (``embedding_model``), of any width; few rows an owner, read by owner."""

    owner = models.CharField(max_length=64)
    embedding_model = models.CharField(max_length=100)
    image_vector = HalfVectorField()
    image_phash = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["content_type", "owner"])]

    def __str__(self) -> str:
        return f"rejected photo of {self.object_pk} (owner {self.owner})"


class Note(ObjectRecord):
    """A moderator's internal note on an object, shown with its decisions; never to the seller."""

    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(_("note"), max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_pk", "-created_at"])]

    def __str__(self) -> str:
        return f"note by {self.author or 'someone'} on {self.object_pk}"


# Upper bounds (ms) of the latency buckets of ``EmbedderUsage``; the last is open-ended.
LATENCY_BUCKETS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 60000)


class EmbedderUsage(models.Model):
    """The embedder's account, one row per day and model id (``moderation.usage``): calls,
    inputs, total latency, a latency histogram over ``LATENCY_BUCKETS_MS`` (one count more,
    for slower calls) and the estimated cost in the provider's currency."""

    day = models.DateField()
    model_id = models.CharField(max_length=100)
    calls = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    inputs = models.PositiveBigIntegerField(default=0)
    latency_ms = models.FloatField(default=0.0)
    latency_buckets = ArrayField(models.PositiveIntegerField(), default=list)
    cost = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-day", "model_id"]
        constraints = [models.UniqueConstraint(fields=["day", "model_id"], name="moderation_usage_per_day")]

    def __str__(self) -> str:
        return f"{self.model_id} on {self.day}: {self.calls} calls"


class Heartbeat(models.Model):
    """When a task of the cluster last ran, by name (``moderation.health``): written only
    by a running task, so a cluster whose workers run nothing leaves it to age."""

    name = models.CharField(max_length=50, primary_key=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class Drain(models.Model):
    """Whether a drain task of a moderated model is queued and not yet started
    (``moderation.drains``): one row per model label; ``queued_at`` is None when not.
    ``followers`` counts the drains ``drains.follow`` queued that have not started,
    ``followed_at`` when it last queued one."""

    label = models.CharField(max_length=100, primary_key=True)
    queued_at = models.DateTimeField(null=True)
    followers = models.PositiveIntegerField(db_default=0)
    followed_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"{self.label}: queued at {self.queued_at:%Y-%m-%d %H:%M:%S}" if self.queued_at else self.label
