"""The API under /api/."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from moderation.api.views import NotFoundView

from . import views

router = DefaultRouter()
router.register("listings", views.ListingViewSet, basename="listing")
router.register("moderation/listings", views.ListingQueueViewSet, basename="moderation-listing")

urlpatterns = [
    path("", include(router.urls)),
    path("search/text/", views.TextSearchView.as_view(), name="search-text"),
    path("search/image/", views.ImageSearchView.as_view(), name="search-image"),
    path("search/hybrid/", views.HybridSearchView.as_view(), name="search-hybrid"),
    path("search/similar/<int:pk>/", views.SimilarView.as_view(), name="search-similar"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^.*/$", NotFoundView.as_view()),  # last: anything else under /api/ is a JSON 404
]
