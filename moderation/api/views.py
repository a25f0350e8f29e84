"""The app's endpoints for any registered model: similar-item search, the moderators'
queue, and the API's answer for a URL that matches nothing.

Every view here answers the same whatever the host's ``REST_FRAMEWORK`` says
(``ModerationAPIMixin``): the one error body, pages of 20, parsers that make any
unparsable body a 400, the ``search`` and ``uploads`` throttles. A host mounts them
with ``moderation.api.routers.ModerationRouter``, and may give its own views the same
answers with the mixin.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponsePermanentRedirect
from django.urls import Resolver404, get_urlconf, resolve
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from moderation import search, transitions
from moderation.models import MODERATE_PERMISSION, PUBLIC_STATUSES, REVIEW_ORDER, FlagReason
from moderation.models import ModerationStatus as S

from .errors import exception_handler
from .pagination import CappedPageNumberPagination
from .parsers import JSONParser
from .permissions import IsModerator
from .serializers import (
    DecisionRequestSerializer,
    DecisionSerializer,
    HybridQuerySerializer,
    ImageQuerySerializer,
    PublicObjectSerializer,
    QueueItemSerializer,
    SearchFiltersSerializer,
    TextQuerySerializer,
    search_parameters,
    search_results,
)
from .throttling import ScopedRateThrottle

DECISION_EXAMPLE = OpenApiExample(
    "With a reason and the version read", value={"reason": "The photo shows another product.", "version": 2}
)


class ModerationAPIMixin:
    """The answers of the app's views, set on the views rather than read from
    ``REST_FRAMEWORK``, so that a host without the demo's settings gets what docs/api.md
    documents. Authentication stays the host's (``DEFAULT_AUTHENTICATION_CLASSES``)."""

    parser_classes = [JSONParser, parsers.FormParser, parsers.MultiPartParser]
    pagination_class = CappedPageNumberPagination
    throttle_classes = [ScopedRateThrottle]

    def get_exception_handler(self):
        return exception_handler

    def get_object(self):
        """DRF's, through this module's ``get_object_or_404``: every missing object is
        answered alike. Raises Http404 (404 ``not_found``)."""
        queryset = self.filter_queryset(self.get_queryset())
        key = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        obj = get_object_or_404(queryset, **{self.lookup_field: key})
        self.check_object_permissions(self.request, obj)
        return obj


def get_object_or_404(queryset, **lookups):
    """``queryset.get(**lookups)``; raises Http404 with Django's message ("No Listing matches
    the given query.") for a missing object and for a value the key cannot hold
    (``/api/listings/abc/``), where DRF's get_object_or_404 said only "Not found."."""
    try:
        return queryset.get(**lookups)
    except (queryset.model.DoesNotExist, TypeError, ValueError, DjangoValidationError):
        raise Http404(f"No {queryset.model._meta.object_name} matches the given query.") from None


# -- search ---------------------------------------------------------------------------


class SearchSchema(AutoSchema):
    """A search's parameters and results as its view is configured (``query_class``,
    ``filters_class``, the model and its ``object_serializer_class``)."""

    def get_override_parameters(self):
        if self.method == "GET":
            return [*super().get_override_parameters(), self.view.get_serializer_class()]
        return super().get_override_parameters()

    def get_request_serializer(self):
        return self.view.get_serializer_class() if self.method == "POST" else None

    def get_response_serializers(self):
        return self.view.get_results_serializer_class()


class SearchView(ModerationAPIMixin, GenericAPIView):
    """Base of the search endpoints. Configured per model with ``as_view`` (the router
    does it): ``queryset``, the rows searched and what their results need (e.g.
    ``Product.objects.select_related("brand").only("name", "price", "brand__name")``);
    ``object_serializer_class``, how a hit's object is shown; ``filters_class``, a
    ``SearchFiltersSerializer`` with the model's filters."""

    permission_classes = [AllowAny]
    pagination_class = None  # k bounds the results
    throttle_scope = "search"
    schema = SearchSchema()
    object_serializer_class = PublicObjectSerializer
    filters_class = SearchFiltersSerializer
    query_class = None  # the endpoint's own parameters besides the filters

    def get_serializer_class(self):
        """The parameters: the endpoint's query and the model's filters, one serializer."""
        return search_parameters(self.query_class, self.filters_class)

    def get_results_serializer_class(self):
        return search_results(self.get_queryset().model, self.object_serializer_class)

    def get_parameters(self, data):
        """The validated parameters serializer; raises ValidationError (400) naming each bad field."""
        parameters = self.get_serializer(data=data)
        parameters.is_valid(raise_exception=True)
        return parameters

    def statuses(self, parameters):
        """Public searches see ok and approved objects; moderators may ask for others."""
        wanted = parameters.validated_data.get("status")
        if wanted and self.request.user.has_perm(MODERATE_PERMISSION):
            return sorted(wanted)
        return PUBLIC_STATUSES

    def respond(self, hits):
        """The shape of ``get_results_serializer_class`` (the schema's): the objects go through
        ``object_serializer_class`` as one list; score and ranks are plain numbers, written
        here rather than by two nested serializers whose fields DRF copies on every request."""
        objects = self.object_serializer_class(
            [hit.object for hit in hits], many=True, context=self.get_serializer_context()
        ).data
        name = self.queryset.model._meta.model_name
        return Response(
            {
                "results": [
                    {"score": float(hit.score), "ranks": {str(n): int(r) for n, r in hit.ranks.items()}, name: data}
                    for hit, data in zip(hits, objects, strict=True)
                ]
            }
        )


class TextSearchView(SearchView):
    """Objects whose photos show what a text says."""

    query_class = TextQuerySerializer

    def get(self, request):
        parameters = self.get_parameters(request.query_params)
        hits = search.by_text(
            self.get_queryset(),
            parameters.validated_data["q"],
            k=parameters.validated_data["k"],
            filters=parameters.lookups(),
            statuses=self.statuses(parameters),
        )
        return self.respond(hits)


class ImageSearchView(SearchView):
    """Objects with photos like an uploaded one (multipart)."""

    query_class = ImageQuerySerializer
    parser_classes = [parsers.MultiPartParser]

    def post(self, request):
        parameters = self.get_parameters(request.data)
        hits = search.by_image(
            self.get_queryset(),
            parameters.validated_data["image"].read(),
            k=parameters.validated_data["k"],
            filters=parameters.lookups(),
            statuses=self.statuses(parameters),
        )
        return self.respond(hits)


class HybridSearchView(SearchView):
    """Text and photo together, fused by rank (multipart)."""

    query_class = HybridQuerySerializer
    parser_classes = [parsers.MultiPartParser]

    def post(self, request):
        parameters = self.get_parameters(request.data)
        data = parameters.validated_data
        hits = search.hybrid(
            self.get_queryset(),
            text=data["q"],
            image=data["image"].read(),
            image_weight=data["image_weight"],
            k=data["k"],
            filters=parameters.lookups(),
            statuses=self.statuses(parameters),
        )
        return self.respond(hits)


class SimilarView(SearchView):
    """More like this object: its photo's and its text's neighbours, fused by rank. An
    object that is not public is answered only for its owner and moderators (404 for others)."""

    def get_object_queryset(self):
        """The rows whose neighbours the user may ask for, loading what ``search.similar_to``
        reads of the object: its key and ``embedding_model``. Not the results' columns nor
        their relations (the search loads the hits), nor the vectors, which the search
        reads in the database."""
        queryset = self.get_queryset().select_related(None).prefetch_related(None).only("embedding_model")
        return queryset.visible_to(self.request.user)

    def get(self, request, pk):
        parameters = self.get_parameters(request.query_params)
        obj = get_object_or_404(self.get_object_queryset(), pk=pk)
        hits = search.similar_to(
            obj,
            k=parameters.validated_data["k"],
            filters=parameters.lookups(),
            statuses=self.statuses(parameters),
            source=self.get_queryset(),
        )
        return self.respond(hits)


# -- the moderators' queue ----------------------------------------------------------


class QueueFiltersSerializer(serializers.Serializer):
    """The queue's query string. A value outside the enums is a 400, not a filter ignored."""

    status = serializers.ChoiceField(
        choices=S.choices, required=False, help_text="Another status than the queue's (flagged and error)."
    )
    reason = serializers.ChoiceField(
        choices=FlagReason.choices, required=False, help_text="Only objects flagged for this reason."
    )


@extend_schema_view(
    list=extend_schema(
        summary="The review queue",
        description="Flagged and errored objects, most severe first. Moderators only.",
        parameters=[QueueFiltersSerializer],
    ),
    retrieve=extend_schema(summary="One object of the queue, with its decision history"),
)
class ModerationQueueViewSet(
    ModerationAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Set ``queryset`` to the moderated model's rows (e.g. ``Listing.objects.all()``), a
    ``ModeratedQuerySet``; ``ModerationRouter.register`` does."""

    permission_classes = [IsModerator]
    serializer_class = QueueItemSerializer

    def get_queryset(self):
        """The list's rows, filtered by the query string; raises ValidationError (400) for a
        ``status`` or ``reason`` outside its enum."""
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        filters = QueueFiltersSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data.get("status")
        if wanted:
            queryset = queryset.filter(moderation_status=wanted).order_by(*REVIEW_ORDER)
        else:
            queryset = queryset.needs_review()
        reason = filters.validated_data.get("reason")
        return queryset.flagged_for(reason) if reason else queryset

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        decisions = transitions.history(obj).select_related("actor")
        return Response({**self.get_serializer(obj).data, "history": DecisionSerializer(decisions, many=True).data})

    def _decide(self, request, verb: str):
        obj = self.get_object()
        form = DecisionRequestSerializer(data=request.data, context={"verb": verb})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        transitions.decide(obj, verb, actor=request.user, reason=data["reason"], version=data.get("version"))
        obj.refresh_from_db()
        return Response(self.get_serializer(obj).data)

    @extend_schema(
        summary="Approve", request=DecisionRequestSerializer, responses=QueueItemSerializer, examples=[DECISION_EXAMPLE]
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, "approve")

    @extend_schema(
        summary="Reject", request=DecisionRequestSerializer, responses=QueueItemSerializer, examples=[DECISION_EXAMPLE]
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, "reject")

    @extend_schema(summary="Score again", request=DecisionRequestSerializer, responses=QueueItemSerializer)
    @action(detail=True, methods=["post"])
    def rescan(self, request, pk=None):
        return self._decide(request, "rescan")


# -- URLs that are no endpoint --------------------------------------------------------


class NotFoundView(ModerationAPIMixin, APIView):
    """The last URL of an API (``ModerationRouter`` adds it): a path under it that no
    endpoint matches (``search/similar/abc/``) answers 404 with the one error body, by
    any method, instead of Django's HTML page.

    A path without its final slash whose slashed form is an endpoint (``POST
    /api/listings``) is answered 308 to that URL: a 308 keeps the method and the body.
    Django's APPEND_SLASH would answer a 301, which clients follow with a GET and no
    body, and with DEBUG on raises a RuntimeError (a 500) for POST, PUT and PATCH."""

    schema = None  # not an endpoint
    permission_classes = [AllowAny]

    def answer(self, request, *args, **kwargs):
        if not request.path_info.endswith("/") and _is_endpoint(request.path_info + "/"):
            query = request.META.get("QUERY_STRING")
            location = f"{request.path}/?{query}" if query else f"{request.path}/"
            return HttpResponsePermanentRedirect(location, preserve_request=True)  # a 308
        raise NotFound("No endpoint of the API has this URL.")

    get = post = put = patch = delete = head = options = answer


def _is_endpoint(path: str) -> bool:
    """Whether ``path`` resolves to a view other than ``NotFoundView``."""
    try:
        match = resolve(path, get_urlconf())
    except Resolver404:
        return False
    return getattr(match.func, "view_class", None) is not NotFoundView
