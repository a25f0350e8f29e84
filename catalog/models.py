"""The demo marketplace: sellers' listings in an editable catalogue of categories."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from moderation.models import ModeratedModel
from moderation.registry import register
from moderation.uploads import ModeratedImageField
from moderation.visible_text import (
    MinVisibleLengthValidator,
    ProhibitBidiControlsValidator,
    ProhibitReplacementCharacterValidator,
)


class Category(models.Model):
    """A category of the site's catalogue; editable in the admin, so a site can grow it."""

    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.CharField(
        max_length=500,
        blank=True,
        help_text="What the category holds, for the photo check: e.g. for Furniture, 'a sofa, a chair, a table'.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


# A title needs three characters a reader sees: zero-width, bidi and control characters
# do not count; and no bidi embedding, override or isolate control, which would show
# moderators the text in another order than it is written, nor U+FFFD, what bytes that
# are not UTF-8 became. On the model fields, so that every form holds them to it (the
# admin's, a view-only one too); the API's serializer names them again
# (catalog/serializers.py). The description is held to the last two.
DESCRIPTION_VALIDATORS = [ProhibitBidiControlsValidator(), ProhibitReplacementCharacterValidator()]
TITLE_VALIDATORS = [MinVisibleLengthValidator(3), *DESCRIPTION_VALIDATORS]


def listing_image_path(instance: "Listing", filename: str) -> str:
    """A folder per seller; the file name is the upload rules' (moderation.uploads)."""
    return f"listings/{instance.seller_id}/{filename}"


@register(
    text_fields=["title", "description"],
    image_field="image",
    category_field="category",
    owner_field="seller",
    created_field="created_at",
    category_description_field="description",
)
class Listing(ModeratedModel):
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="listings")
    title = models.CharField(max_length=200, validators=TITLE_VALIDATORS)
    description = models.TextField(blank=True, max_length=5000, validators=DESCRIPTION_VALIDATORS)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="listings")
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(0)])
    image = ModeratedImageField(upload_to=listing_image_path)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(ModeratedModel.Meta):
        ordering = ["-created_at"]
        indexes = [*ModeratedModel.Meta.indexes, models.Index(fields=["seller", "-created_at"])]

    def __str__(self) -> str:
        return self.title


class ListingReview(Listing):
    """The review queue of listings in the admin (flagged and errored, most severe first)."""

    class Meta:
        proxy = True
        verbose_name = "listing to review"
        verbose_name_plural = "listings to review"
