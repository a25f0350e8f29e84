from rest_framework.permissions import BasePermission

from moderation.models import MODERATE_PERMISSION


class IsModerator(BasePermission):
    """Users with the ``moderation.moderate`` permission: the queue and the decisions."""

    message = "Only moderators may do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(MODERATE_PERMISSION))
