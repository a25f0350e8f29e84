"""A second moderated model, unlike catalog.Listing: a UUID key, other field names, a
category held in a CharField with choices, and an owner that is optional. Its
categories are named by colour so that the demo model can rank them."""

import uuid

from django.conf import settings
from django.db import models

from moderation.models import ModeratedModel
from moderation.registry import register
from moderation.uploads import ModeratedImageField


class Gadget(ModeratedModel):
    class Kind(models.TextChoices):
        RED = "red", "Red gear"
        BLUE = "blue", "Blue gear"
        GREEN = "green", "Green gear"
        YELLOW = "yellow", "Yellow gear"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    blurb = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    picture = ModeratedImageField(upload_to="gadgets/")
    maker = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    made_at = models.DateTimeField(auto_now_add=True)  # UUID keys say nothing of upload order

    class Meta(ModeratedModel.Meta):
        pass


register(
    Gadget,
    text_fields=["name", "blurb"],
    image_field="picture",
    category_field="kind",
    owner_field="maker",
    created_field="made_at",
)
