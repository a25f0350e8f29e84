"""The demo marketplace's own API: sellers' listings and their apps' tokens. Search and the moderators' queue
are the app's (``catalog/urls.py`` mounts them as a host would)."""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.authtoken.views import ObtainAuthToken

from moderation.api.views import ModerationAPIMixin

from .models import Listing
from .serializers import ListingSerializer

# Error responses (400, 403, 404, 413, 429, ...) are documented on every operation by
# moderation.api.schema.document_errors.
LISTING_EXAMPLE = OpenApiExample(
    "A listing",
    response_only=True,
    value={
        "id": 7,
        "title": "Red ceramic mug",
        "description": "350 ml",
        "category": "kitchen",
        "price": "8.00",
        "image": "http://localhost:8000/media/listings/3/5f0e9c2a7b1d4e8f9a3c6b0d2e4f7a1c.jpg",
        "seller": "alice",
        "created_at": "2026-11-28T08:00:00Z",
        "updated_at": "2026-11-28T08:00:00Z",
        "moderation": {
            "status": "rejected",
            "version": 1,
            "rejection_reason": "The photo does not show the item described",
            "moderated_at": "2026-11-28T08:00:02Z",
        },
    },
)


@extend_schema_view(
    list=extend_schema(summary="My listings", examples=[LISTING_EXAMPLE]),
    create=extend_schema(summary="Create a listing (multipart, with its photo)", responses={201: ListingSerializer}),
    retrieve=extend_schema(summary="One of my listings", examples=[LISTING_EXAMPLE]),
    update=extend_schema(summary="Replace one of my listings", responses={200: ListingSerializer}),
    partial_update=extend_schema(summary="Change one of my listings", responses={200: ListingSerializer}),
    destroy=extend_schema(summary="Delete one of my listings"),
)
class ListingViewSet(ModerationAPIMixin, viewsets.ModelViewSet):
    """A seller's own listings. Another seller's listing is a 404, not a 403. The mixin
    gives them the app's error body, parsers, pages and throttles."""

    serializer_class = ListingSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Listing.objects.none()
        return Listing.objects.filter(seller=self.request.user).select_related("category", "seller")

    def get_throttles(self):
        """Uploads (create, update) are throttled; reading one's own listings is not."""
        self.throttle_scope = "uploads" if self.action in ("create", "update", "partial_update") else None
        return super().get_throttles() if self.throttle_scope else []

    def perform_create(self, serializer):
        serializer.save(seller=self.request.user)


@extend_schema(summary='A token for an app: POST username and password, get {"token": ...}')
class TokenView(ModerationAPIMixin, ObtainAuthToken):
    """DRF's token endpoint with the app's error body: a wrong password is a 400
    ``invalid``. The token is the user's one key (``rest_framework.authtoken``) and is
    sent as ``Authorization: Token <key>``; deleting it in the admin revokes it. Throttled
    by the ``login`` scope: passwords cannot be tried as fast as the server answers."""

    throttle_scope = "login"
