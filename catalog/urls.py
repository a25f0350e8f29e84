"""The API under /api/: the demo's listings, then search and the moderators' queue as
any host mounts them (``moderation.api.routers.ModerationRouter``)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from moderation.api.routers import ModerationRouter

from . import views
from .models import Listing
from .serializers import PUBLIC_LISTING_COLUMNS, ListingSearchFilters, PublicListingSerializer

router = DefaultRouter()
router.register("listings", views.ListingViewSet, basename="listing")

moderation = ModerationRouter()
# What search results show needs the category and the seller: one query, not one per hit,
# and only the columns the results show (not the seller's password hash, nor the
# moderation state): fewer columns to compile, send and turn into instances.
moderation.register(
    Listing.objects.select_related("category", "seller").only(*PUBLIC_LISTING_COLUMNS),
    object_serializer_class=PublicListingSerializer,
    filters_class=ListingSearchFilters,
)

urlpatterns = [
    path("", include(router.urls)),
    path("token/", views.TokenView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include(moderation.urls)),  # last: it ends with the JSON 404 for any other URL
]
