"""The moderators' queue over the API, for one moderated model per viewset, and the
API's answer for a URL that matches nothing."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from moderation import transitions
from moderation.models import REVIEW_ORDER, FlagReason, ModerationStatus

from .permissions import IsModerator
from .serializers import DecisionRequestSerializer, DecisionSerializer, QueueItemSerializer

S = ModerationStatus
DECISION_EXAMPLE = OpenApiExample("With a reason", value={"reason": "The photo shows another product."})


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
class ModerationQueueViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Set ``queryset`` to the moderated model's rows (e.g. ``Listing.objects.all()``), a
    ``ModeratedQuerySet``."""

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
        form = DecisionRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        transitions.decide(obj, verb, actor=request.user, reason=form.validated_data["reason"])
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


class NotFoundView(APIView):
    """The last URL of an API: a path under it that no endpoint matches (``search/similar/abc/``)
    answers 404 with the one error body, by any method, instead of Django's HTML page::

        re_path(r"^.*/$", NotFoundView.as_view())  # last in the API's urlpatterns

    Only paths that end in a slash: one without is left to APPEND_SLASH's redirect."""

    schema = None  # not an endpoint
    permission_classes = [AllowAny]

    def initial(self, request, *args, **kwargs):
        raise NotFound("No endpoint of the API has this URL.")
