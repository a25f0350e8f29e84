"""The demo marketplace's API: sellers' listings, and similar-item search."""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import parsers, permissions, viewsets
from rest_framework.generics import GenericAPIView, get_object_or_404
from rest_framework.response import Response

from moderation import search
from moderation.api.parsers import JSONParser
from moderation.api.views import ModerationQueueViewSet
from moderation.models import MODERATE_PERMISSION, PUBLIC_STATUSES, VECTOR_FIELDS

from .models import Listing
from .serializers import (
    HybridSearchSerializer,
    ImageSearchSerializer,
    ListingSerializer,
    SearchFiltersSerializer,
    SearchHitSerializer,
    SearchResultsSerializer,
    TextSearchSerializer,
)

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
            "status": "flagged",
            "version": 1,
            "reasons": [{"code": "text_image_mismatch", "label": "The photo does not match the title and description"}],
            "consistency": 0.17,
            "category_rank": 1,
            "suggested_categories": [],
            "duplicate_similarity": None,
            "error": None,
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
class ListingViewSet(viewsets.ModelViewSet):
    """A seller's own listings. Another seller's listing is a 404, not a 403."""

    serializer_class = ListingSerializer
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [parsers.MultiPartParser, parsers.FormParser, JSONParser]

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


# What search results show needs the category and the seller: one query, not one per hit.
PUBLIC_FIELDS = Listing.objects.select_related("category", "seller")


class SearchView(GenericAPIView):
    """Base of the search endpoints: filters, statuses, the results' shape."""

    permission_classes = [permissions.AllowAny]
    pagination_class = None  # k bounds the results
    throttle_scope = "search"
    serializer_class = SearchFiltersSerializer

    def statuses(self, params):
        """Public searches see ok and approved listings; moderators may ask for others."""
        wanted = params.validated_data.get("status")
        if wanted and self.request.user.has_perm(MODERATE_PERMISSION):
            return sorted(wanted)
        return PUBLIC_STATUSES

    def respond(self, hits):
        return Response({"results": SearchHitSerializer(hits, many=True, context={"request": self.request}).data})


@extend_schema(
    summary="Listings whose photos show what a text says",
    parameters=[TextSearchSerializer],
    responses={200: SearchResultsSerializer},
)
class TextSearchView(SearchView):
    serializer_class = TextSearchSerializer

    def get(self, request):
        params = self.get_serializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        hits = search.by_text(
            PUBLIC_FIELDS,
            params.validated_data["q"],
            k=params.validated_data["k"],
            filters=params.lookups(),
            statuses=self.statuses(params),
        )
        return self.respond(hits)


@extend_schema(
    summary="Listings with photos like an uploaded one (multipart)", responses={200: SearchResultsSerializer}
)
class ImageSearchView(SearchView):
    serializer_class = ImageSearchSerializer
    parser_classes = [parsers.MultiPartParser]

    def post(self, request):
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        image = params.validated_data["image"].read()
        hits = search.by_image(
            PUBLIC_FIELDS, image, k=params.validated_data["k"], filters=params.lookups(), statuses=self.statuses(params)
        )
        return self.respond(hits)


@extend_schema(summary="Text and photo together, fused by rank (multipart)", responses={200: SearchResultsSerializer})
class HybridSearchView(SearchView):
    serializer_class = HybridSearchSerializer
    parser_classes = [parsers.MultiPartParser]

    def post(self, request):
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        hits = search.hybrid(
            PUBLIC_FIELDS,
            text=data["q"],
            image=data["image"].read(),
            image_weight=data["image_weight"],
            k=data["k"],
            filters=params.lookups(),
            statuses=self.statuses(params),
        )
        return self.respond(hits)


@extend_schema(
    summary="More like this listing", parameters=[SearchFiltersSerializer], responses=SearchResultsSerializer
)
class SimilarView(SearchView):
    def get(self, request, pk):
        params = self.get_serializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        visible = Listing.objects.visible_to(request.user)
        listing = get_object_or_404(visible.defer(*VECTOR_FIELDS), pk=pk)  # they stay in the database
        hits = search.similar_to(
            listing,
            k=params.validated_data["k"],
            filters=params.lookups(),
            statuses=self.statuses(params),
            source=PUBLIC_FIELDS,
        )
        return self.respond(hits)


class ListingQueueViewSet(ModerationQueueViewSet):
    queryset = Listing.objects.select_related("category", "seller")
