"""The demo marketplace's API representations."""

from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from moderation.api.serializers import ModerationStateSerializer, SafeImageField, SearchFiltersSerializer
from moderation.visible_text import ProhibitReplacementCharacterValidator

from .models import TITLE_VALIDATORS, Category, Listing


class CategoryField(serializers.SlugRelatedField):
    """A category by slug. The input is checked before the database sees it: a NUL or a
    lone surrogate in a lookup would be a database error, not a 400."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        for validator in (ProhibitNullCharactersValidator(), ProhibitSurrogateCharactersValidator()):
            validator(data)
        return super().to_internal_value(data)


class ListingSerializer(serializers.ModelSerializer):
    """A seller's own listing. The moderation state is the owner's to see, and read-only."""

    category = CategoryField(slug_field="slug", queryset=Category.objects.all())
    image = SafeImageField()
    seller = serializers.CharField(source="seller.username", read_only=True)
    moderation = ModerationStateSerializer(source="*", read_only=True)

    class Meta:
        model = Listing
        fields = [
            "id",
            "title",
            "description",
            "category",
            "price",
            "image",
            "seller",
            "created_at",
            "updated_at",
            "moderation",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            # The model field's rules, named again: DRF turns a MinLengthValidator (which
            # MinVisibleLengthValidator is) into a plain min_length, counting invisible
            # characters, which is dropped: beside the visible count it said the same twice.
            "title": {"validators": TITLE_VALIDATORS, "min_length": None},
            "price": {"min_value": 0, "max_value": 10_000_000},
        }


# A plain Serializer with its fields declared, not a ModelSerializer: DRF builds a
# ModelSerializer's fields from the model on every request, which cost a search request
# more than its JSON (docs/benchmarks.md, "Where a search request's time goes"). The
# fields give the JSON and the schema the ModelSerializer gave (its read-only fields:
# no length or value limits); the columns they read are PUBLIC_LISTING_COLUMNS.
class PublicListingSerializer(serializers.Serializer):
    """A listing as anyone sees it in search results: no moderation details."""

    id = serializers.IntegerField(read_only=True)
    title = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    category = serializers.CharField(source="category.slug", read_only=True)
    price = serializers.DecimalField(max_digits=10, decimal_places=2, read_only=True)
    image = serializers.ImageField(read_only=True)
    seller = serializers.CharField(source="seller.username", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


# What PublicListingSerializer reads, for the search's ``only()`` (catalog/urls.py): a
# search loads these and the key, not the seller's password hash nor the moderation state.
PUBLIC_LISTING_COLUMNS = ("title", "description", "category__slug", "price", "image", "seller__username", "created_at")


class ListingSearchFilters(SearchFiltersSerializer):
    """The demo's search filters, besides ``k`` and ``status``: category, price and seller."""

    category = serializers.SlugField(required=False)
    price_min = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False)
    price_max = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False)
    seller = serializers.CharField(
        required=False,
        max_length=150,
        validators=[ProhibitReplacementCharacterValidator()],
        help_text="The seller's username.",
    )

    def validate(self, attrs):
        if "price_min" in attrs and "price_max" in attrs and attrs["price_min"] > attrs["price_max"]:
            raise serializers.ValidationError({"price_max": "price_max must not be below price_min."})
        return attrs

    def lookups(self) -> dict:
        data, lookups = self.validated_data, {}
        if "category" in data:
            # By the foreign key's value, not through a join on the slug: PostgreSQL then
            # knows from the column's statistics how many listings the category holds,
            # and searches a small one exactly (its index on category_id, then a sort)
            # instead of walking the HNSW graph for the few rows that pass the filter
            # (docs/benchmarks.md, "Search at 10k, 100k and 1M"). Looked up on every
            # search: a per-process cache of it answered a renamed or swapped slug with
            # another category's listings until it expired (docs/api.md).
            category = Category.objects.filter(slug=data["category"]).values_list("pk", flat=True).first()
            if category is None:
                lookups["pk__in"] = []  # no such category: no results
            else:
                lookups["category_id"] = category
        if "price_min" in data:
            lookups["price__gte"] = data["price_min"]
        if "price_max" in data:
            lookups["price__lte"] = data["price_max"]
        if "seller" in data:
            lookups["seller__username"] = data["seller"]
        return lookups
