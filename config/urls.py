"""URLs of the demo marketplace: the admin (with the review queue) and the API."""

import mimetypes

from django.conf import settings
from django.contrib import admin
from django.http import Http404
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from django.views.static import serve

from moderation import health
from moderation.uploads import photo_content_types

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("catalog.urls")),
    path("health/", health.web, name="health"),
    path("health/cluster/", health.cluster, name="health-cluster"),
]


def serve_photo(request, path):
    """An uploaded photo, for the demo (``SERVE_MEDIA``). Only the photos' own content
    types are served: a file stored before the upload rules under a name such as
    ``x.html`` is a 404, never HTML on the admin's origin. SecurityMiddleware adds
    ``X-Content-Type-Options: nosniff``, so browsers keep the type they are given."""
    if mimetypes.guess_type(path)[0] not in photo_content_types():
        raise Http404
    return serve(request, path, document_root=settings.MEDIA_ROOT)


if settings.SERVE_MEDIA:
    prefix = settings.MEDIA_URL.lstrip("/")
    urlpatterns += [re_path(rf"^{prefix}(?P<path>.*)$", serve_photo)]
