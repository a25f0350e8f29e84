"""The URLs of the app's API for a host's moderated models, mounted where the host wants::

    # urls.py
    from moderation.api.routers import ModerationRouter

    router = ModerationRouter()
    router.register(
        Product.objects.select_related("brand").only("name", "photo", "brand__name"),  # what the results show
        object_serializer_class=ProductSerializer,
    )
    urlpatterns = [path("api/", include(router.urls))]

For each registered queryset: ``search/text/``, ``search/image/``, ``search/hybrid/``,
``search/similar/<pk>/`` and the moderators' queue ``moderation/<verbose name plural>/``
(``moderation/products/``), under ``prefix`` when given. Last comes ``NotFoundView``, so
that any other URL under the mount point is a JSON 404: mount the router after the
host's own API URLs of the same prefix.
"""

from __future__ import annotations

from django.db import models
from django.urls import include, path, re_path
from django.utils.text import slugify
from rest_framework.routers import SimpleRouter

from .serializers import PublicObjectSerializer, SearchFiltersSerializer
from .views import (
    HybridSearchView,
    ImageSearchView,
    ModerationQueueViewSet,
    NotFoundView,
    SimilarView,
    TextSearchView,
)


def _converter(model) -> str:
    """The path converter of ``model``'s key: a URL that cannot name an object matches no
    endpoint (a JSON 404 by any method) rather than one that answers 405 to a POST."""
    key = model._meta.pk
    if isinstance(key, models.UUIDField):
        return "uuid"
    return "int" if key.get_internal_type().endswith(("AutoField", "IntegerField")) else "str"


class ModerationRouter:
    def __init__(self, *, not_found: bool = True) -> None:
        """``not_found=False`` leaves out the trailing JSON 404 (``NotFoundView``)."""
        self.not_found = not_found
        self._patterns: list = []

    def register(
        self,
        queryset: models.QuerySet,
        *,
        object_serializer_class=PublicObjectSerializer,
        filters_class=SearchFiltersSerializer,
        prefix: str = "",
    ) -> None:
        """Serve search and the queue over ``queryset``, the rows of a registered model
        (a ``ModeratedQuerySet``) with what search results need: ``select_related`` of the
        relations they show, and ``only()`` the columns they show (the queue loads every
        column of the same rows). ``object_serializer_class`` shows a search hit's object
        to anyone (no moderation details); ``filters_class`` adds the model's search
        filters (a ``SearchFiltersSerializer`` subclass); ``prefix`` (``"products/"``)
        keeps two models' URLs apart."""
        model = queryset.model
        name = model._meta.model_name
        options = {
            "queryset": queryset,
            "object_serializer_class": object_serializer_class,
            "filters_class": filters_class,
        }
        # The queue shows and changes the whole moderation state: every column, whatever
        # the search's only() leaves out (a deferred column would be a query per object).
        queue = type(f"{model.__name__}QueueViewSet", (ModerationQueueViewSet,), {"queryset": queryset.defer(None)})
        queue_router = SimpleRouter()
        queue_router.register(
            f"moderation/{slugify(model._meta.verbose_name_plural)}", queue, basename=f"moderation-{name}"
        )
        self._patterns += [
            path(f"{prefix}search/text/", TextSearchView.as_view(**options), name=f"{name}-search-text"),
            path(f"{prefix}search/image/", ImageSearchView.as_view(**options), name=f"{name}-search-image"),
            path(f"{prefix}search/hybrid/", HybridSearchView.as_view(**options), name=f"{name}-search-hybrid"),
            path(
                f"{prefix}search/similar/<{_converter(model)}:pk>/",
                SimilarView.as_view(**options),
                name=f"{name}-search-similar",
            ),
            path(prefix, include(queue_router.urls)),
        ]

    @property
    def urls(self) -> list:
        if not self.not_found:
            return list(self._patterns)
        return [*self._patterns, re_path(r"^.*$", NotFoundView.as_view())]
